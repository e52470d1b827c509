#include "micro/host/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <array>
#include <mutex>

namespace micro::host {

namespace {

// Every logger shares the host logger's sinks, so output goes to one place (stderr by default:
// stdout stays clean for command output).
std::shared_ptr<spdlog::logger> make_logger(const std::string& name) {
  static std::mutex mutex;
  const auto host = name == "micro" ? nullptr : host_logger();  // before the lock: it recurses
  std::lock_guard<std::mutex> lock(mutex);
  if (auto existing = spdlog::get(name)) return existing;
  if (host == nullptr) return spdlog::stderr_color_mt(name);
  const auto& sinks = host->sinks();
  auto logger = std::make_shared<spdlog::logger>(name, sinks.begin(), sinks.end());
  spdlog::initialize_logger(logger);  // registers it and applies the global level and pattern
  return logger;
}

spdlog::level::level_enum to_spdlog(int32_t level) {
  if (level < MICRO_LOG_TRACE) return spdlog::level::trace;
  if (level > MICRO_LOG_CRITICAL) return spdlog::level::critical;
  return static_cast<spdlog::level::level_enum>(level);  // same numbering by design
}

}  // namespace

std::shared_ptr<spdlog::logger> host_logger() {
  static const std::shared_ptr<spdlog::logger> logger = make_logger("micro");
  return logger;
}

ModuleLogSink::ModuleLogSink(const std::string& name) : logger_(make_logger(name)) {
  api_.struct_size = sizeof(micro_host_api_t);
  api_.abi_major = MICRO_ABI_VERSION_MAJOR;
  api_.abi_minor = MICRO_ABI_VERSION_MINOR;
  api_.ctx = logger_.get();
  api_.log = [](void* ctx, int32_t level, micro_str_t message) {
    auto* logger = static_cast<spdlog::logger*>(ctx);
    logger->log(to_spdlog(level), "{}",
                std::string_view(message.data == nullptr ? "" : message.data, message.size));
  };
  api_.log_enabled = [](void* ctx, int32_t level) -> int32_t {
    return static_cast<spdlog::logger*>(ctx)->should_log(to_spdlog(level)) ? 1 : 0;
  };
}

bool set_log_level(const std::string& level) {
  static const std::array<const char*, 7> names = {"trace", "debug", "info",    "warn",
                                                   "error", "critical", "off"};
  for (size_t i = 0; i < names.size(); ++i) {
    if (level == names[i]) {
      host_logger();  // make sure the host logger exists before setting levels
      spdlog::set_level(static_cast<spdlog::level::level_enum>(i));
      return true;
    }
  }
  return false;
}

}  // namespace micro::host
