// registry-etcd: services registered in etcd (v3) through its JSON gateway. Each node is one key,
// <prefix><service>/<node id>, holding the node's service record as JSON, attached to a lease:
// either the instance's own lease, kept alive for as long as the instance lives (and granted
// again, with every node written again, if etcd loses it), or, when the caller passes a TTL, a
// lease of that TTL that lapses unless the caller registers again (as server-rpc does).
//
// Threads: one io thread runs every HTTP exchange (gateway.hpp) and the watches (watch.hpp); one
// worker thread runs register / deregister / get / list one at a time, waiting on the io thread
// for each exchange; one events thread calls the watch callbacks, so that a callback may call
// the registry's blocking methods.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "gateway.hpp"
#include "micro/registry.hpp"
#include "watch.hpp"
#include "wire.hpp"

namespace micro::registry_etcd {
namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;

struct Settings {
  std::vector<Endpoint> endpoints;
  std::string prefix = "/micro/registry/";
  int64_t ttl_ms = 30'000;
  int64_t timeout_ms = 5'000;
  std::string username;
  std::string password;

  static std::vector<OptionSpec> specs() {
    return {
        {"address", MICRO_OPTION_STRING_LIST, "etcd client URLs, tried in turn (http://host:port)",
         "[\"http://127.0.0.1:2379\"]"},
        {"prefix", MICRO_OPTION_STRING, "key prefix under which nodes are stored",
         "\"/micro/registry/\""},
        {"ttl_ms", MICRO_OPTION_INT,
         "lease TTL of registrations that give none; the instance keeps it alive (0: no lease)",
         "30000"},
        {"timeout_ms", MICRO_OPTION_INT, "how long one request to etcd may take", "5000"},
        {"username", MICRO_OPTION_STRING, "etcd auth user (empty: auth off)", ""},
        {"password", MICRO_OPTION_STRING, "etcd auth password", ""},
    };
  }

  static Settings from(const Options& options) {
    Settings s;
    auto refuse = [](const std::string& what) {
      throw Exception(Error::bad_request("registry-etcd: " + what));
    };
    std::vector<std::string> addresses = options.get_list("address");
    if (!options.has("address")) addresses = {"http://127.0.0.1:2379"};
    if (addresses.empty()) refuse("address is empty; name at least one etcd client URL");
    for (const auto& a : addresses) {
      auto endpoint = parse_endpoint(a);
      if (!endpoint.ok()) throw Exception(endpoint.error);
      s.endpoints.push_back(endpoint.value);
    }
    s.prefix = options.get_string("prefix", s.prefix);
    if (s.prefix.empty()) refuse("prefix is empty; use e.g. \"/micro/registry/\"");
    if (s.prefix.back() != '/') s.prefix += '/';
    s.ttl_ms = options.get_int("ttl_ms", s.ttl_ms);
    s.timeout_ms = options.get_int("timeout_ms", s.timeout_ms);
    s.username = options.get_string("username");
    s.password = options.get_string("password");
    if (s.ttl_ms < 0) refuse("ttl_ms must be >= 0, not " + std::to_string(s.ttl_ms));
    if (s.timeout_ms < 1 || s.timeout_ms > 600'000)
      refuse("timeout_ms must be within 1..600000, not " + std::to_string(s.timeout_ms));
    return s;
  }
};

// etcd leases count whole seconds.
int64_t lease_seconds(uint64_t ttl_ms) { return std::max<int64_t>(1, (ttl_ms + 999) / 1000); }

class EtcdRegistry final : public RegistryPlugin {
 public:
  static std::vector<OptionSpec> options() { return Settings::specs(); }

  explicit EtcdRegistry(const CreateContext& ctx)
      : log_(ctx.logger()),
        settings_(Settings::from(ctx.options())),
        io_work_(io_.get_executor()),
        gateway_(io_, settings_.endpoints, milliseconds(settings_.timeout_ms)),
        keepalive_timer_(io_) {
    io_thread_ = std::thread([this] { io_.run(); });
    if (settings_.ttl_ms > 0) asio::post(io_, [this] { schedule_keepalive(); });
  }

