/* Handler: business logic as a module, so the generic host runs a service with no user main().
 * Its factory receives the server and client and registers its endpoints and subscribers. */
#ifndef MICRO_HANDLER_H
#define MICRO_HANDLER_H

#include "micro/server.h"

/* Implemented by a handler module. */
typedef struct micro_handler_vtable {
  size_t struct_size;
  /* Frees the instance; the server it registered with has been stopped. */
  void (*destroy)(void* self);
} micro_handler_vtable_t;

typedef struct micro_handler {
  const micro_handler_vtable_t* vtable;
  void* self;
} micro_handler_t;

#endif /* MICRO_HANDLER_H */
