// registry-mdns: the zero-config registry. Each node is a DNS-SD instance announced over
// multicast DNS (RFC 6762/6763); lookups query the link and collect answers for a bounded time,
// and a cache fed by every packet seen answers repeated lookups at once.
//
// Threading: one io_context thread per instance owns the sockets, the cache and the
// registrations; the public methods post to it. Completions and watch events run on it.
#include <net/if.h>
#include <sys/socket.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "dns_message.hpp"
#include "micro/registry.hpp"
#include "node_records.hpp"

namespace micro::registry_mdns {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint16_t kPort = 5353;
constexpr uint32_t kLegacyTtl = 10;  // RFC 6762 §6.7: cap for legacy unicast answers
// Records per outgoing message are packed up to this (uncompressed) size.
constexpr size_t kPackBytes = kMaxMessageBytes - 200;
constexpr size_t kMaxAddressesPerHost = 4;
constexpr auto kTombstone = std::chrono::seconds(2);

int64_t unix_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string record_key(const Record& r) {
  std::string key = name_key(r.name) + '|' + std::to_string(r.type) + '|' + name_key(r.target) +
                    '|' + std::to_string(r.port) + '|' + r.address;
  for (const auto& s : r.strings) key += '|' + s;
  return key;
}

// Records to send together: answers and the additionals that go with them.
struct Batch {
  std::vector<Record> answers, additionals;
};

class MdnsRegistry final : public RegistryPlugin {
 public:
  static std::vector<OptionSpec> options() {
    return {
        {"domain", MICRO_OPTION_STRING, "DNS-SD domain", "\"local\""},
        {"ttl_ms", MICRO_OPTION_INT,
         "record TTL for registrations that set none; re-announced at 80% of it", "120000"},
        {"query_timeout_ms", MICRO_OPTION_INT,
         "how long a lookup collects answers before it returns", "500"},
        {"interfaces", MICRO_OPTION_STRING_LIST,
         "IPv4 addresses of the interfaces to join 224.0.0.251 on (empty: the system's default)",
         ""},
        {"ipv4", MICRO_OPTION_BOOL, "speak mDNS on 224.0.0.251:5353", "true"},
        {"ipv6", MICRO_OPTION_BOOL, "also speak mDNS on [ff02::fb]:5353", "false"},
        {"ipv6_interface", MICRO_OPTION_STRING,
         "name of the interface for ff02::fb (empty: the system's choice)", "\"\""},
        {"cache_limit", MICRO_OPTION_INT, "most instances the cache keeps", "1024"},
    };
  }

  explicit MdnsRegistry(const CreateContext& ctx)
      : log_(ctx.logger()),
        domain_(parse_name(ctx.options().get_string("domain", "local"))),
        default_ttl_ms_(ctx.options().get_int("ttl_ms", 120000)),
        query_timeout_(ctx.options().get_int("query_timeout_ms", 500)),
        cache_limit_(size_t(std::max<int64_t>(1, ctx.options().get_int("cache_limit", 1024)))),
        v4_(io_),
        v6_(io_),
        timer_(io_) {
    if (domain_.empty()) throw Exception(Error::bad_request("registry-mdns: domain is empty"));
    if (default_ttl_ms_ < 1000)
      throw Exception(
          Error::bad_request("registry-mdns: ttl_ms must be >= 1000 (DNS TTLs are seconds)"));
    if (query_timeout_.count() <= 0)
      throw Exception(Error::bad_request("registry-mdns: query_timeout_ms must be > 0"));
    const bool ipv4 = ctx.options().get_bool("ipv4", true);
    const bool ipv6 = ctx.options().get_bool("ipv6", false);
    if (!ipv4 && !ipv6)
      throw Exception(Error::bad_request("registry-mdns: ipv4 and ipv6 are both false"));
    if (ipv4) open_v4(ctx.options().get_list("interfaces"));
    if (ipv6) open_v6(ctx.options().get_string("ipv6_interface"), /*required=*/!ipv4);
    if (v4_.is_open()) receive(v4_, v4_buffer_, v4_sender_);
    if (v6_.is_open()) receive(v6_, v6_buffer_, v6_sender_);
    thread_ = std::thread([this] { io_.run(); });
  }

