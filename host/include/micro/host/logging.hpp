// Routes module log lines into spdlog, one logger per module, so one configuration (level,
// format, sinks) governs every line a process prints.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "micro/host.h"

namespace micro::host {

// The host API one instance receives: its log calls land in the spdlog logger named after it.
class ModuleLogSink {
 public:
  explicit ModuleLogSink(const std::string& name);
  const micro_host_api_t* api() const noexcept { return &api_; }

 private:
  std::shared_ptr<spdlog::logger> logger_;
  micro_host_api_t api_{};
};

// Sets the level of every logger, present and future, from "trace".."critical" / "off".
// Returns false (and changes nothing) for an unknown name.
bool set_log_level(const std::string& level);

// The host's own logger ("micro").
std::shared_ptr<spdlog::logger> host_logger();

}  // namespace micro::host
