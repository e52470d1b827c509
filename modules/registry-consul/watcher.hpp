// Watching with Consul's blocking queries: one loop per watched service on
// GET /v1/health/service/NAME?passing&index=I&wait=W (and, for a watch of every service, one on
// GET /v1/catalog/services that starts a service loop per name it sees). Each answer is compared
// with the one before and the difference delivered as create/update/delete events. Errors are
// retried after a bounded exponential back-off; an index that goes backwards is reset to 0.
// io thread only, as the Client.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "consul_json.hpp"
#include "http_client.hpp"
#include "micro/log.hpp"
#include "micro/registry.hpp"

namespace micro::consul {

struct WatchSettings {
  std::chrono::milliseconds wait{60000};      // Consul's `wait` of a blocking query
  std::chrono::milliseconds retry_min{100};   // first back-off after an error
  std::chrono::milliseconds retry_max{5000};  // back-off ceiling
  std::string query_suffix;                   // "&dc=..." when a datacenter is set
};

using EventSink = std::function<void(const micro::RegistryEvent&)>;

// The events that turn `before` into `after` (both: node id -> instance of one service).
// Nodes that appear are ordered by Consul's CreateIndex: the first node of a version is a
// create, later ones updates; changed nodes are updates; nodes gone are deletes.
std::vector<micro::RegistryEvent> diff(const std::map<std::string, Instance>& before,
                                       const std::map<std::string, Instance>& after);

class Loop {
 public:
  virtual ~Loop() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
};

// A blocking-query loop on one target: the shared index, back-off and retry.
class BlockingQuery : public Loop, public std::enable_shared_from_this<BlockingQuery> {
 public:
  BlockingQuery(Client& client, const WatchSettings& settings, micro::Logger log, std::string path);
  void start() override { query(); }
  void stop() override;
  // Runs once: after the first answer was handled, or the first attempt failed.
  void on_ready(std::function<void()> ready) { ready_ = std::move(ready); }

 protected:
  // One 200 answer with its body; false when the body could not be read (counts as an error).
  virtual bool on_answer(const std::string& body) = 0;
  // Called after the first answer; a loop that has more to wait for overrides it.
  virtual void first_answer_handled() { signal_ready(); }
  void signal_ready() {
    if (auto ready = std::move(ready_)) {
      ready_ = nullptr;
      ready();
    }
  }
  bool stopped() const { return stopped_; }
  Client& client_;
  const WatchSettings& settings_;
  micro::Logger log_;

 private:
  void query();
  void retry_later(const micro::Error& error);

  std::string path_;
  std::shared_ptr<Connection> connection_;
  boost::asio::steady_timer retry_timer_;
  uint64_t index_ = 0;
  int failures_ = 0;
  bool stopped_ = false;
  bool answered_ = false;
  std::function<void()> ready_;
};

class ServiceWatch final : public BlockingQuery {
 public:
  ServiceWatch(Client& client, const WatchSettings& settings, micro::Logger log, std::string name,
               EventSink sink);

 private:
  bool on_answer(const std::string& body) override;
  std::string name_;
  EventSink sink_;
  std::map<std::string, Instance> known_;
};

// Watches the catalog for service names and runs a ServiceWatch for each.
class CatalogWatch final : public BlockingQuery {
 public:
  CatalogWatch(Client& client, const WatchSettings& settings, micro::Logger log, EventSink sink);
  void stop() override;

 private:
  bool on_answer(const std::string& body) override;
  void first_answer_handled() override;
  EventSink sink_;
  std::map<std::string, std::shared_ptr<ServiceWatch>> services_;
  size_t waiting_for_ = 0;  // service loops whose first answer is still to come
  bool answered_first_ = false;
};

}  // namespace micro::consul
