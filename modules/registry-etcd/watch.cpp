#include "watch.hpp"

#include <algorithm>
#include <utility>

#include "wire.hpp"

namespace micro::registry_etcd {
namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Watch::Watch(Gateway& gateway, Logger log, std::string key_prefix, std::string service,
             Deliver deliver, std::function<void()> reauthenticate)
    : gateway_(gateway),
      log_(std::move(log)),
      key_prefix_(std::move(key_prefix)),
      service_(std::move(service)),
      deliver_(std::move(deliver)),
      reauthenticate_(std::move(reauthenticate)),
      timer_(gateway.io()) {}

void Watch::start(std::function<void()> first_read) {
  first_read_ = std::move(first_read);
  list();
}

void Watch::stop() {
  stopped_ = true;
  if (first_read_) std::exchange(first_read_, nullptr)();
  timer_.cancel();
  if (stream_) stream_->close();
  stream_.reset();
  deliver_ = nullptr;
}

void Watch::list() {
  if (stopped_) return;
  RangeRequest request;
  request.set_key(key_prefix_);
  request.set_range_end(range_end_of_prefix(key_prefix_));
  gateway_.post("/v3/kv/range", to_json(request),
                [self = shared_from_this()](const Error& e, unsigned status, std::string body) {
                  self->listed(e, status, body);
                });
}

void Watch::listed(const Error& error, unsigned status, const std::string& body) {
  if (stopped_) return;
  if (first_read_) std::exchange(first_read_, nullptr)();
  RangeResponse range;
  Error e = error.ok() ? parse_answer(status, body, &range, "range " + key_prefix_) : error;
  if (!e.ok()) {
    // Started while etcd cannot be read: the starting point is "nothing known", so every node
    // found once etcd answers is reported (created after the watch began, as far as it knows).
    listed_ = true;
    return retry_later(&Watch::list, e);
  }

  std::map<std::string, Service> now;
  for (const auto& kv : range.kvs()) {
    auto record = decode_record(kv.value());
    if (!record.ok()) {
      log_.debug("registry-etcd: skipping key ", kv.key(), ": ", record.error.detail());
      continue;
    }
    if (!service_.empty() && record.value.name != service_) continue;
    now.emplace(kv.key(), std::move(record.value));
  }
  if (!listed_) {
    nodes_ = std::move(now);  // the starting point, not news
    listed_ = true;
  } else {
    // Read again after a compaction: report the difference.
    std::vector<std::string> gone;
    for (const auto& [key, node] : nodes_)
      if (now.count(key) == 0) gone.push_back(key);
    for (const auto& key : gone) remove(key);
    for (auto& [key, node] : now) put_record(key, std::move(node));
  }
  next_revision_ = range.header().revision() + 1;
  backoff_ = kFirstBackoff;
  open_stream();
}

void Watch::open_stream() {
  if (stopped_) return;
  WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(key_prefix_);
  create->set_range_end(range_end_of_prefix(key_prefix_));
  create->set_start_revision(next_revision_);
  create->set_prev_kv(true);
  auto self = shared_from_this();
  stream_ = gateway_.open_stream(
      "/v3/watch", to_json(request), [self](std::string object) { self->on_object(object); },
      [self](const Error& e) { self->on_end(e); });
}

void Watch::on_object(const std::string& object) {
  if (stopped_) return;
  auto message = parse_watch_message(object);
  if (!message.ok()) {
    stream_->close();
    return on_end(message.error);
  }
  const WatchResponse& response = message.value;
  if (response.compact_revision() > 0) {
    log_.info("registry-etcd: watch of ", key_prefix_, " lost revisions to compaction (",
              next_revision_, " < ", response.compact_revision(), "); reading the keys again");
    stream_->close();
    stream_.reset();
    return list();
  }
  if (response.canceled()) {
    stream_->close();
    return on_end(Error::unavailable("etcd canceled the watch: " + response.cancel_reason()));
  }
  backoff_ = kFirstBackoff;  // a healthy stream
  for (const auto& event : response.events()) {
    if (stopped_) return;
    if (event.type() == Event::DELETE)
      remove(event.kv().key());
    else
      put(event.kv().key(), event.kv().value());
    next_revision_ = std::max(next_revision_, event.kv().mod_revision() + 1);
  }
}

void Watch::on_end(const Error& error) {
  stream_.reset();
  if (stopped_) return;
  retry_later(&Watch::open_stream, error);
}

void Watch::retry_later(void (Watch::*step)(), const Error& why) {
  if (reauthenticate_ && (why.detail().find("invalid auth token") != std::string::npos ||
                          why.detail().find("user name is empty") != std::string::npos))
    reauthenticate_();
  log_.debug("registry-etcd: watch of ", key_prefix_, ": ", why.detail(), "; again in ",
             backoff_.count(), " ms");
  timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  timer_.async_wait([self = shared_from_this(), step](const boost::system::error_code& ec) {
    if (!ec && !self->stopped_) ((*self).*step)();
  });
}

bool Watch::has_version(const Service& service, const std::string& except_key) const {
  return std::any_of(nodes_.begin(), nodes_.end(), [&](const auto& entry) {
    return entry.first != except_key && entry.second.name == service.name &&
           entry.second.version == service.version;
  });
}

void Watch::put(const std::string& key, const std::string& value) {
  auto record = decode_record(value);
  if (!record.ok()) {
    log_.debug("registry-etcd: skipping key ", key, ": ", record.error.detail());
    return remove(key);  // whatever it held before is gone
  }
  put_record(key, std::move(record.value));
}

void Watch::put_record(const std::string& key, Service record) {
  if (!service_.empty() && record.name != service_) return;
  auto it = nodes_.find(key);
  if (it != nodes_.end() && it->second == record) return;  // written again unchanged
  const bool first = it == nodes_.end() && !has_version(record, key);
  nodes_[key] = record;
  emit(first ? RegistryEventType::create : RegistryEventType::update, std::move(record));
}

void Watch::remove(const std::string& key) {
  auto it = nodes_.find(key);
  if (it == nodes_.end()) return;
  Service gone = std::move(it->second);
  nodes_.erase(it);
  emit(RegistryEventType::remove, std::move(gone));
}

void Watch::emit(RegistryEventType type, Service service) {
  if (deliver_) deliver_(RegistryEvent{type, std::move(service), unix_ms()});
}

}  // namespace micro::registry_etcd