  ~EtcdRegistry() override {
    stopping_ = true;
    worker_.join();  // queued operations finish (each is bounded by the timeout)
    std::promise<void> stopped;
    asio::post(io_, [&] {
      keepalive_timer_.cancel();
      std::lock_guard<std::mutex> lock(watch_mutex_);
      for (auto& [id, w] : watches_) w->io->stop();  // the host unwatches first; be safe anyway
      stopped.set_value();
    });
    stopped.get_future().wait();
    events_.join();
    if (const int64_t lease = kept_lease_.load(); lease != 0) {
      // Nodes this instance kept alive go now rather than a TTL later.
      LeaseRevokeRequest revoke;
      revoke.set_id(lease);
      LeaseGrantResponse ignored;
      (void)call("/v3/lease/revoke", revoke, &ignored, "revoke lease");
    }
    io_work_.reset();
    io_.stop();
    io_thread_.join();
  }

  void register_service(const Service& service, const RegisterOptions& options,
                        Done done) override {
    if (service.name.empty()) return done(Error::bad_request("service has no name"));
    if (service.nodes.empty())
      return done(Error::bad_request("service '" + service.name +
                                     "' has no nodes; registry-etcd stores one key per node"));
    std::vector<std::pair<std::string, std::string>> records;  // key, value
    for (const auto& node : service.nodes) {
      auto value = encode_record(service, node);
      if (!value.ok()) return done(value.error);
      records.emplace_back(node_key(settings_.prefix, service.name, node.id),
                           std::move(value.value));
    }
    asio::post(worker_, [this, records = std::move(records), ttl = options.ttl_ms,
                         name = service.name, done = std::move(done)] {
      Error e = register_records(records, ttl);
      if (e.ok()) log_.debug("registry-etcd: registered ", records.size(), " node(s) of ", name);
      done(e);
    });
  }

  void deregister_service(const Service& service, Done done) override {
    std::vector<std::string> keys;
    for (const auto& node : service.nodes)
      keys.push_back(node_key(settings_.prefix, service.name, node.id));
    asio::post(worker_, [this, keys = std::move(keys), done = std::move(done)] {
      Error error;
      for (const auto& key : keys) {
        kept_.erase(key);
        ttl_leased_.erase(key);
        DeleteRangeRequest request;
        request.set_key(key);
        DeleteRangeResponse response;
        if (Error e = call("/v3/kv/deleterange", request, &response, "delete " + key); !e.ok())
          error = e;
      }
      done(error);
    });
  }

  void get_service(const std::string& name, ServicesCallback done) override {
    asio::post(worker_, [this, name, done = std::move(done)] {
      auto services = read_services(service_prefix(settings_.prefix, name), name);
      if (services.ok() && services.value.empty())
        services.error =
            Error::not_found("service '" + name + "' is not registered in etcd (" +
                             gateway_.endpoint_list() + ", prefix " + settings_.prefix + ")");
      done(services.error, services.value);
    });
  }

  void list_services(ServicesCallback done) override {
    asio::post(worker_, [this, done = std::move(done)] {
      auto services = read_services(settings_.prefix, "");
      done(services.error, services.value);
    });
  }

  uint64_t watch(const std::string& service, RegistryEventCallback on_event) override {
    auto entry = std::make_shared<WatchEntry>();
    entry->on_event = std::move(on_event);
    uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(watch_mutex_);
      id = ++last_watch_id_;
      watches_[id] = entry;
    }
    const std::string prefix =
        service.empty() ? settings_.prefix : service_prefix(settings_.prefix, service);
    std::function<void()> reauthenticate;
    if (!settings_.username.empty()) {
      if (gateway_.token().empty()) (void)authenticate();  // the watch's requests carry it
      reauthenticate = [this] { request_authentication(); };
    }
    entry->io = std::make_shared<Watch>(
        gateway_, log_, prefix, service,
        [this, id](RegistryEvent event) {
          asio::post(events_, [this, id, event = std::move(event)] { deliver(id, event); });
        },
        std::move(reauthenticate));
    // Returns once the watch has read the keys (or failed to: etcd down), so that a change made
    // after watch() returns is reported, never taken for part of the starting point.
    auto first_read = std::make_shared<std::promise<void>>();
    asio::post(
        io_, [w = entry->io, first_read] { w->start([first_read] { first_read->set_value(); }); });
    first_read->get_future().wait_for(milliseconds(settings_.timeout_ms) * 2);
    return id;
  }