  ~MdnsRegistry() override {
    // A clean stop says goodbye for every node still registered, then fails pending lookups.
    run_on_io([this] {
      for (const auto& [key, reg] : registrations_) send_goodbye(reg);
      for (auto& [id, q] : queries_) q.done(Error::unavailable("registry-mdns is stopping"), {});
      queries_.clear();
      boost::system::error_code ec;
      v4_.close(ec);
      v6_.close(ec);
      timer_.cancel();
    });
    work_.reset();
    io_.stop();
    thread_.join();
  }

  void register_service(const Service& service, const RegisterOptions& options,
                        Done done) override {
    if (service.name.empty()) return done(Error::bad_request("registry-mdns: service has no name"));
    if (service.nodes.empty())
      return done(Error::bad_request("registry-mdns: service '" + service.name + "' has no nodes"));
    const uint64_t ttl_ms = options.ttl_ms != 0 ? options.ttl_ms : uint64_t(default_ttl_ms_);
    const uint32_t ttl_s = uint32_t(std::max<uint64_t>(1, (ttl_ms + 999) / 1000));
    std::vector<Registration> regs;
    for (const auto& node : service.nodes) {
      Service one = service;
      one.nodes = {node};
      auto records = node_records(one, domain_, ttl_s);
      if (!records.ok()) return done(records.error);
      Registration reg{one, std::move(records.value), ttl_s, Clock::time_point::max(), {}};
      if (options.ttl_ms != 0) reg.lapse = Clock::now() + milliseconds(options.ttl_ms);
      regs.push_back(std::move(reg));
    }
    asio::post(io_, [this, regs = std::move(regs), done = std::move(done)]() mutable {
      for (auto& reg : regs) {
        const std::string key = name_key(reg.records.instance);
        auto it = registrations_.find(key);
        const bool changed = it == registrations_.end() || !(it->second.service == reg.service);
        // A new or changed node is announced twice, a second apart (RFC 6762 §8.3); a refresh once.
        reg.next_announce = changed ? Clock::now() + std::chrono::seconds(1) : next_reannounce(reg);
        send_records({reg.records.all(), {}}, multicast_endpoint(), 0, {}, false);
        tombstones_.erase(key);
        apply_records(reg.records.all(), false);
        registrations_[key] = std::move(reg);
      }
      schedule();
      done({});
    });
  }

  void deregister_service(const Service& service, Done done) override {
    asio::post(io_, [this, service, done = std::move(done)] {
      for (const auto& node : service.nodes) {
        const Name instance = instance_name(node.id, service_type(service.name, domain_));
        auto it = registrations_.find(name_key(instance));
        if (it == registrations_.end()) continue;
        send_goodbye(it->second);
        forget_registration(it);
      }
      schedule();
      done({});
    });
  }

  void get_service(const std::string& name, ServicesCallback done) override {
    asio::post(io_, [this, name, done = std::move(done)] {
      const Name type = service_type(name, domain_);
      Query q{name, type, std::move(done), {}};
      if (queried_types_.count(name_key(type)) != 0) return finish(q);
      ask({{type, kTypePtr, false}});
      start_query(std::move(q));
    });
  }

  void list_services(ServicesCallback done) override {
    asio::post(io_, [this, done = std::move(done)] {
      Query q{"", {}, std::move(done), {}};
      if (enumerated_) return finish(q);
      ask({{enumeration_name(domain_), kTypePtr, false}});
      start_query(std::move(q));
    });
  }

  uint64_t watch(const std::string& service, RegistryEventCallback on_event) override {
    std::lock_guard<std::mutex> lock(watch_mutex_);
    const uint64_t id = ++last_watch_id_;
    watchers_[id] = std::make_shared<Watcher>(Watcher{service, std::move(on_event)});
    return id;
  }

