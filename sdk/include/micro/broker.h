/* Broker: publish / subscribe on topics, with queue groups. */
#ifndef MICRO_BROKER_H
#define MICRO_BROKER_H

#include "micro/host.h"

typedef struct micro_subscribe_options {
  size_t struct_size;
  micro_str_t queue; /* non-empty: of the subscribers sharing this name, one gets each message */
} micro_subscribe_options_t;

/* Handles one delivered message (borrowed for the call). Returns NULL on success or an error,
 * which the broker frees and reports to the publisher. Never concurrently for one subscription. */
typedef micro_error_t* (*micro_broker_handler_fn)(void* ctx, micro_str_t topic,
                                                  const micro_message_t* message);

/* Implemented by a broker module. Functions may be called from any thread. */
typedef struct micro_broker_vtable {
  size_t struct_size;
  /* Frees the instance; every subscription must have been removed first. */
  void (*destroy)(void* self);
  void (*connect)(void* self, micro_done_fn done, void* ctx);
  void (*disconnect)(void* self, micro_done_fn done, void* ctx);
  /* Delivers to every subscriber of `topic` (one per queue group). */
  void (*publish)(void* self, micro_str_t topic, const micro_message_t* message,
                  micro_done_fn done, void* ctx);
  /* `handler` runs on a module thread until unsubscribe; `ctx` must live until then. */
  micro_error_t* (*subscribe)(void* self, micro_str_t topic,
                              const micro_subscribe_options_t* options,
                              micro_broker_handler_fn handler, void* ctx,
                              uint64_t* out_subscription_id);
  /* After it returns no delivery for it runs (unless called from its own handler). */
  void (*unsubscribe)(void* self, uint64_t subscription_id);
  /* Where subscribers are reached; owned by the instance. */
  micro_str_t (*address)(void* self);
} micro_broker_vtable_t;

typedef struct micro_broker {
  const micro_broker_vtable_t* vtable;
  void* self;
} micro_broker_t;

#endif /* MICRO_BROKER_H */
