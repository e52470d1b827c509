#include "consul_double.hpp"

#include <google/protobuf/util/json_util.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "consul_double_api.pb.h"

namespace micro::consul::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

// Go's time.ParseDuration, for what Consul accepts: "10s", "1m30s", "1.5s", "300ms".
std::optional<milliseconds> parse_go_duration(const std::string& text) {
  if (text.empty()) return std::nullopt;
  if (text == "0") return milliseconds(0);
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
      ++i;
    if (start == i) return std::nullopt;
    double value = 0;
    try {
      value = std::stod(text.substr(start, i - start));
    } catch (...) {
      return std::nullopt;
    }
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    const std::string unit = text.substr(unit_start, i - unit_start);
    static const std::map<std::string, double> kUnits = {
        {"ns", 1e-6}, {"us", 1e-3}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    auto it = kUnits.find(unit);
    if (it == kUnits.end()) return std::nullopt;
    total_ms += value * it->second;
  }
  return milliseconds(static_cast<int64_t>(total_ms));
}

std::string to_json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

struct Target {
  std::string path;
  std::map<std::string, std::string> query;
};

Target parse_target(std::string_view target) {
  Target out;
  const auto q = target.find('?');
  out.path = percent_decode(target.substr(0, q));
  if (q == std::string_view::npos) return out;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    out.query[percent_decode(pair.substr(0, eq))] =
        eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return out;
}

using Response = http::response<http::string_body>;

}  // namespace

// ---- state and semantics -----------------------------------------------------------------

class ConsulDouble::Impl : public std::enable_shared_from_this<ConsulDouble::Impl> {
 public:
  class Session;

  explicit Impl(Options options) : options_(std::move(options)), acceptor_(io_), reaper_(io_) {}

  void run() {
    listen();
    reap();
    thread_ = std::thread([self = shared_from_this()] { self->io_.run(); });
  }

  // Closes everything so that every pending handler completes (they hold the Impl), and the io
  // thread's run() returns for want of work.
  void shutdown() {
    asio::post(io_, [self = shared_from_this()] {
      self->stopped_ = true;
      self->close_everything();
      self->reaper_.cancel();
    });
    if (thread_.joinable()) thread_.join();
  }

