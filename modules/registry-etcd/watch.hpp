// One registry watch: a range read of the watched keys, then etcd's watch stream from the next
// revision (so nothing falls in between), turned into create / update / delete events. A broken
// stream is reopened with backoff from the last revision seen; if etcd has compacted that
// revision away, the keys are read again and the difference is reported instead.
// Runs on the io thread: start() and stop() must be called there.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "gateway.hpp"
#include "micro/log.hpp"
#include "micro/registry.hpp"

namespace micro::registry_etcd {

class Watch : public std::enable_shared_from_this<Watch> {
 public:
  // Receives the events in order, on the io thread.
  using Deliver = std::function<void(RegistryEvent)>;

  // Watches the keys under `key_prefix`; `service` (empty: all) filters what they hold.
  // `reauthenticate` (may be null) is called when etcd refuses the auth token; it must get a
  // new one into the gateway (the watch tries again with backoff).
  Watch(Gateway& gateway, Logger log, std::string key_prefix, std::string service, Deliver deliver,
        std::function<void()> reauthenticate = nullptr);

  // Reads the keys, then follows the stream; `first_read` runs once when the first read is done
  // (or failed), so that a caller can wait until changes from then on are certain to be seen.
  void start(std::function<void()> first_read = nullptr);
  void stop();

  // Backoff between attempts to reach etcd again.
  static constexpr std::chrono::milliseconds kFirstBackoff{100};
  static constexpr std::chrono::milliseconds kMaxBackoff{2000};

 private:
  void list();
  void listed(const Error& error, unsigned status, const std::string& body);
  void open_stream();
  void on_object(const std::string& object);
  void on_end(const Error& error);
  void retry_later(void (Watch::*step)(), const Error& why);

  void put(const std::string& key, const std::string& value);
  void put_record(const std::string& key, Service record);
  void remove(const std::string& key);
  bool has_version(const Service& service, const std::string& except_key) const;
  void emit(RegistryEventType type, Service service);

  Gateway& gateway_;
  Logger log_;
  const std::string key_prefix_;
  const std::string service_;
  Deliver deliver_;
  std::function<void()> reauthenticate_;
  std::function<void()> first_read_;

  boost::asio::steady_timer timer_;
  std::shared_ptr<Gateway::Stream> stream_;
  std::chrono::milliseconds backoff_ = kFirstBackoff;
  bool stopped_ = false;
  bool listed_ = false;                   // the first range read is done (its nodes are not news)
  int64_t next_revision_ = 0;             // the stream starts (or resumes) here
  std::map<std::string, Service> nodes_;  // key -> the node record it holds
};

}  // namespace micro::registry_etcd
