// registry-consul: service discovery through a Consul agent's HTTP API (README.md). Each node is
// an agent service with a TTL check; get reads /v1/health/service/NAME?passing, list reads
// /v1/catalog/services, watch runs blocking queries (watcher.hpp).
//
// Threading: one io thread per instance runs every request, timer and watch loop; calls from
// any thread post to it, and completions and watch events run on it. Do not block on this
// registry from inside its own callbacks.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdlib>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "consul_json.hpp"
#include "http_client.hpp"
#include "micro/registry.hpp"
#include "watcher.hpp"

namespace {

using namespace micro::consul;
using std::chrono::milliseconds;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

[[noreturn]] void bad_option(const std::string& what) {
  throw micro::Exception(micro::Error::bad_request("registry-consul: " + what));
}

milliseconds positive_ms(const micro::Options& o, const char* key, int64_t fallback,
                         int64_t minimum) {
  const int64_t value = o.get_int(key, fallback);
  if (value < minimum)
    bad_option(std::string(key) + " must be >= " + std::to_string(minimum) + " (got " +
               std::to_string(value) + ")");
  return milliseconds(value);
}

// "host:port", "http://host:port", "[::1]:8500" -> host and port.
ClientSettings parse_address(std::string address) {
  ClientSettings out;
  if (address.rfind("https://", 0) == 0)
    bad_option("address '" + address +
               "' asks for HTTPS, which registry-consul does not speak yet (see README.md, TLS)");
  if (address.rfind("http://", 0) == 0) address = address.substr(7);
  while (!address.empty() && address.back() == '/') address.pop_back();
  std::string host = address, port = "8500";
  const auto colon = address.rfind(':');
  const auto bracket = address.rfind(']');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty() || port.empty() || port.find_first_not_of("0123456789") != std::string::npos)
    bad_option("address '" + address + "' is not host:port (e.g. 127.0.0.1:8500)");
  out.host = host;
  out.port = port;
  return out;
}

class ConsulRegistry final : public micro::RegistryPlugin {
 public:
  static std::vector<micro::OptionSpec> options() {
    return {
        {"address", MICRO_OPTION_STRING,
         "Consul agent host:port (default: $CONSUL_HTTP_ADDR, else 127.0.0.1:8500)", ""},
        {"token", MICRO_OPTION_STRING,
         "ACL token sent as X-Consul-Token (default: $CONSUL_HTTP_TOKEN)", ""},
        {"datacenter", MICRO_OPTION_STRING,
         "datacenter for get/list/watch (dc=); empty: the agent's", ""},
        {"check_ttl_ms", MICRO_OPTION_INT,
         "TTL of the check of a registration that sets none; the module passes it itself", "30000"},
        {"pass_interval_ms", MICRO_OPTION_INT,
         "how often the module passes those checks (0: a third of check_ttl_ms)", "0"},
        {"deregister_critical_service_after_ms", MICRO_OPTION_INT,
         "Consul removes a node whose check stayed critical this long (0: never)", "60000"},
        {"timeout_ms", MICRO_OPTION_INT, "deadline of one request to the agent", "5000"},
        {"watch_wait_ms", MICRO_OPTION_INT, "the `wait` of a watch's blocking queries", "60000"},
        {"watch_retry_max_ms", MICRO_OPTION_INT, "ceiling of a failing watch's back-off", "5000"},
    };
  }

  explicit ConsulRegistry(const micro::CreateContext& ctx)
      : log_(ctx.logger()),
        settings_(make_settings(ctx.options())),
        client_(io_, settings_),
        keep_timer_(io_) {
    const auto& o = ctx.options();
    default_check_.ttl = positive_ms(o, "check_ttl_ms", 30000, 1);
    default_check_.deregister_critical_after =
        positive_ms(o, "deregister_critical_service_after_ms", 60000, 0);
    pass_interval_ = positive_ms(o, "pass_interval_ms", 0, 0);
    if (pass_interval_.count() == 0)
      pass_interval_ = std::max(default_check_.ttl / 3, milliseconds(1));
    watch_.wait = positive_ms(o, "watch_wait_ms", 60000, 1);
    watch_.retry_max = positive_ms(o, "watch_retry_max_ms", 5000, 1);
    watch_.retry_min = std::min(watch_.retry_min, watch_.retry_max);
    const std::string dc = o.get_string("datacenter", "");
    if (!dc.empty()) {
      dc_query_ = "dc=" + url_escape(dc);
      watch_.query_suffix = "&" + dc_query_;
    }
    log_.debug("registry-consul: ", settings_.describe(), dc.empty() ? "" : " dc=", dc);
    io_thread_ = std::thread([this] { io_.run(); });
    asio::post(io_, [this] { schedule_keep(); });
  }