  // Runs `fn` on the io thread and waits for it.
  template <class Fn>
  void on_io(Fn fn) {
    std::promise<void> done;
    asio::post(io_, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

  void listen() {
    tcp::endpoint endpoint(asio::ip::make_address(options_.host), port_ ? port_ : options_.port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept();
  }

  void accept();
  void close_everything();

  // --- the service table (io thread; `mutex_` for the inspection calls) ---
  struct Entry {
    consul_double::AgentServiceRegistration registration;
    std::string check_id;
    std::string status;  // passing, critical
    std::string output;
    milliseconds ttl{0};
    milliseconds deregister_after{0};
    Clock::time_point deadline{};
    Clock::time_point critical_since{};
    uint64_t create_index = 0;
    uint64_t modify_index = 0;
  };

  uint64_t bump(const std::string& name, bool catalog_changed) {
    ++index_;
    name_index_[name] = index_;
    if (catalog_changed) catalog_index_ = index_;
    wake_waiters();
    return index_;
  }

  uint64_t health_index(const std::string& name) const {
    auto it = name_index_.find(name);
    return it == name_index_.end() ? std::max<uint64_t>(catalog_index_, 1) : it->second;
  }

  void set_status(Entry& e, const std::string& status, const std::string& output) {
    if (e.status == status) return;
    e.status = status;
    e.output = output;
    if (status == "critical") e.critical_since = Clock::now();
    bump(e.registration.name(), false);
  }

  // TTL checks and DeregisterCriticalServiceAfter, every 10 ms.
  void reap() {
    reaper_.expires_after(milliseconds(10));
    reaper_.async_wait([this](beast::error_code ec) {
      if (ec || stopped_) return;
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = Clock::now();
      for (auto it = services_.begin(); it != services_.end();) {
        Entry& e = it->second;
        if (e.ttl.count() > 0 && e.status == "passing" && now > e.deadline)
          set_status(e, "critical", "TTL expired");
        if (e.status == "critical" && e.deregister_after.count() > 0 &&
            now - e.critical_since >= e.deregister_after) {
          const std::string name = e.registration.name();
          it = services_.erase(it);
          bump(name, true);
          continue;
        }
        ++it;
      }
      reap();
    });
  }

  Response answer(const http::request<http::string_body>& request, const Target& target);
  Response json(unsigned status, std::string body, uint64_t index = 0) const;
  Response text(unsigned status, std::string body) const;
  std::string health_body(const std::string& name, bool passing_only) const;
  std::string catalog_body() const;

  void wake_waiters();

  Options options_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer reaper_;
  std::thread thread_;
  uint16_t port_ = 0;
  bool stopped_ = false;
  std::vector<std::weak_ptr<Session>> sessions_;

  mutable std::mutex mutex_;
  std::map<std::string, Entry> services_;  // by service ID
  std::map<std::string, uint64_t> name_index_;
  uint64_t index_ = 1;
  uint64_t catalog_index_ = 1;
  Fault fault_ = Fault::none;
  milliseconds delay_{0};
  uint64_t requests_ = 0;
};

// One HTTP connection; a blocking query parks it until its index moves or its wait ends.
class ConsulDouble::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& impl, tcp::socket socket)
      : impl_(impl), stream_(std::move(socket)), timer_(impl.io_) {}

  void start() { read(); }
  void close() {
    beast::error_code ignored;
    timer_.cancel();
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  // A change happened: answer a parked query whose index moved.
  void recheck() {
    if (!parked_) return;
    if (current_index() > min_index_) finish_wait();
  }

 private:
  void read() {
    request_ = {};
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->close();
                       self->on_request();
                     });
  }

  void on_request() {
    Fault fault;
    milliseconds delay;
    {
      std::lock_guard<std::mutex> lock(impl_.mutex_);
      fault = impl_.fault_;
      delay = impl_.delay_;
      ++impl_.requests_;
    }
    if (fault == Fault::slow && delay.count() > 0) {
      timer_.expires_after(delay);
      timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->handle();
      });
      return;
    }
    handle(fault);
  }

  void handle(std::optional<Fault> fault = std::nullopt) {
    if (!fault) fault = Fault::none;
    target_ = parse_target(request_.target());
    if (*fault == Fault::error_500) return send(impl_.text(500, "rpc error: injected failure"));
    if (*fault == Fault::garbage) {
      Response r = impl_.json(200, "{\"Node\": [ garbage", 7);
      return send(std::move(r));
    }
    // A blocking query waits while its index has not moved.
    const bool blocking = request_.method() == http::verb::get &&
                          (target_.path.rfind("/v1/health/service/", 0) == 0 ||
                           target_.path == "/v1/catalog/services");
    if (blocking && target_.query.count("index") != 0) {
      uint64_t index = 0;
      milliseconds wait(5 * 60 * 1000);
      try {
        size_t used = 0;
        index = std::stoull(target_.query["index"], &used);
        if (used != target_.query["index"].size()) throw std::invalid_argument("index");
      } catch (...) {
        return send(impl_.text(400, "Invalid index"));
      }
      if (target_.query.count("wait") != 0) {
        auto parsed = parse_go_duration(target_.query["wait"]);
        if (!parsed) return send(impl_.text(400, "Invalid wait time"));
        wait = std::min(*parsed, milliseconds(10 * 60 * 1000));
      }
      min_index_ = index;
      if (index > 0 && current_index() <= index) {
        parked_ = true;
        // Consul adds up to wait/16 of jitter; the double adds none.
        timer_.expires_after(wait);
        timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
          if (!ec) self->finish_wait();
        });
        return;
      }
    }
    send(impl_.answer(request_, target_));
  }

  uint64_t current_index() {
    std::lock_guard<std::mutex> lock(impl_.mutex_);
    if (target_.path == "/v1/catalog/services") return impl_.catalog_index_;
    return impl_.health_index(target_.path.substr(std::string("/v1/health/service/").size()));
  }

  void finish_wait() {
    if (!parked_) return;
    parked_ = false;
    timer_.cancel();
    send(impl_.answer(request_, target_));
  }

  void send(Response response) {
    response.version(request_.version());
    response.keep_alive(request_.keep_alive());
    response.prepare_payload();
    response_ = std::make_shared<Response>(std::move(response));
    http::async_write(stream_, *response_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec || !self->response_->keep_alive()) return self->close();
                        self->read();
                      });
  }

  Impl& impl_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  std::shared_ptr<Response> response_;
  asio::steady_timer timer_;
  Target target_;
  uint64_t min_index_ = 0;
  bool parked_ = false;
};