  void unwatch(uint64_t watch_id) override {
    std::shared_ptr<WatchEntry> entry;
    {
      std::lock_guard<std::mutex> lock(watch_mutex_);
      auto it = watches_.find(watch_id);
      if (it == watches_.end()) return;
      entry = std::move(it->second);
      watches_.erase(it);
    }
    asio::post(io_, [w = entry->io] { w->stop(); });
    // Wait out a delivery in progress, so that no event follows our return; from a callback
    // (the events thread) that delivery is the caller itself.
    if (!events_.get_executor().running_in_this_thread())
      std::lock_guard<std::mutex> wait(delivery_mutex_);
  }

 private:
  struct WatchEntry {
    RegistryEventCallback on_event;
    std::shared_ptr<Watch> io;
  };

  // ---- one request, on the worker thread ------------------------------------------------------

  Error call(const std::string& path, const google::protobuf::Message& request,
             google::protobuf::Message* response, const std::string& what) {
    Error e = call_once(path, request, response, what);
    if (!e.ok() && !settings_.username.empty() &&
        e.detail().find("invalid auth token") != std::string::npos) {
      gateway_.set_token({});  // expired (etcd restarted, or its simple tokens timed out)
      e = call_once(path, request, response, what);
    }
    return e;
  }

  Error call_once(const std::string& path, const google::protobuf::Message& request,
                  google::protobuf::Message* response, const std::string& what) {
    if (!settings_.username.empty() && gateway_.token().empty())
      if (Error e = authenticate(); !e.ok()) return e;
    return exchange(path, to_json(request), response, what);
  }

  Error exchange(const std::string& path, std::string body, google::protobuf::Message* response,
                 const std::string& what) {
    std::promise<Error> answered;
    gateway_.post(
        path, std::move(body), [&](const Error& error, unsigned status, std::string answer) {
          answered.set_value(error.ok() ? parse_answer(status, answer, response, what) : error);
        });
    return answered.get_future().get();
  }

  // Gets a new token on the worker thread (from the io thread, when etcd refused the token).
  void request_authentication() {
    if (settings_.username.empty() || reauth_pending_.exchange(true)) return;
    asio::post(worker_, [this] {
      if (!stopping_) (void)authenticate();
      reauth_pending_ = false;
    });
  }

  Error authenticate() {
    AuthenticateRequest request;
    request.set_name(settings_.username);
    request.set_password(settings_.password);
    AuthenticateResponse response;
    Error e = exchange("/v3/auth/authenticate", to_json(request), &response,
                       "authenticate as '" + settings_.username + "'");
    if (!e.ok()) return e;
    gateway_.set_token(response.token());
    return {};
  }

  Result<std::vector<Service>> read_services(const std::string& key_prefix,
                                             const std::string& name) {
    Result<std::vector<Service>> out;
    RangeRequest request;
    request.set_key(key_prefix);
    request.set_range_end(range_end_of_prefix(key_prefix));
    RangeResponse response;
    out.error = call("/v3/kv/range", request, &response, "range " + key_prefix);
    if (!out.error.ok()) return out;
    std::map<std::pair<std::string, std::string>, Service> versions;  // (name, version)
    for (const auto& kv : response.kvs()) {
      auto record = decode_record(kv.value());
      if (!record.ok()) {
        log_.debug("registry-etcd: skipping key ", kv.key(), ": ", record.error.detail());
        continue;
      }
      Service& s = record.value;
      if (!name.empty() && s.name != name) continue;
      auto [it, fresh] = versions.try_emplace({s.name, s.version}, s);
      if (!fresh) it->second.nodes.push_back(std::move(s.nodes[0]));
    }
    for (auto& [key, s] : versions) {
      std::sort(s.nodes.begin(), s.nodes.end(),
                [](const Node& a, const Node& b) { return a.id < b.id; });
      out.value.push_back(std::move(s));
    }
    return out;
  }

  // ---- leases (worker thread) -----------------------------------------------------------------