  ~ConsulRegistry() override {
    std::promise<void> stopped;
    asio::post(io_, [this, &stopped] {
      stopping_ = true;
      keep_timer_.cancel();
      for (auto& [id, loop] : loops_) loop->stop();
      loops_.clear();
      client_.close_all();
      stopped.set_value();
    });
    stopped.get_future().wait();
    // Everything is closed or cancelled: the io thread runs what is left, then finds no work.
    work_.reset();
    io_thread_.join();
  }

  void register_service(const micro::Service& service, const micro::RegisterOptions& options,
                        micro::Done done) override {
    if (service.nodes.empty())
      return done(micro::Error::bad_request("registry-consul: service '" + service.name +
                                            "' has no nodes to register"));
    CheckSettings check = default_check_;
    const bool keep = options.ttl_ms == 0;
    if (!keep) check.ttl = milliseconds(options.ttl_ms);
    std::vector<Kept> nodes;
    for (const auto& node : service.nodes) {
      auto body = encode_registration(service, node, check);
      if (!body.ok()) return done(body.error);
      nodes.push_back({node.id, std::move(body.value), keep, false, false});
    }
    asio::post(io_, [this, nodes = std::move(nodes), done = std::move(done)]() mutable {
      auto batch = Batch::make(nodes.size(), std::move(done));
      for (auto& node : nodes) {
        auto& kept = kept_[node.id];
        const bool same = kept.registered && kept.body == node.body;
        kept.id = node.id;
        kept.body = std::move(node.body);
        kept.keep = node.keep;
        kept.registered = same;
        kept.busy = true;  // the keep timer leaves it alone meanwhile
        renew(kept.id, [this, batch, id = kept.id](const micro::Error& e) {
          auto it = kept_.find(id);
          if (it != kept_.end()) it->second.busy = false;
          batch->finish(e);
        });
      }
    });
  }

  void deregister_service(const micro::Service& service, micro::Done done) override {
    std::vector<std::string> ids;
    for (const auto& node : service.nodes) ids.push_back(node.id);
    asio::post(io_, [this, ids = std::move(ids), done = std::move(done)]() mutable {
      auto batch = Batch::make(ids.size(), std::move(done));
      for (const auto& id : ids) {
        kept_.erase(id);
        const std::string target = "/v1/agent/service/deregister/" + url_escape(id);
        client_.call(http::verb::put, target, {},
                     [this, batch, target](const micro::Error& e, HttpResponse r) {
                       if (!e.ok()) return batch->finish(e);
                       // Removing what is not there succeeds.
                       if (r.status == 200 || r.status == 404) return batch->finish({});
                       batch->finish(status_error(settings_, http::verb::put, target, r));
                     });
      }
    });
  }

  void get_service(const std::string& name, micro::ServicesCallback done) override {
    asio::post(io_, [this, name, done = std::move(done)] {
      const std::string target = "/v1/health/service/" + url_escape(name) + "?passing" +
                                 (dc_query_.empty() ? "" : "&") + dc_query_;
      client_.call(
          http::verb::get, target, {},
          [this, name, target, done](const micro::Error& e, HttpResponse r) {
            if (!e.ok()) return done(e, {});
            if (r.status != 200)
              return done(status_error(settings_, http::verb::get, target, r), {});
            auto parsed = parse_health(r.body, name);
            if (!parsed.ok()) return done(parsed.error, {});
            if (parsed.value.empty())
              return done(micro::Error::not_found("service '" + name + "' has no passing node in " +
                                                  settings_.describe()),
                          {});
            done({}, group_by_version(parsed.value));
          });
    });
  }

