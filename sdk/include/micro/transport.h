/* Transport: moves framed messages (header map + body) between nodes. go-micro's
 * Transport / Client / Listener / Socket, asynchronous. */
#ifndef MICRO_TRANSPORT_H
#define MICRO_TRANSPORT_H

#include "micro/host.h"

/* Receives one message; `message` is borrowed for the call, NULL when `error` is set
 * (499 after close, 408 on timeout, 500/503 on a network failure). */
typedef void (*micro_message_fn)(void* ctx, const micro_error_t* error,
                                 const micro_message_t* message);

/* Implemented by a transport module: one connection (or one logical stream on it). */
typedef struct micro_socket_vtable {
  size_t struct_size;
  /* Closes if still open and frees the socket. Pending operations complete (with 499) before it
   * returns; no callback runs after it returns. Must not be called from this socket's callbacks. */
  void (*destroy)(void* self);
  /* Sends one message; `done` once it is written (or failed). One send at a time. */
  void (*send)(void* self, const micro_message_t* message, micro_done_fn done, void* ctx);
  /* Receives the next message. At the peer's end of stream (its close_send) it completes with
   * both `error` and `message` NULL. One recv at a time. */
  void (*recv)(void* self, micro_message_fn on_message, void* ctx);
  /* Half-close: tells the peer no more messages follow; receiving goes on. */
  void (*close_send)(void* self, micro_done_fn done, void* ctx);
  /* Cancels pending operations (they complete with 499) and closes. Any thread. */
  void (*close)(void* self);
  /* Addresses as host:port; owned by the socket, valid until destroy. */
  micro_str_t (*local_address)(void* self);
  micro_str_t (*remote_address)(void* self);
} micro_socket_vtable_t;

typedef struct micro_socket {
  const micro_socket_vtable_t* vtable;
  void* self;
} micro_socket_t;

/* Receives a dialed or accepted socket. On success the callee owns `socket` (destroy it). */
typedef void (*micro_socket_fn)(void* ctx, const micro_error_t* error, micro_socket_t socket);

typedef struct micro_listener_vtable {
  size_t struct_size;
  /* Stops accepting and frees the listener; no on_accept runs after it returns. */
  void (*destroy)(void* self);
  /* The bound address (port 0 resolved); owned by the listener. */
  micro_str_t (*address)(void* self);
} micro_listener_vtable_t;

/* A listening endpoint; owned by whoever called listen. */
typedef struct micro_listener {
  const micro_listener_vtable_t* vtable;
  void* self;
} micro_listener_t;

typedef struct micro_dial_options {
  size_t struct_size;
  uint64_t timeout_ms; /* 0 = the module's default */
  uint32_t stream;     /* nonzero: a long-lived bidirectional stream rather than request/reply */
} micro_dial_options_t;

/* Implemented by a transport module. Functions may be called from any thread. */
typedef struct micro_transport_vtable {
  size_t struct_size;
  /* Frees the instance; every socket and listener it made must be gone first. */
  void (*destroy)(void* self);
  /* Connects to `address` (host:port); `on_dialed` gets the socket or the error. */
  void (*dial)(void* self, micro_str_t address, const micro_dial_options_t* options,
               micro_socket_fn on_dialed, void* ctx);
  /* Listens on `address` ("host:0" picks a port). Each accepted socket goes to `on_accept`,
   * one at a time, on a module thread; `ctx` must live until the listener is destroyed. */
  micro_error_t* (*listen)(void* self, micro_str_t address, micro_socket_fn on_accept, void* ctx,
                           micro_listener_t* out_listener);
} micro_transport_vtable_t;

typedef struct micro_transport {
  const micro_transport_vtable_t* vtable;
  void* self;
} micro_transport_t;

#endif /* MICRO_TRANSPORT_H */
