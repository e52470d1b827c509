#include "watcher.hpp"

#include <algorithm>
#include <chrono>

namespace micro::consul {

namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::vector<micro::RegistryEvent> diff(const std::map<std::string, Instance>& before,
                                       const std::map<std::string, Instance>& after) {
  std::vector<micro::RegistryEvent> events;
  std::map<std::string, int> nodes_of_version;
  for (const auto& [id, instance] : before) ++nodes_of_version[instance.service.version];

  std::vector<const Instance*> added;
  for (const auto& [id, instance] : after) {
    auto old = before.find(id);
    if (old == before.end()) {
      added.push_back(&instance);
    } else if (!(old->second.service == instance.service)) {
      events.push_back({micro::RegistryEventType::update, instance.service, unix_ms()});
      // A node that moved to another version leaves the old one and joins the new one.
      --nodes_of_version[old->second.service.version];
      ++nodes_of_version[instance.service.version];
    }
  }
  std::sort(added.begin(), added.end(), [](const Instance* a, const Instance* b) {
    return std::tie(a->create_index, a->service.nodes[0].id) <
           std::tie(b->create_index, b->service.nodes[0].id);
  });
  for (const Instance* instance : added) {
    int& count = nodes_of_version[instance->service.version];
    events.push_back(
        {count == 0 ? micro::RegistryEventType::create : micro::RegistryEventType::update,
         instance->service, unix_ms()});
    ++count;
  }
  for (const auto& [id, instance] : before)
    if (after.count(id) == 0)
      events.push_back({micro::RegistryEventType::remove, instance.service, unix_ms()});
  return events;
}

BlockingQuery::BlockingQuery(Client& client, const WatchSettings& settings, micro::Logger log,
                             std::string path)
    : client_(client),
      settings_(settings),
      log_(std::move(log)),
      path_(std::move(path)),
      connection_(client.dedicated()),
      retry_timer_(client.io()) {}

void BlockingQuery::stop() {
  stopped_ = true;
  signal_ready();
  retry_timer_.cancel();
  connection_->close();
}

void BlockingQuery::query() {
  if (stopped_) return;
  const auto wait = settings_.wait;
  std::string target = path_ + (path_.find('?') == std::string::npos ? "?" : "&") +
                       "index=" + std::to_string(index_) + "&wait=" + go_duration(wait) +
                       settings_.query_suffix;
  // Consul answers a blocking query within wait plus up to wait/16 of jitter.
  const auto deadline = client_.settings().timeout + wait + wait / 16;
  connection_->request(
      http::verb::get, target, {}, deadline,
      [self = shared_from_this(), target](const micro::Error& error, HttpResponse response) {
        if (self->stopped_) return;
        if (!error.ok()) return self->retry_later(error);
        if (response.status != 200)
          return self->retry_later(
              status_error(self->client_.settings(), http::verb::get, target, response));
        if (!self->on_answer(response.body))
          return self->retry_later(micro::Error(
              502,
              self->client_.settings().describe() + " sent an unreadable answer to GET " + target));
        if (self->failures_ > 0)
          self->log_.info("watch of ", self->path_, " is back after ", self->failures_,
                          " failed attempt(s)");
        self->failures_ = 0;
        if (!self->answered_) {
          self->answered_ = true;
          self->first_answer_handled();
        }
        // Consul: reset an index that goes backwards, and never block on index 0 forever.
        const uint64_t next = response.index.value_or(0);
        self->index_ = next < self->index_ ? 0 : std::max<uint64_t>(next, 1);
        self->query();
      });
}

void BlockingQuery::retry_later(const micro::Error& error) {
  ++failures_;
  signal_ready();
  auto delay = settings_.retry_min;
  for (int i = 1; i < failures_ && delay < settings_.retry_max; ++i) delay *= 2;
  delay = std::min(delay, settings_.retry_max);
  if (failures_ == 1)
    log_.warn("watch of ", path_, " failed: ", error.to_string(), "; retrying with back-off");
  else
    log_.debug("watch of ", path_, " failed again (", failures_, "): ", error.to_string());
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->query();
  });
}

ServiceWatch::ServiceWatch(Client& client, const WatchSettings& settings, micro::Logger log,
                           std::string name, EventSink sink)
    : BlockingQuery(client, settings, std::move(log),
                    "/v1/health/service/" + url_escape(name) + "?passing"),
      name_(std::move(name)),
      sink_(std::move(sink)) {}

bool ServiceWatch::on_answer(const std::string& body) {
  auto parsed = parse_health(body, name_);
  if (!parsed.ok()) {
    log_.debug(parsed.error.to_string());
    return false;
  }
  std::map<std::string, Instance> now;
  for (auto& instance : parsed.value) {
    const std::string id = instance.service.nodes[0].id;
    now.insert_or_assign(id, std::move(instance));
  }
  auto events = diff(known_, now);
  known_ = std::move(now);
  for (const auto& event : events) {
    if (stopped()) break;
    sink_(event);
  }
  return true;
}

CatalogWatch::CatalogWatch(Client& client, const WatchSettings& settings, micro::Logger log,
                           EventSink sink)
    : BlockingQuery(client, settings, std::move(log), "/v1/catalog/services"),
      sink_(std::move(sink)) {}

void CatalogWatch::stop() {
  BlockingQuery::stop();
  for (auto& [name, watch] : services_) watch->stop();
  services_.clear();
}

bool CatalogWatch::on_answer(const std::string& body) {
  auto names = parse_catalog_services(body);
  if (!names.ok()) {
    log_.debug(names.error.to_string());
    return false;
  }
  // A service's loop stays once started: its own answers report its nodes leaving.
  std::vector<std::shared_ptr<ServiceWatch>> started;
  for (const auto& name : names.value) {
    if (services_.count(name) != 0) continue;
    auto watch = std::make_shared<ServiceWatch>(client_, settings_, log_, name, sink_);
    services_.emplace(name, watch);
    started.push_back(watch);
  }
  for (auto& watch : started) {
    if (!answered_first_) {
      ++waiting_for_;
      watch->on_ready([this] {
        if (--waiting_for_ == 0) signal_ready();
      });
    }
    watch->start();
  }
  return true;
}

void CatalogWatch::first_answer_handled() {
  // Ready when every service seen in the first answer has had its first answer too.
  answered_first_ = true;
  if (waiting_for_ == 0) signal_ready();
}

}  // namespace micro::consul
