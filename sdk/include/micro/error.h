/* The one error type on the boundary, mirroring go-micro's errors.Error {id, code, detail, status}.
 * A NULL `micro_error_t*` means success. */
#ifndef MICRO_ERROR_H
#define MICRO_ERROR_H

#include "micro/types.h"

/* HTTP-style codes, as go-micro uses them. */
enum {
  MICRO_CODE_BAD_REQUEST = 400,
  MICRO_CODE_UNAUTHORIZED = 401,
  MICRO_CODE_FORBIDDEN = 403,
  MICRO_CODE_NOT_FOUND = 404,
  MICRO_CODE_METHOD_NOT_ALLOWED = 405,
  MICRO_CODE_TIMEOUT = 408,
  MICRO_CODE_CONFLICT = 409,
  MICRO_CODE_UNSUPPORTED_MEDIA_TYPE = 415,
  MICRO_CODE_TOO_MANY_REQUESTS = 429,
  MICRO_CODE_CLIENT_CLOSED = 499,
  MICRO_CODE_INTERNAL = 500,
  MICRO_CODE_NOT_IMPLEMENTED = 501,
  MICRO_CODE_BAD_GATEWAY = 502,
  MICRO_CODE_UNAVAILABLE = 503,
  MICRO_CODE_GATEWAY_TIMEOUT = 504
};

typedef struct micro_error micro_error_t;

struct micro_error {
  size_t struct_size;
  /* Frees this error and its strings; set by whoever allocated it, so memory returns to the
   * allocator that made it. NULL for errors that are only ever borrowed (passed to callbacks). */
  void (*release)(micro_error_t* self);
  int32_t code;       /* HTTP-style, see above */
  micro_str_t id;     /* who produced it: a service or module name, e.g. "go.micro.client" */
  micro_str_t detail; /* human-readable: names the thing that failed and what to do */
  micro_str_t status; /* the code's text, e.g. "Not Found" */
};

/* Frees an error returned to the caller; NULL is fine. */
static inline void micro_error_free(micro_error_t* error) {
  if (error != NULL && error->release != NULL) error->release(error);
}

#endif /* MICRO_ERROR_H */