  void unwatch(uint64_t watch_id) override {
    {
      std::lock_guard<std::mutex> lock(watch_mutex_);
      watchers_.erase(watch_id);
    }
    // Wait for a delivery in progress on the io thread, so no event follows our return.
    if (std::this_thread::get_id() != thread_.get_id())
      std::lock_guard<std::mutex> wait(delivery_mutex_);
  }

 private:
  struct Registration {
    Service service;  // one node
    NodeRecords records;
    uint32_t ttl_s = 0;
    Clock::time_point lapse;  // max: until deregistered
    Clock::time_point next_announce;
  };
  struct Timed {
    Record record;
    Clock::time_point expires;
  };
  // What the cache knows of one instance; a node once both SRV and TXT are in.
  struct Instance {
    Name name;
    std::optional<Timed> srv, txt;
    std::optional<Service> node;
  };
  struct Query {
    std::string service;  // empty: list
    Name type;
    ServicesCallback done;
    std::set<std::string> asked;  // type keys a list query has followed up
  };
  struct Watcher {
    std::string service;
    RegistryEventCallback on_event;
  };

  // ---- sockets -----------------------------------------------------------------------------

  void open_v4(const std::vector<std::string>& interfaces) {
    const auto group = asio::ip::make_address_v4("224.0.0.251");
    try {
      v4_.open(udp::v4());
      v4_.set_option(asio::socket_base::reuse_address(true));
      set_reuse_port(v4_);
      v4_.bind(udp::endpoint(asio::ip::address_v4::any(), kPort));
      if (interfaces.empty()) {
        v4_.set_option(asio::ip::multicast::join_group(group));
      } else {
        for (const auto& iface : interfaces) {
          const auto local = asio::ip::make_address_v4(iface);
          v4_.set_option(asio::ip::multicast::join_group(group, local));
          v4_interfaces_.push_back(local);
        }
      }
      v4_.set_option(asio::ip::multicast::enable_loopback(true));
      v4_.set_option(asio::ip::multicast::hops(255));
      boost::system::error_code ignored;  // the kernel may cap it (net.core.rmem_max)
      v4_.set_option(asio::socket_base::receive_buffer_size(1 << 20), ignored);
    } catch (const std::exception& e) {
      throw Exception(Error::unavailable(
          std::string("registry-mdns: cannot listen on 0.0.0.0:5353 and join 224.0.0.251: ") +
          e.what() + " (is multicast routed? `ip route add 224.0.0.0/4 dev IFACE`)"));
    }
  }

  // `required`: IPv6 is the only family, so failing to join is an error, not a warning.
  void open_v6(const std::string& interface, bool required) {
    try {
      if (!interface.empty()) {
        v6_scope_ = ::if_nametoindex(interface.c_str());
        if (v6_scope_ == 0) throw std::runtime_error("no interface named '" + interface + "'");
      }
      v6_.open(udp::v6());
      v6_.set_option(asio::ip::v6_only(true));
      v6_.set_option(asio::socket_base::reuse_address(true));
      set_reuse_port(v6_);
      v6_.bind(udp::endpoint(asio::ip::address_v6::any(), kPort));
      v6_.set_option(asio::ip::multicast::join_group(v6_group(), v6_scope_));
      if (v6_scope_ != 0) v6_.set_option(asio::ip::multicast::outbound_interface(v6_scope_));
      v6_.set_option(asio::ip::multicast::enable_loopback(true));
      v6_.set_option(asio::ip::multicast::hops(255));
    } catch (const std::exception& e) {
      boost::system::error_code ec;
      v6_.close(ec);
      if (required)
        throw Exception(Error::unavailable(
            std::string("registry-mdns: cannot listen on [::]:5353 and join ff02::fb: ") +
            e.what()));
      log_.warn("registry-mdns: IPv6 disabled, cannot join [ff02::fb]:5353: ", e.what());
    }
  }

