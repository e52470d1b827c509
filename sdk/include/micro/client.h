/* Client: calls (request/response with deadline, retries, metadata), streams, publish. */
#ifndef MICRO_CLIENT_H
#define MICRO_CLIENT_H

#include "micro/codec.h"
#include "micro/transport.h"

/* One RPC request; everything is borrowed for the call that receives it. */
typedef struct micro_request {
  size_t struct_size;
  micro_str_t service;      /* "greeter" */
  micro_str_t endpoint;     /* "Greeter.Hello" */
  micro_str_t content_type; /* of `body`; empty = the client's default */
  micro_str_t accept;       /* content type wanted for the response; empty = content_type */
  micro_metadata_t metadata;
  micro_bytes_t body;
  const micro_schema_t* request_schema;  /* NULL for untyped calls */
  const micro_schema_t* response_schema; /* NULL for untyped calls */
} micro_request_t;

typedef struct micro_call_options {
  size_t struct_size;
  uint64_t timeout_ms;  /* deadline for the whole call, retries included; 0 = client default */
  uint32_t retries;     /* further nodes to try on a retryable error; UINT32_MAX = default */
  uint32_t idempotent;  /* nonzero: safe to retry even after the request was sent */
  micro_str_t address;  /* non-empty: call this host:port directly, skipping the selector */
} micro_call_options_t;

/* Receives the response (borrowed for the call; NULL when `error` is set). */
typedef void (*micro_response_fn)(void* ctx, const micro_error_t* error,
                                  const micro_message_t* response);

/* A bidirectional stream of messages, on the client or the server side. */
typedef struct micro_stream_vtable {
  size_t struct_size;
  /* Cancels if still open and frees the stream; no callback runs after it returns. Must not be
   * called from this stream's own callbacks. */
  void (*destroy)(void* self);
  /* Sends one message; one send at a time. */
  void (*send)(void* self, const micro_message_t* message, micro_done_fn done, void* ctx);
  /* Receives the next message. At the peer's end of stream it completes with both `error` and
   * `message` NULL. One recv at a time. */
  void (*recv)(void* self, micro_message_fn on_message, void* ctx);
  /* Half-close: no more sends from this side. */
  void (*close_send)(void* self, micro_done_fn done, void* ctx);
  /* Aborts the stream; pending operations complete with 499. Any thread. */
  void (*cancel)(void* self);
} micro_stream_vtable_t;

typedef struct micro_stream {
  const micro_stream_vtable_t* vtable;
  void* self;
} micro_stream_t;

/* Receives an opened stream; on success the callee owns it (destroy it). */
typedef void (*micro_stream_fn)(void* ctx, const micro_error_t* error, micro_stream_t stream);

/* Implemented by a client module. Functions may be called from any thread. */
typedef struct micro_client_vtable {
  size_t struct_size;
  void (*destroy)(void* self);
  /* Request/response. Errors reach `on_response` as {id, code, detail, status} whether they came
   * from the handler, the deadline (408) or the network (500/503). */
  void (*call)(void* self, const micro_request_t* request, const micro_call_options_t* options,
               micro_response_fn on_response, void* ctx);
  /* Opens a bidirectional stream to the endpoint; `request->body` is ignored. */
  void (*stream)(void* self, const micro_request_t* request, const micro_call_options_t* options,
                 micro_stream_fn on_stream, void* ctx);
  /* Publishes `message` on `topic` through the broker. */
  void (*publish)(void* self, micro_str_t topic, const micro_message_t* message,
                  micro_done_fn done, void* ctx);
} micro_client_vtable_t;

typedef struct micro_client {
  const micro_client_vtable_t* vtable;
  void* self;
} micro_client_t;

#endif /* MICRO_CLIENT_H */
