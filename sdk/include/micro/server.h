/* Server: serves endpoint handlers and topic subscribers, registers itself in the registry. */
#ifndef MICRO_SERVER_H
#define MICRO_SERVER_H

#include "micro/broker.h"
#include "micro/client.h"

/* The server's side of one call: the handler answers through it exactly once. */
typedef struct micro_reply_vtable {
  size_t struct_size;
  /* Sends the response (or `error`, when non-NULL) and frees the reply. Any thread. */
  void (*send)(void* self, const micro_error_t* error, const micro_message_t* response);
  /* Nonzero once the caller has gone away (deadline passed, connection closed). Any thread, but
   * not concurrently with or after send (send frees the reply). */
  int32_t (*cancelled)(void* self);
} micro_reply_vtable_t;

typedef struct micro_reply {
  const micro_reply_vtable_t* vtable;
  void* self;
} micro_reply_t;

/* Serves one call: `request` is borrowed for the call; the handler owns `reply` until it sends. */
typedef void (*micro_call_handler_fn)(void* ctx, const micro_request_t* request,
                                      micro_reply_t reply);
/* Serves one stream: the handler owns `stream` (destroy it when done). */
typedef void (*micro_stream_handler_fn)(void* ctx, const micro_request_t* request,
                                        micro_stream_t stream);

enum {
  MICRO_ENDPOINT_STREAMING = 1u << 0, /* served by on_stream rather than on_call */
  MICRO_ENDPOINT_IDEMPOTENT = 1u << 1 /* clients may retry it after the request was sent */
};

/* One endpoint to serve. Everything is copied by `handle` except `ctx`, which must live until the
 * server's stop has completed (or, for a server never started, until it is destroyed): no
 * handler runs after that. */
typedef struct micro_endpoint_handler {
  size_t struct_size;
  micro_str_t name; /* "Greeter.Hello" */
  const micro_schema_t* request_schema;  /* NULL: raw bytes in any content type */
  const micro_schema_t* response_schema; /* NULL: raw bytes */
  micro_metadata_t metadata;             /* published in the registry's Endpoint */
  uint32_t flags;                        /* MICRO_ENDPOINT_* */
  micro_call_handler_fn on_call;
  micro_stream_handler_fn on_stream;
  void* ctx;
} micro_endpoint_handler_t;

/* Implemented by a server module. Functions may be called from any thread. */
typedef struct micro_server_vtable {
  size_t struct_size;
  void (*destroy)(void* self);
  /* Adds an endpoint; 409 when the name is taken. Before start only. */
  micro_error_t* (*handle)(void* self, const micro_endpoint_handler_t* handler);
  /* Subscribes `handler` to `topic` through the broker once started; `ctx` must live until stop
   * has completed. */
  micro_error_t* (*subscribe)(void* self, micro_str_t topic,
                              const micro_subscribe_options_t* options,
                              micro_broker_handler_fn handler, void* ctx);
  /* Listens, registers with the registry and keeps the registration fresh. */
  void (*start)(void* self, micro_done_fn done, void* ctx);
  /* Deregisters, stops accepting, drains in-flight calls (bounded), closes. */
  void (*stop)(void* self, micro_done_fn done, void* ctx);
  /* The bound address once started; owned by the server. */
  micro_str_t (*address)(void* self);
} micro_server_vtable_t;

typedef struct micro_server {
  const micro_server_vtable_t* vtable;
  void* self;
} micro_server_t;

#endif /* MICRO_SERVER_H */