  Result<int64_t> grant(int64_t seconds) {
    Result<int64_t> out;
    LeaseGrantRequest request;
    request.set_ttl(seconds);
    LeaseGrantResponse response;
    out.error = call("/v3/lease/grant", request, &response, "grant a lease");
    if (out.error.ok() && !response.error().empty())
      out.error = Error::unavailable("grant a lease: etcd refused: " + response.error());
    out.value = response.id();
    return out;
  }

  Error put(const std::string& key, const std::string& value, int64_t lease) {
    PutRequest request;
    request.set_key(key);
    request.set_value(value);
    request.set_lease(lease);
    PutResponse response;
    return call("/v3/kv/put", request, &response, "put " + key);
  }

  Error register_records(const std::vector<std::pair<std::string, std::string>>& records,
                         uint64_t ttl_ms) {
    if (ttl_ms > 0) {
      // The caller's TTL: a lease of its own, not kept alive; the caller renews by registering
      // again. A renewal of the same nodes, unchanged, is one keepalive of their lease.
      const int64_t seconds = lease_seconds(ttl_ms);
      int64_t lease = 0;
      bool renewal = true;
      for (const auto& [key, value] : records) {
        auto it = ttl_leased_.find(key);
        if (it == ttl_leased_.end() || it->second.seconds != seconds || it->second.value != value ||
            (lease != 0 && it->second.lease != lease))
          renewal = false;
        else
          lease = it->second.lease;
      }
      if (renewal && lease != 0) {
        auto ttl = keep_alive_once(lease);
        if (ttl.ok() && ttl.value > 0) return {};
        if (!ttl.ok()) return ttl.error;
      }
      auto granted = grant(seconds);
      if (!granted.ok()) return granted.error;
      for (const auto& [key, value] : records) {
        kept_.erase(key);
        ttl_leased_.erase(key);
        if (Error e = put(key, value, granted.value); !e.ok()) return e;
        ttl_leased_[key] = TtlLeased{granted.value, seconds, value};
      }
      return {};
    }
    if (settings_.ttl_ms == 0) {
      for (const auto& [key, value] : records)
        if (Error e = put(key, value, 0); !e.ok()) return e;
      return {};
    }
    for (const auto& [key, value] : records) {
      ttl_leased_.erase(key);
      kept_[key] = value;
    }
    if (kept_lease_ == 0) return renew_kept_lease();
    for (const auto& [key, value] : records) {
      Error e = put(key, value, kept_lease_);
      if (!e.ok() && e.detail().find("lease not found") != std::string::npos)
        return renew_kept_lease();
      if (!e.ok()) return e;
    }
    return {};
  }

  // Renews `lease` once; its remaining TTL, 0 when etcd no longer has it.
  Result<int64_t> keep_alive_once(int64_t lease) {
    LeaseKeepAliveRequest request;
    request.set_id(lease);
    std::promise<Result<int64_t>> answered;
    gateway_.post("/v3/lease/keepalive", to_json(request),
                  [&](const Error& error, unsigned status, std::string body) {
                    answered.set_value(read_keepalive(error, status, body, lease));
                  });
    return answered.get_future().get();
  }

  // A keepalive's answer: the remaining TTL (0: the lease is gone), or why there is none.
  static Result<int64_t> read_keepalive(const Error& error, unsigned status,
                                        const std::string& body, int64_t lease) {
    Result<int64_t> out;
    const std::string what = "keepalive of lease " + std::to_string(lease);
    if (!error.ok()) {
      out.error = error;
      return out;
    }
    if (status != 200) {
      LeaseKeepAliveResponse unused;
      out.error = parse_answer(status, body, &unused, what);
      return out;
    }
    StreamSplitter split;
    split.feed(body);
    split.feed("\n");  // the last object may lack its newline
    std::string object;
    if (!split.next(object)) {
      out.error = Error::unavailable(what + ": etcd's answer is empty");
      return out;
    }
    auto answer = parse_keepalive_message(object);
    out.error = answer.error;
    out.value = answer.value.ttl();
    return out;
  }

