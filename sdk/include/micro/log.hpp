// micro::Logger: a module's way to log through the host, so one spdlog configuration governs
// every line the process prints.
#pragma once

#include <sstream>
#include <string_view>

#include "micro/error.hpp"
#include "micro/host.h"

namespace micro {

class Logger {
 public:
  Logger() = default;
  explicit Logger(const micro_host_api_t* host) noexcept : host_(host) {}

  bool enabled(micro_log_level_t level) const noexcept {
    return host_ != nullptr && host_->log != nullptr &&
           (host_->log_enabled == nullptr || host_->log_enabled(host_->ctx, level) != 0);
  }

  // Writes the parts, streamed one after another: logger.info("listening on ", address).
  template <class... Parts>
  void log(micro_log_level_t level, const Parts&... parts) const {
    if (!enabled(level)) return;
    std::ostringstream line;
    (line << ... << parts);
    const std::string text = line.str();
    host_->log(host_->ctx, level, to_c(text));
  }

  template <class... P> void trace(const P&... p) const { log(MICRO_LOG_TRACE, p...); }
  template <class... P> void debug(const P&... p) const { log(MICRO_LOG_DEBUG, p...); }
  template <class... P> void info(const P&... p) const { log(MICRO_LOG_INFO, p...); }
  template <class... P> void warn(const P&... p) const { log(MICRO_LOG_WARN, p...); }
  template <class... P> void error(const P&... p) const { log(MICRO_LOG_ERROR, p...); }

 private:
  const micro_host_api_t* host_ = nullptr;
};

}  // namespace micro
