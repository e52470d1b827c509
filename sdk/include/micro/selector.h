/* Selector: picks a node of a service for the next call (client-side load balancing). */
#ifndef MICRO_SELECTOR_H
#define MICRO_SELECTOR_H

#include "micro/host.h"

typedef struct micro_select_options {
  size_t struct_size;
  micro_str_t strategy;               /* "random", "round_robin"; empty = module default */
  const micro_str_t* exclude_node_ids; /* nodes already tried for this call */
  size_t exclude_count;
} micro_select_options_t;

/* Receives the chosen node, borrowed for the call; NULL with 404/503 when none is available. */
typedef void (*micro_node_fn)(void* ctx, const micro_error_t* error, const micro_node_t* node);

/* Implemented by a selector module. Functions may be called from any thread. */
typedef struct micro_selector_vtable {
  size_t struct_size;
  void (*destroy)(void* self);
  void (*select)(void* self, micro_str_t service, const micro_select_options_t* options,
                 micro_node_fn on_selected, void* ctx);
  /* Reports a call's outcome on a node: `error` NULL for success; a failure may blacklist it. */
  void (*mark)(void* self, micro_str_t service, micro_str_t node_id, const micro_error_t* error);
  /* Forgets what is cached and marked for `service`. */
  void (*reset)(void* self, micro_str_t service);
} micro_selector_vtable_t;

typedef struct micro_selector {
  const micro_selector_vtable_t* vtable;
  void* self;
} micro_selector_t;

#endif /* MICRO_SELECTOR_H */
