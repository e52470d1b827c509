/* Registry: service discovery. go-micro's Register / Deregister / GetService / ListServices /
 * Watch, asynchronous. */
#ifndef MICRO_REGISTRY_H
#define MICRO_REGISTRY_H

#include "micro/host.h"

typedef struct micro_register_options {
  size_t struct_size;
  uint64_t ttl_ms; /* the registration lapses unless renewed within this; 0 = module default */
} micro_register_options_t;

/* Receives services; the array and everything it points to are borrowed for the call. */
typedef void (*micro_services_fn)(void* ctx, const micro_error_t* error,
                                  const micro_service_t* const* services, size_t count);

typedef enum micro_registry_event_type {
  MICRO_REGISTRY_EVENT_CREATE = 1,
  MICRO_REGISTRY_EVENT_UPDATE = 2,
  MICRO_REGISTRY_EVENT_DELETE = 3
} micro_registry_event_type_t;

typedef struct micro_registry_event {
  size_t struct_size;
  uint32_t type;                  /* micro_registry_event_type_t */
  const micro_service_t* service; /* the nodes created, updated or deleted */
  int64_t timestamp_ms;           /* Unix time */
} micro_registry_event_t;

/* Receives one watch event, borrowed for the call. Never concurrently for one watch. */
typedef void (*micro_registry_event_fn)(void* ctx, const micro_registry_event_t* event);

/* Implemented by a registry module. Functions may be called from any thread. */
typedef struct micro_registry_vtable {
  size_t struct_size;
  /* Frees the instance; every watch must have been removed first. */
  void (*destroy)(void* self);
  /* Adds (or refreshes) the service's nodes. */
  void (*register_service)(void* self, const micro_service_t* service,
                           const micro_register_options_t* options, micro_done_fn done,
                           void* ctx);
  /* Removes the service's nodes; removing what is not there succeeds. */
  void (*deregister_service)(void* self, const micro_service_t* service, micro_done_fn done,
                             void* ctx);
  /* Every version of a service, with its nodes; 404 when none is registered. */
  void (*get_service)(void* self, micro_str_t name, micro_services_fn on_result, void* ctx);
  /* Every service (nodes may be omitted). */
  void (*list_services)(void* self, micro_services_fn on_result, void* ctx);
  /* Starts a watch of `service` (empty: all services). `on_event` runs on a module thread
   * until unwatch; `ctx` must live until then. */
  micro_error_t* (*watch)(void* self, micro_str_t service, micro_registry_event_fn on_event,
                          void* ctx, uint64_t* out_watch_id);
  /* Stops a watch. After it returns no event for it runs, except when called from that watch's
   * own callback, where the current call is the last. */
  void (*unwatch)(void* self, uint64_t watch_id);
} micro_registry_vtable_t;

typedef struct micro_registry {
  const micro_registry_vtable_t* vtable;
  void* self;
} micro_registry_t;

#endif /* MICRO_REGISTRY_H */