void ConsulDouble::Impl::accept() {
  acceptor_.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec) return;  // closed by stop()
    auto session = std::make_shared<Session>(*self, std::move(socket));
    auto& all = self->sessions_;
    all.erase(std::remove_if(all.begin(), all.end(), [](const auto& w) { return w.expired(); }),
              all.end());
    all.push_back(session);
    session->start();
    self->accept();
  });
}

void ConsulDouble::Impl::close_everything() {
  beast::error_code ignored;
  acceptor_.close(ignored);
  for (auto& weak : sessions_)
    if (auto session = weak.lock()) session->close();
  sessions_.clear();
}

void ConsulDouble::Impl::wake_waiters() {
  // Called with mutex_ held; the sessions re-check on the io thread after it is released.
  if (stopped_) return;
  asio::post(io_, [self = shared_from_this()] {
    for (auto& weak : self->sessions_)
      if (auto session = weak.lock()) session->recheck();
  });
}

Response ConsulDouble::Impl::text(unsigned status, std::string body) const {
  Response r(static_cast<http::status>(status), 11);
  r.set(http::field::content_type, "text/plain; charset=utf-8");
  r.body() = std::move(body);
  return r;
}

Response ConsulDouble::Impl::json(unsigned status, std::string body, uint64_t index) const {
  Response r(static_cast<http::status>(status), 11);
  r.set(http::field::content_type, "application/json");
  if (index > 0) {
    r.set("X-Consul-Index", std::to_string(index));
    r.set("X-Consul-Knownleader", "true");
    r.set("X-Consul-Lastcontact", "0");
  }
  r.body() = std::move(body);
  return r;
}

std::string ConsulDouble::Impl::health_body(const std::string& name, bool passing_only) const {
  consul_double::HealthEntries entries;
  for (const auto& [id, e] : services_) {
    if (e.registration.name() != name) continue;
    if (passing_only && e.status != "passing") continue;
    auto* entry = entries.add_entries();
    auto* node = entry->mutable_node();
    node->set_node("consul-double");
    node->set_address(options_.host);
    node->set_datacenter(options_.datacenter);
    auto* s = entry->mutable_service();
    s->set_id(id);
    s->set_service(name);
    *s->mutable_tags() = e.registration.tags();
    s->set_address(e.registration.address());
    s->set_port(e.registration.port());
    *s->mutable_meta() = e.registration.meta();
    s->set_createindex(static_cast<uint32_t>(e.create_index));
    s->set_modifyindex(static_cast<uint32_t>(e.modify_index));
    auto* serf = entry->add_checks();
    serf->set_node("consul-double");
    serf->set_checkid("serfHealth");
    serf->set_name("Serf Health Status");
    serf->set_status("passing");
    serf->set_output("Agent alive and reachable");
    if (!e.check_id.empty()) {
      auto* check = entry->add_checks();
      check->set_node("consul-double");
      check->set_checkid(e.check_id);
      check->set_name(e.registration.check().name());
      check->set_status(e.status);
      check->set_output(e.output);
      check->set_serviceid(id);
      check->set_servicename(name);
      check->set_type("ttl");
    }
  }
  // The array Consul sends is the wrapper's only field.
  std::string out = to_json(entries);
  const auto open = out.find('[');
  return open == std::string::npos ? "[]" : out.substr(open, out.rfind(']') - open + 1);
}