  // Grants the instance's lease again and writes every node it keeps alive with it.
  Error renew_kept_lease() {
    auto lease = grant(lease_seconds(uint64_t(settings_.ttl_ms)));
    if (!lease.ok()) return lease.error;
    const bool had_one = kept_lease_ != 0;
    kept_lease_ = lease.value;
    for (const auto& [key, value] : kept_)
      if (Error e = put(key, value, lease.value); !e.ok()) {
        kept_lease_ = 0;  // try again at the next keepalive tick
        return e;
      }
    if (had_one)
      log_.info("registry-etcd: etcd lost this instance's lease; registered ", kept_.size(),
                " node(s) again with a new one");
    return {};
  }

  // ---- keepalive (io thread) ------------------------------------------------------------------

  void schedule_keepalive() {
    const auto interval =
        milliseconds(std::max<int64_t>(lease_seconds(settings_.ttl_ms) * 1000 / 3, 100));
    keepalive_timer_.expires_after(interval);
    keepalive_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping_) return;
      keep_alive();
      schedule_keepalive();
    });
  }

  void keep_alive() {
    const int64_t lease = kept_lease_.load();
    if (lease == 0) {
      if (renew_pending_.exchange(true)) return;
      asio::post(worker_, [this] {
        // Nodes registered while etcd was unreachable are written once it answers.
        if (kept_lease_ == 0 && !kept_.empty() && !stopping_) (void)renew_kept_lease();
        renew_pending_ = false;
      });
      return;
    }
    LeaseKeepAliveRequest request;
    request.set_id(lease);
    gateway_.post("/v3/lease/keepalive", to_json(request),
                  [this, lease](const Error& error, unsigned status, std::string body) {
                    auto ttl = read_keepalive(error, status, body, lease);
                    if (!ttl.ok()) {
                      log_.debug("registry-etcd: ", ttl.error.detail());
                      if (ttl.error.detail().find("invalid auth token") != std::string::npos)
                        request_authentication();
                      return;
                    }
                    if (ttl.value > 0) return;
                    log_.info("registry-etcd: lease ", lease, " is gone from etcd; renewing");
                    int64_t expected = lease;
                    kept_lease_.compare_exchange_strong(expected, 0);  // next tick renews
                    keep_alive();
                  });
  }

  // ---- events (events thread) -----------------------------------------------------------------

  void deliver(uint64_t id, const RegistryEvent& event) {
    std::lock_guard<std::mutex> delivering(delivery_mutex_);
    std::shared_ptr<WatchEntry> entry;
    {
      std::lock_guard<std::mutex> lock(watch_mutex_);
      auto it = watches_.find(id);
      if (it == watches_.end()) return;  // unwatched meanwhile
      entry = it->second;
    }
    try {
      entry->on_event(event);
    } catch (...) {  // the SDK's adapter already catches; this thread must survive anyway
      log_.warn("registry-etcd: a watch callback threw");
    }
  }

  Logger log_;
  const Settings settings_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> io_work_;
  Gateway gateway_;
  asio::steady_timer keepalive_timer_;  // io thread
  std::thread io_thread_;
  asio::thread_pool worker_{1};
  asio::thread_pool events_{1};
  std::atomic<bool> stopping_{false};

  // Worker thread only, but for kept_lease_, which the keepalive reads.
  std::map<std::string, std::string> kept_;  // key -> value of nodes on the kept-alive lease
  std::atomic<int64_t> kept_lease_{0};
  std::atomic<bool> renew_pending_{false};
  std::atomic<bool> reauth_pending_{false};
  struct TtlLeased {
    int64_t lease;
    int64_t seconds;
    std::string value;
  };
  std::map<std::string, TtlLeased> ttl_leased_;  // nodes registered with the caller's TTL

  std::mutex watch_mutex_;  // guards watches_
  std::map<uint64_t, std::shared_ptr<WatchEntry>> watches_;
  uint64_t last_watch_id_ = 0;
  std::mutex delivery_mutex_;  // held while a callback runs
};

}  // namespace
}  // namespace micro::registry_etcd

MICRO_MODULE("registry-etcd", "1.0.0", "Registry in etcd v3 (JSON gateway), leases and watch",
             micro::plugin<micro::registry_etcd::EtcdRegistry>(
                 "registry-etcd",
                 "Registry in etcd v3: one key per node under a prefix, leases kept alive, "
                 "watch with resume"));
