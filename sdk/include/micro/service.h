/* Service: a client and a server composed under one name; started and stopped as one. */
#ifndef MICRO_SERVICE_H
#define MICRO_SERVICE_H

#include "micro/server.h"

/* Implemented by a service module. Functions may be called from any thread. */
typedef struct micro_service_vtable {
  size_t struct_size;
  void (*destroy)(void* self);
  /* Starts the server (and whatever else the service runs, such as a health endpoint). */
  void (*start)(void* self, micro_done_fn done, void* ctx);
  /* Deregisters and stops cleanly. */
  void (*stop)(void* self, micro_done_fn done, void* ctx);
} micro_service_vtable_t;

typedef struct micro_service_instance {
  const micro_service_vtable_t* vtable;
  void* self;
} micro_service_instance_t;

#endif /* MICRO_SERVICE_H */