std::string ConsulDouble::Impl::catalog_body() const {
  std::map<std::string, std::set<std::string>> tags{{"consul", {}}};
  for (const auto& [id, e] : services_)
    tags[e.registration.name()].insert(e.registration.tags().begin(), e.registration.tags().end());
  consul_double::CatalogServices catalog;
  for (const auto& [name, set] : tags) {
    auto& list = (*catalog.mutable_services())[name];
    for (const auto& t : set) list.add_values()->set_string_value(t);
  }
  std::string out = to_json(catalog);
  const auto open = out.find(':');
  return out.substr(open + 1, out.rfind('}') - open - 1);
}

Response ConsulDouble::Impl::answer(const http::request<http::string_body>& request,
                                    const Target& target) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!options_.token.empty()) {
    const auto token = request["X-Consul-Token"];
    if (token.empty()) return text(403, "Permission denied");
    if (token != options_.token) return text(403, "ACL not found");
  }
  const auto& path = target.path;
  const auto method = request.method();
  auto dc_ok = [&] {
    auto it = target.query.find("dc");
    return it == target.query.end() || it->second.empty() || it->second == options_.datacenter;
  };

  if (path.rfind("/v1/health/service/", 0) == 0) {
    if (method != http::verb::get)
      return text(405, "method " + std::string(request.method_string()) + " not allowed");
    if (!dc_ok()) return text(500, "No path to datacenter");
    const std::string name = path.substr(std::string("/v1/health/service/").size());
    if (name.empty()) return text(400, "Missing service name");
    const bool passing = target.query.count("passing") != 0 &&
                         target.query.at("passing") != "false" && target.query.at("passing") != "0";
    return json(200, health_body(name, passing), health_index(name));
  }
  if (path == "/v1/catalog/services") {
    if (method != http::verb::get)
      return text(405, "method " + std::string(request.method_string()) + " not allowed");
    if (!dc_ok()) return text(500, "No path to datacenter");
    return json(200, catalog_body(), catalog_index_);
  }
  if (path == "/v1/agent/service/register") {
    if (method != http::verb::put)
      return text(405, "method " + std::string(request.method_string()) + " not allowed");
    consul_double::AgentServiceRegistration r;
    google::protobuf::util::JsonParseOptions parse;
    parse.ignore_unknown_fields = true;
    auto status = google::protobuf::util::JsonStringToMessage(request.body(), &r, parse);
    if (!status.ok()) return text(400, "Request decode failed: " + std::string(status.message()));
    if (r.name().empty()) return text(400, "Missing service name");
    if (r.id().empty()) r.set_id(r.name());
    for (const auto& [k, v] : r.meta()) {
      const bool key_ok = !k.empty() && k.size() <= 128 &&
                          k.find_first_not_of(
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                              "0123456789_-") == std::string::npos;
      if (!key_ok) return text(400, "Invalid Service Meta: Key contains invalid characters");
      if (v.size() > 512) return text(400, "Invalid Service Meta: Value is too long");
    }
    Entry e;
    e.registration = r;
    if (r.has_check() && !r.check().ttl().empty()) {
      auto ttl = parse_go_duration(r.check().ttl());
      if (!ttl || ttl->count() <= 0)
        return text(400, "Invalid check: TTL must be > 0 for TTL checks");
      e.ttl = *ttl;
      e.check_id = r.check().checkid().empty() ? "service:" + r.id() : r.check().checkid();
      e.status = r.check().status().empty() ? "critical" : r.check().status();
      e.deadline = Clock::now() + e.ttl;
      e.critical_since = Clock::now();
      if (!r.check().deregistercriticalserviceafter().empty()) {
        auto after = parse_go_duration(r.check().deregistercriticalserviceafter());
        if (!after)
          return text(400, "Invalid check: DeregisterCriticalServiceAfter is not a duration");
        e.deregister_after = *after;
      }
    } else {
      e.status = "passing";
    }
    auto old = services_.find(r.id());
    const bool catalog_changed =
        old == services_.end() || old->second.registration.name() != r.name() ||
        old->second.registration.tags().size() != r.tags().size() ||
        !std::equal(r.tags().begin(), r.tags().end(), old->second.registration.tags().begin());
    const std::string old_name = old == services_.end() ? "" : old->second.registration.name();
    e.create_index = old == services_.end() ? index_ + 1 : old->second.create_index;
    e.modify_index = index_ + 1;
    services_[r.id()] = std::move(e);
    if (!old_name.empty() && old_name != r.name()) bump(old_name, true);
    bump(r.name(), catalog_changed);
    return text(200, "");
  }
  if (path.rfind("/v1/agent/service/deregister/", 0) == 0) {
    if (method != http::verb::put)
      return text(405, "method " + std::string(request.method_string()) + " not allowed");
    const std::string id = path.substr(std::string("/v1/agent/service/deregister/").size());
    auto it = services_.find(id);
    if (it == services_.end())
      return text(404, "Unknown service ID \"" + id +
                           "\". Ensure that the service ID is passed, not the service name.");
    const std::string name = it->second.registration.name();
    services_.erase(it);
    bump(name, true);
    return text(200, "");
  }
  if (path.rfind("/v1/agent/check/pass/", 0) == 0) {
    if (method != http::verb::put)
      return text(405, "method " + std::string(request.method_string()) + " not allowed");
    const std::string id = path.substr(std::string("/v1/agent/check/pass/").size());
    for (auto& [service_id, e] : services_) {
      if (e.check_id != id) continue;
      e.deadline = Clock::now() + e.ttl;
      auto note = target.query.find("note");
      set_status(e, "passing", note == target.query.end() ? "" : note->second);
      return text(200, "");
    }
    return text(404, "Unknown check ID \"" + id +
                         "\". Ensure that the check ID is passed, not the check name.");
  }
  return text(404, "404 page not found");
}