  // Many processes on one host share port 5353.
  static void set_reuse_port(udp::socket& socket) {
    int one = 1;
    if (::setsockopt(socket.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      throw std::runtime_error("SO_REUSEPORT failed");
  }

  asio::ip::address_v6 v6_group() const {
    auto group = asio::ip::make_address_v6("ff02::fb");
    group.scope_id(v6_scope_);
    return group;
  }

  udp::endpoint multicast_endpoint() const {
    return udp::endpoint(asio::ip::make_address_v4("224.0.0.251"), kPort);
  }

  void receive(udp::socket& socket, std::array<uint8_t, kMaxMessageBytes + 1>& buffer,
               udp::endpoint& sender) {
    socket.async_receive_from(
        asio::buffer(buffer), sender,
        [this, &socket, &buffer, &sender](const boost::system::error_code& ec, size_t size) {
          if (ec == asio::error::operation_aborted || !socket.is_open()) return;
          if (!ec) on_datagram(buffer.data(), size, sender);
          receive(socket, buffer, sender);
        });
  }

  void send(const std::vector<uint8_t>& bytes, const udp::endpoint& to) {
    boost::system::error_code ec;
    if (to.address().is_v4() && to.address().is_multicast()) {
      if (!v4_.is_open()) {
        // IPv6 only: below.
      } else if (v4_interfaces_.empty()) {
        v4_.send_to(asio::buffer(bytes), to, 0, ec);
      } else {
        for (const auto& iface : v4_interfaces_) {
          v4_.set_option(asio::ip::multicast::outbound_interface(iface), ec);
          v4_.send_to(asio::buffer(bytes), to, 0, ec);
        }
      }
      if (v6_.is_open()) {
        boost::system::error_code ec6;
        v6_.send_to(asio::buffer(bytes), udp::endpoint(v6_group(), kPort), 0, ec6);
        if (ec6) log_.debug("registry-mdns: send to ff02::fb failed: ", ec6.message());
      }
    } else if (to.address().is_v4() && v4_.is_open()) {
      v4_.send_to(asio::buffer(bytes), to, 0, ec);
    } else if (v6_.is_open()) {
      v6_.send_to(asio::buffer(bytes), to, 0, ec);
    }
    if (ec)
      log_.debug("registry-mdns: send to ", to.address().to_string(), " failed: ", ec.message());
  }

  // Sends `batch`, split into as many messages as it takes.
  void send_records(const Batch& batch, const udp::endpoint& to, uint16_t id,
                    const std::vector<Question>& questions, bool legacy) {
    Message m;
    m.id = id;
    m.response = true;
    m.questions = questions;
    size_t size = 12;
    for (const auto& q : questions) size += to_string(q.name).size() + 6;
    const size_t base = size;
    auto flush = [&] {
      if (m.answers.empty() && m.additionals.empty()) return;
      auto wire = encode_message(m);
      if (!wire.ok())
        log_.warn("registry-mdns: cannot send an answer: ", wire.error.detail());
      else
        send(wire.value, to);
      m.answers.clear();
      m.additionals.clear();
      size = base;
    };
    auto add = [&](Record r, std::vector<Record>& section) {
      if (legacy) {
        r.ttl = std::min(r.ttl, kLegacyTtl);
        r.cache_flush = false;
      }
      const size_t s = encoded_size_bound(r);
      if (size + s > kPackBytes) flush();
      size += s;
      section.push_back(std::move(r));
    };
    for (const auto& r : batch.answers) add(r, m.answers);
    for (const auto& r : batch.additionals) add(r, m.additionals);
    flush();
  }

  void send_goodbye(const Registration& reg) {
    // The enumeration PTR and the host's address are shared with other nodes: they are left to
    // expire rather than flushed from everyone's cache.
    std::vector<Record> records{reg.records.type_ptr, reg.records.srv, reg.records.txt};
    for (auto& r : records) r.ttl = 0;
    send_records({records, {}}, multicast_endpoint(), 0, {}, false);
  }

  void ask(const std::vector<Question>& questions) {
    Message m;
    m.questions = questions;
    auto wire = encode_message(m);
    if (!wire.ok()) return log_.debug("registry-mdns: cannot ask: ", wire.error.detail());
    send(wire.value, multicast_endpoint());
  }

  // ---- incoming ----------------------------------------------------------------------------

  void on_datagram(const uint8_t* data, size_t size, const udp::endpoint& sender) {
    std::string why;
    auto message = decode_message(data, size, &why);
    if (!message) {
      log_.debug("registry-mdns: ignored a ", size, "-byte packet from ",
                 sender.address().to_string(), ":", sender.port(), ": ", why);
      return;
    }
    if (!message->response) return answer(*message, sender);
    if (sender.port() != kPort) {  // RFC 6762 §11: a response from another port is no mDNS
      log_.debug("registry-mdns: ignored a response from port ", sender.port());
      return;
    }
    std::vector<Record> records = std::move(message->answers);
    records.insert(records.end(), std::make_move_iterator(message->additionals.begin()),
                   std::make_move_iterator(message->additionals.end()));
    apply_records(records, true);
    schedule();
  }

  // Answers the questions we hold records for (RFC 6762 §6); a query from a port other than
  // 5353 is a legacy unicast query and gets a unicast reply with its id (§6.7).
  void answer(const Message& query, const udp::endpoint& sender) {
    const bool legacy = sender.port() != kPort;
    Batch batch;
    std::set<std::string> seen;
    auto add = [&](const Record& r, std::vector<Record>& section) {
      if (seen.insert(record_key(r)).second) section.push_back(r);
    };
    const std::string enumeration = name_key(enumeration_name(domain_));
    for (const auto& q : query.questions) {
      const std::string key = name_key(q.name);
      const bool any = q.type == kTypeAny;
      for (const auto& [instance, reg] : registrations_) {
        const NodeRecords& r = reg.records;
        if (key == enumeration && (any || q.type == kTypePtr))
          add(r.enumeration_ptr, batch.answers);
        if (key == name_key(r.type) && (any || q.type == kTypePtr)) {
          add(r.type_ptr, batch.answers);
          add(r.srv, batch.additionals);
          add(r.txt, batch.additionals);
          if (r.address) add(*r.address, batch.additionals);
        }
        if (key == instance) {
          if (any || q.type == kTypeSrv) {
            add(r.srv, batch.answers);
            if (r.address) add(*r.address, batch.additionals);
          }
          if (any || q.type == kTypeTxt) add(r.txt, batch.answers);
        }
        if (r.address && key == name_key(r.address->name) && (any || q.type == r.address->type))
          add(*r.address, batch.answers);
      }
    }
    if (batch.answers.empty()) return;
    if (legacy)
      send_records(batch, sender, query.id, query.questions, true);
    else
      send_records(batch, multicast_endpoint(), 0, {}, false);
  }

  // Feeds records into the cache and tells watchers what changed. `from_wire`: records seen on
  // the network (pending lookups may follow them up).
  void apply_records(const std::vector<Record>& records, bool from_wire) {
    const auto now = Clock::now();
    const std::string enumeration = name_key(enumeration_name(domain_));
    std::set<std::string> touched;
    std::vector<Question> follow_up;
    std::vector<Name> pointed;  // instances a lookup in progress heard of
    for (const auto& r : records) {
      const auto expires = now + std::chrono::seconds(r.ttl);
      switch (r.type) {
        case kTypePtr: {
          if (name_key(r.name) == enumeration) {
            if (r.ttl != 0 && from_wire) follow_types(r.target, &follow_up);
            break;
          }
          const std::string key = name_key(r.target);
          if (r.ttl == 0) {
            if (auto it = instances_.find(key); it != instances_.end()) {
              it->second.srv.reset();
              touched.insert(key);
            }
          } else if (from_wire && wants_type(r.name)) {
            pointed.push_back(r.target);
          }
          break;
        }
        case kTypeSrv:
        case kTypeTxt: {
          const std::string key = name_key(r.name);
          if (from_wire && r.ttl != 0 && tombstoned(key)) break;
          auto it = instances_.find(key);
          if (it == instances_.end()) {
            if (r.ttl == 0) break;
            if (instances_.size() >= cache_limit_) {
              log_.debug("registry-mdns: cache full (", cache_limit_, " instances), ignored ",
                         to_string(r.name));
              break;
            }
            it = instances_.emplace(key, Instance{r.name, {}, {}, {}}).first;
          }
          auto& slot = r.type == kTypeSrv ? it->second.srv : it->second.txt;
          if (r.ttl == 0)
            slot.reset();
          else
            slot = Timed{r, expires};
          touched.insert(key);
          break;
        }
        case kTypeA:
        case kTypeAaaa: {
          const std::string key = name_key(r.name);
          auto it = hosts_.find(key);
          if (it == hosts_.end()) {
            if (r.ttl == 0 || hosts_.size() >= cache_limit_) break;
            it = hosts_.emplace(key, std::vector<Timed>{}).first;
          }
          auto& list = it->second;
          list.erase(std::remove_if(list.begin(), list.end(),
                                    [&](const Timed& t) { return t.record.address == r.address; }),
                     list.end());
          if (r.ttl != 0 && list.size() < kMaxAddressesPerHost) list.push_back({r, expires});
          if (list.empty()) hosts_.erase(it);
          for (const auto& [ikey, inst] : instances_)
            if (inst.srv && name_key(inst.srv->record.target) == key) touched.insert(ikey);
          break;
        }
        default:
          break;
      }
    }
    // Only a PTR: ask for the rest (RFC 6763 §12 lets responders leave it out).
    for (const auto& target : pointed) {
      auto it = instances_.find(name_key(target));
      if (it != instances_.end() && it->second.srv && it->second.txt) continue;
      follow_up.push_back({target, kTypeSrv, false});
      follow_up.push_back({target, kTypeTxt, false});
    }
    if (!follow_up.empty()) ask(follow_up);
    std::vector<RegistryEvent> events;
    for (const auto& key : touched) refresh(key, &events);
    deliver(events);
  }

  // A list lookup in progress follows every service type it hears of.
  void follow_types(const Name& type, std::vector<Question>* follow_up) {
    const std::string key = name_key(type);
    for (auto& [id, q] : queries_)
      if (q.service.empty() && q.asked.insert(key).second) {
        follow_up->push_back({type, kTypePtr, false});
        break;
      }
  }

  bool tombstoned(const std::string& key) {
    auto it = tombstones_.find(key);
    if (it == tombstones_.end()) return false;
    if (it->second > Clock::now()) return true;
    tombstones_.erase(it);
    return false;
  }

  bool wants_type(const Name& type) const {
    const std::string key = name_key(type);
    for (const auto& [id, q] : queries_)
      if (q.service.empty() ? q.asked.count(key) != 0 : name_key(q.type) == key) return true;
    return false;
  }

  // Rebuilds the node of one instance from its records; appends what changed to `events`.
  void refresh(const std::string& key, std::vector<RegistryEvent>* events) {
    auto it = instances_.find(key);
    if (it == instances_.end()) return;
    Instance& inst = it->second;
    std::optional<Service> node;
    if (inst.srv && inst.txt) {
      std::vector<std::string> addresses;
      if (auto h = hosts_.find(name_key(inst.srv->record.target)); h != hosts_.end())
        for (const auto& t : h->second) addresses.push_back(t.record.address);
      std::string why;
      node =
          node_from_records(inst.name, inst.srv->record, inst.txt->record.strings, addresses, &why);
      if (!node) log_.debug("registry-mdns: ignored instance ", to_string(inst.name), ": ", why);
    }
    const int64_t now = unix_ms();
    if (inst.node && (!node || !(*node == *inst.node))) {
      if (!node || node->name != inst.node->name || node->version != inst.node->version)
        events->push_back({RegistryEventType::remove, *inst.node, now});
    }
    if (node && !(inst.node && *node == *inst.node)) {
      const bool moved =
          inst.node && (node->name != inst.node->name || node->version != inst.node->version);
      const bool first = !inst.node || moved;
      bool others = false;
      for (const auto& [k, other] : instances_)
        if (k != key && other.node && other.node->name == node->name &&
            other.node->version == node->version)
          others = true;
      events->push_back(
          {first && !others ? RegistryEventType::create : RegistryEventType::update, *node, now});
    }
    inst.node = std::move(node);
    if (!inst.srv && !inst.txt) instances_.erase(it);
  }

  // ---- lookups -----------------------------------------------------------------------------

  void start_query(Query q) {
    const uint64_t id = ++last_query_id_;
    if (!q.service.empty()) q.asked.insert(name_key(q.type));
    queries_.emplace(id, std::move(q));
    auto timer = std::make_shared<asio::steady_timer>(io_, query_timeout_);
    timer->async_wait([this, id, timer](const boost::system::error_code&) {
      auto it = queries_.find(id);
      if (it == queries_.end()) return;
      Query done = std::move(it->second);
      queries_.erase(it);
      if (done.service.empty())
        enumerated_ = true;
      else
        queried_types_.insert(name_key(done.type));
      finish(done);
    });
  }

  // Answers a lookup from the cache, grouping nodes into services by name and version.
  void finish(Query& q) {
    std::map<std::pair<std::string, std::string>, Service> services;
    for (const auto& [key, inst] : instances_) {
      if (!inst.node || (!q.service.empty() && inst.node->name != q.service)) continue;
      auto [it, inserted] = services.try_emplace({inst.node->name, inst.node->version}, *inst.node);
      if (!inserted) it->second.nodes.push_back(inst.node->nodes.at(0));
    }
    std::vector<Service> out;
    for (auto& [k, s] : services) out.push_back(std::move(s));
    if (!q.service.empty() && out.empty())
      return q.done(
          Error::not_found("service '" + q.service + "' is not registered (no mDNS answer on ." +
                           to_string(domain_) + " within " +
                           std::to_string(query_timeout_.count()) + " ms)"),
          {});
    q.done({}, out);
  }

  // ---- time --------------------------------------------------------------------------------

  Clock::time_point next_reannounce(const Registration& reg) const {
    if (reg.lapse != Clock::time_point::max())
      return Clock::time_point::max();  // refreshed by re-registering
    return Clock::now() + milliseconds(uint64_t(reg.ttl_s) * 800);
  }

  void forget_registration(std::map<std::string, Registration>::iterator it) {
    std::vector<Record> gone{it->second.records.srv, it->second.records.txt};
    for (auto& r : gone) r.ttl = 0;
    tombstones_[it->first] = Clock::now() + kTombstone;
    registrations_.erase(it);
    apply_records(gone, false);
  }

  // Expires cache entries and registrations, re-announces, and sets the timer for what is next.
  void schedule() {
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    for (auto it = registrations_.begin(); it != registrations_.end();) {
      Registration& reg = it->second;
      if (reg.lapse <= now) {
        log_.debug("registry-mdns: registration of ", reg.service.nodes[0].id, " lapsed");
        auto gone = it++;
        forget_registration(gone);
        continue;
      }
      if (reg.next_announce <= now) {
        send_records({reg.records.all(), {}}, multicast_endpoint(), 0, {}, false);
        apply_records(reg.records.all(), false);
        reg.next_announce = next_reannounce(reg);
      }
      next = std::min({next, reg.lapse, reg.next_announce});
      ++it;
    }
    std::vector<RegistryEvent> events;
    std::vector<std::string> stale;
    for (auto& [key, inst] : instances_) {
      bool changed = false;
      for (auto* slot : {&inst.srv, &inst.txt}) {
        if (*slot && (*slot)->expires <= now) {
          slot->reset();
          changed = true;
        } else if (*slot) {
          next = std::min(next, (*slot)->expires);
        }
      }
      if (changed) stale.push_back(key);
    }
    for (auto t = tombstones_.begin(); t != tombstones_.end();)
      t = t->second <= now ? tombstones_.erase(t) : std::next(t);
    for (auto h = hosts_.begin(); h != hosts_.end();) {
      auto& list = h->second;
      list.erase(std::remove_if(list.begin(), list.end(),
                                [&](const Timed& t) { return t.expires <= now; }),
                 list.end());
      for (const auto& t : list) next = std::min(next, t.expires);
      h = list.empty() ? hosts_.erase(h) : std::next(h);
    }
    for (const auto& key : stale) refresh(key, &events);
    deliver(events);
    if (next == Clock::time_point::max()) return (void)timer_.cancel();
    timer_.expires_at(next);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) schedule();
    });
  }

