/* What the host gives every module instance: its logging sink and the host's versions. */
#ifndef MICRO_HOST_H
#define MICRO_HOST_H

#include "micro/error.h"

/* Log levels, the same as spdlog's. Values are stable forever. */
typedef enum micro_log_level {
  MICRO_LOG_TRACE = 0,
  MICRO_LOG_DEBUG = 1,
  MICRO_LOG_INFO = 2,
  MICRO_LOG_WARN = 3,
  MICRO_LOG_ERROR = 4,
  MICRO_LOG_CRITICAL = 5
} micro_log_level_t;

/* Implemented by the host; valid until the instance it was given to is destroyed. */
typedef struct micro_host_api {
  size_t struct_size;
  uint32_t abi_major; /* the host's ABI version */
  uint32_t abi_minor;
  void* ctx; /* host-owned; pass it back to every function below */
  /* Writes one log line, tagged with the module's name. Any thread; `message` is borrowed. */
  void (*log)(void* ctx, int32_t level, micro_str_t message);
  /* Nonzero when a line at `level` would be written: lets a module skip formatting. Any thread. */
  int32_t (*log_enabled)(void* ctx, int32_t level);
} micro_host_api_t;

/* Completion for an operation with no result. See abi.h for the thread and ownership rules. */
typedef void (*micro_done_fn)(void* ctx, const micro_error_t* error);

#endif /* MICRO_HOST_H */