  void list_services(micro::ServicesCallback done) override {
    asio::post(io_, [this, done = std::move(done)] {
      const std::string target =
          "/v1/catalog/services" + (dc_query_.empty() ? "" : "?" + dc_query_);
      client_.call(http::verb::get, target, {},
                   [this, target, done](const micro::Error& e, HttpResponse r) {
                     if (!e.ok()) return done(e, {});
                     if (r.status != 200)
                       return done(status_error(settings_, http::verb::get, target, r), {});
                     auto names = parse_catalog_services(r.body);
                     if (!names.ok()) return done(names.error, {});
                     std::vector<micro::Service> out;
                     for (auto& name : names.value)
                       out.push_back({std::move(name), {}, {}, {}, {}});
                     done({}, out);
                   });
    });
  }

  uint64_t watch(const std::string& service, micro::RegistryEventCallback on_event) override {
    auto state = std::make_shared<WatchState>();
    state->on_event = std::move(on_event);
    uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      id = ++last_watch_id_;
      watches_[id] = state;
    }
    EventSink sink = [this, state](const micro::RegistryEvent& event) { deliver(*state, event); };
    // watch() returns once the loop holds the current state (or its first attempt failed), so
    // that every change made after it returns is reported; what exists already comes as creates.
    auto ready = std::make_shared<std::promise<void>>();
    auto ready_future = ready->get_future();
    asio::post(io_, [this, id, service, sink = std::move(sink), ready] {
      if (stopping_) return ready->set_value();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (watches_.count(id) == 0) return ready->set_value();  // unwatched before it started
      }
      std::shared_ptr<BlockingQuery> loop;
      if (service.empty())
        loop = std::make_shared<CatalogWatch>(client_, watch_, log_, sink);
      else
        loop = std::make_shared<ServiceWatch>(client_, watch_, log_, service, sink);
      loop->on_ready([ready] { ready->set_value(); });
      loops_[id] = loop;
      loop->start();
    });
    if (std::this_thread::get_id() != io_thread_.get_id())
      ready_future.wait_for(2 * settings_.timeout + milliseconds(100));
    return id;
  }

  void unwatch(uint64_t watch_id) override {
    std::shared_ptr<WatchState> state;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = watches_.find(watch_id);
      if (it == watches_.end()) return;
      state = it->second;
      watches_.erase(it);
    }
    // Events are delivered under delivery_mutex_ and only while the watch is active; from its
    // own callback (on the io thread, which holds the mutex already) the current call is the last.
    if (std::this_thread::get_id() == io_thread_.get_id()) {
      state->active = false;
    } else {
      std::lock_guard<std::mutex> delivery(delivery_mutex_);
      state->active = false;
    }
    asio::post(io_, [this, watch_id] {
      auto it = loops_.find(watch_id);
      if (it == loops_.end()) return;
      it->second->stop();
      loops_.erase(it);
    });
  }

 private:
  // One node this instance registered: what it sent, and whether it passes the check itself.
  struct Kept {
    std::string id;
    std::string body;         // the registration JSON
    bool keep = false;        // registered without a TTL: the module passes the check
    bool registered = false;  // the agent accepted `body`
    bool busy = false;        // a renewal is in flight
  };

  // Counts the completions of a request per node; `done` gets the first error.
  struct Batch {
    size_t remaining;
    micro::Error first_error;
    micro::Done done;
    static std::shared_ptr<Batch> make(size_t count, micro::Done done) {
      auto batch = std::make_shared<Batch>(Batch{count, {}, std::move(done)});
      if (count == 0) batch->done({});
      return batch;
    }
    void finish(const micro::Error& error) {
      if (!error.ok() && first_error.ok()) first_error = error;
      if (--remaining == 0) done(first_error);
    }
  };

  struct WatchState {
    micro::RegistryEventCallback on_event;
    bool active = true;  // guarded by delivery_mutex_
  };

  static ClientSettings make_settings(const micro::Options& o) {
    std::string address = o.get_string("address", "");
    if (address.empty()) address = env("CONSUL_HTTP_ADDR");
    if (address.empty()) address = "127.0.0.1:8500";
    ClientSettings settings = parse_address(address);
    settings.token = o.get_string("token", "");
    if (settings.token.empty()) settings.token = env("CONSUL_HTTP_TOKEN");
    settings.timeout = positive_ms(o, "timeout_ms", 5000, 1);
    return settings;
  }

  void deliver(WatchState& state, const micro::RegistryEvent& event) {
    std::lock_guard<std::mutex> delivery(delivery_mutex_);
    if (!state.active) return;
    state.on_event(event);
  }

  // Makes the agent hold node `id` as kept_ says: a check pass when the agent already has this
  // registration, else the registration and then a pass. io thread.
  void renew(const std::string& id, micro::Done done) {
    auto it = kept_.find(id);
    if (it == kept_.end()) return done({});  // deregistered meanwhile
    if (it->second.registered) {
      pass(id, [this, id, done](const micro::Error& e) {
        if (e.ok() || stopping_ || e.code() == 499) return done(e);
        // The agent lost it (restarted, or removed it after it went critical): register again.
        auto again = kept_.find(id);
        if (again == kept_.end()) return done({});
        log_.info("registry-consul: ", id, " is not known to ", settings_.describe(), " any more (",
                  e.detail(), "); registering it again");
        again->second.registered = false;
        renew(id, done);
      });
      return;
    }
    const std::string body = it->second.body;
    client_.call(
        http::verb::put, "/v1/agent/service/register", body,
        [this, id, body, done](const micro::Error& e, HttpResponse r) {
          if (!e.ok()) return done(e);
          if (r.status != 200)
            return done(status_error(settings_, http::verb::put, "/v1/agent/service/register", r));
          if (kept_.count(id) == 0) {
            // Deregistered while this registration was on its way: take it back out.
            client_.call(http::verb::put, "/v1/agent/service/deregister/" + url_escape(id), {},
                         [](const micro::Error&, HttpResponse) {});
            return done({});
          }
          pass(id, [this, id, body, done](const micro::Error& passed) {
            auto again = kept_.find(id);
            if (passed.ok() && again != kept_.end() && again->second.body == body)
              again->second.registered = true;
            done(passed);
          });
        });
  }

  void pass(const std::string& id, micro::Done done) {
    const std::string target = "/v1/agent/check/pass/" + url_escape(check_id(id));
    client_.call(http::verb::put, target, {},
                 [this, target, done](const micro::Error& e, HttpResponse r) {
                   if (!e.ok()) return done(e);
                   if (r.status != 200)
                     return done(status_error(settings_, http::verb::put, target, r));
                   done({});
                 });
  }

  // Every pass_interval_, passes the checks of the nodes registered without a TTL (and registers
  // again what the agent lost, or never got because it was down).
  void schedule_keep() {
    if (stopping_) return;
    keep_timer_.expires_after(pass_interval_);
    keep_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      for (auto& [id, kept] : kept_) {
        if (!kept.keep || kept.busy) continue;
        kept.busy = true;
        renew(id, [this, id = id](const micro::Error& e) {
          auto it = kept_.find(id);
          if (it != kept_.end()) it->second.busy = false;
          if (!e.ok() && !stopping_)
            log_.warn("registry-consul: keeping ", id, " registered failed: ", e.to_string());
        });
      }
      schedule_keep();
    });
  }

  micro::Logger log_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  ClientSettings settings_;
  Client client_;
  CheckSettings default_check_;
  milliseconds pass_interval_{10000};
  WatchSettings watch_;
  std::string dc_query_;  // "dc=..." or empty
  std::thread io_thread_;

  // io thread only:
  asio::steady_timer keep_timer_;
  std::map<std::string, Kept> kept_;  // node id -> what this instance registered
  std::map<uint64_t, std::shared_ptr<BlockingQuery>> loops_;
  bool stopping_ = false;

  std::mutex mutex_;  // guards watches_ and last_watch_id_
  std::map<uint64_t, std::shared_ptr<WatchState>> watches_;
  uint64_t last_watch_id_ = 0;
  std::mutex delivery_mutex_;
};

}  // namespace

MICRO_MODULE("registry-consul", "1.0.0", "Service discovery through a Consul agent's HTTP API",
             micro::plugin<ConsulRegistry>("registry-consul",
                                           "Consul agent services with TTL checks; watch by "
                                           "blocking queries"));