  // ---- plumbing ----------------------------------------------------------------------------

  void deliver(const std::vector<RegistryEvent>& events) {
    if (events.empty()) return;
    std::lock_guard<std::mutex> delivery(delivery_mutex_);
    for (const auto& event : events) {
      std::vector<std::pair<uint64_t, std::shared_ptr<Watcher>>> targets;
      {
        std::lock_guard<std::mutex> lock(watch_mutex_);
        for (const auto& [id, w] : watchers_)
          if (w->service.empty() || w->service == event.service.name) targets.emplace_back(id, w);
      }
      for (const auto& [id, watcher] : targets) {
        {
          std::lock_guard<std::mutex> lock(watch_mutex_);
          if (watchers_.count(id) == 0) continue;  // unwatched by an earlier callback
        }
        watcher->on_event(event);
      }
    }
  }

  // Runs `fn` on the io thread and waits for it.
  void run_on_io(std::function<void()> fn) {
    if (std::this_thread::get_id() == thread_.get_id()) return fn();
    std::promise<void> finished;
    asio::post(io_, [&] {
      fn();
      finished.set_value();
    });
    finished.get_future().wait();
  }

  Logger log_;
  const Name domain_;
  const int64_t default_ttl_ms_;
  const milliseconds query_timeout_;
  const size_t cache_limit_;

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  udp::socket v4_, v6_;
  std::vector<asio::ip::address_v4> v4_interfaces_;
  unsigned int v6_scope_ = 0;  // ff02::fb's interface index; 0: the system's choice
  std::array<uint8_t, kMaxMessageBytes + 1> v4_buffer_{}, v6_buffer_{};
  udp::endpoint v4_sender_, v6_sender_;
  asio::steady_timer timer_;
  std::thread thread_;

  // io thread only
  std::map<std::string, Registration> registrations_;  // by instance key
  std::map<std::string, Instance> instances_;          // the cache, by instance key
  std::map<std::string, std::vector<Timed>> hosts_;    // A/AAAA by host key
  std::set<std::string> queried_types_;  // types looked up once: the cache is complete for them
  bool enumerated_ = false;              // same, for every type
  std::map<uint64_t, Query> queries_;
  uint64_t last_query_id_ = 0;
  // Instances we deregistered lately: our own announcements still in flight through loopback
  // must not bring them back.
  std::map<std::string, Clock::time_point> tombstones_;

  std::mutex watch_mutex_;
  std::map<uint64_t, std::shared_ptr<Watcher>> watchers_;
  uint64_t last_watch_id_ = 0;
  std::mutex delivery_mutex_;
};

}  // namespace
}  // namespace micro::registry_mdns

MICRO_MODULE("registry-mdns", "1.0.0", "Multicast DNS / DNS-SD registry (the zero-config default)",
             micro::plugin<micro::registry_mdns::MdnsRegistry>(
                 "registry-mdns", "mDNS/DNS-SD registry: announce, query, cache and watch"));