// ---- public face ---------------------------------------------------------------------------

ConsulDouble::ConsulDouble() : ConsulDouble(Options{}) {}

ConsulDouble::ConsulDouble(Options options) : impl_(std::make_shared<Impl>(std::move(options))) {
  impl_->run();
}

ConsulDouble::~ConsulDouble() { impl_->shutdown(); }

uint16_t ConsulDouble::port() const { return impl_->port_; }

std::string ConsulDouble::address() const {
  return impl_->options_.host + ":" + std::to_string(impl_->port_);
}

void ConsulDouble::set_fault(Fault fault, milliseconds delay) {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  impl_->fault_ = fault;
  impl_->delay_ = delay;
}

void ConsulDouble::stop() {
  impl_->on_io([this] { impl_->close_everything(); });
}

void ConsulDouble::start(bool keep_state) {
  impl_->on_io([this, keep_state] {
    if (!keep_state) {
      std::lock_guard<std::mutex> lock(impl_->mutex_);
      impl_->services_.clear();
      impl_->name_index_.clear();
      impl_->index_ = 1;
      impl_->catalog_index_ = 1;
    }
    impl_->acceptor_ = tcp::acceptor(impl_->io_);
    impl_->listen();
  });
}

bool ConsulDouble::has_service(const std::string& id) const {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  return impl_->services_.count(id) != 0;
}

std::string ConsulDouble::check_status(const std::string& id) const {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  auto it = impl_->services_.find(id);
  return it == impl_->services_.end() ? std::string() : it->second.status;
}

size_t ConsulDouble::service_count() const {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  return impl_->services_.size();
}

uint64_t ConsulDouble::requests_served() const {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  return impl_->requests_;
}

}  // namespace micro::consul::testing
