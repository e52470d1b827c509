/* Plain data shared by every kind: byte views, metadata, output sinks, and go-micro's
 * Service / Node / Endpoint / Message. All views are borrowed (see abi.h). */
#ifndef MICRO_TYPES_H
#define MICRO_TYPES_H

#include "micro/abi.h"

/* A borrowed run of bytes; not NUL-terminated. Fixed layout forever. */
typedef struct micro_str {
  const char* data;
  size_t size;
} micro_str_t;

/* A borrowed binary buffer. Fixed layout forever. */
typedef struct micro_bytes {
  const uint8_t* data;
  size_t size;
} micro_bytes_t;

/* One key/value pair (header, metadata entry). Fixed layout forever. */
typedef struct micro_kv {
  micro_str_t key;
  micro_str_t value;
} micro_kv_t;

/* A borrowed list of key/value pairs. Fixed layout forever. */
typedef struct micro_metadata {
  const micro_kv_t* items;
  size_t count;
} micro_metadata_t;

/* A growable output buffer owned by the caller; the callee appends its output to it, so output
 * needs no allocation the caller must free. Both functions are called only during the call the
 * sink was passed to, on the calling thread. */
typedef struct micro_sink {
  size_t struct_size;
  void* ctx;
  /* Appends `size` bytes. */
  void (*append)(void* ctx, const void* data, size_t size);
  /* Appends `size` uninitialised bytes and returns where to write them (valid until the next call
   * on this sink); NULL if the caller cannot grow the buffer. */
  uint8_t* (*reserve)(void* ctx, size_t size);
} micro_sink_t;

/* go-micro's Node: one running instance of a service. */
typedef struct micro_node {
  size_t struct_size;
  micro_str_t id;
  micro_str_t address; /* host:port */
  micro_metadata_t metadata;
} micro_node_t;

/* go-micro's Endpoint: one method a service offers, with its message type names. */
typedef struct micro_endpoint {
  size_t struct_size;
  micro_str_t name;     /* "Greeter.Hello" */
  micro_str_t request;  /* full message name of the request, e.g. "greeter.Request" */
  micro_str_t response; /* full message name of the response */
  micro_metadata_t metadata;
} micro_endpoint_t;

/* go-micro's Service: a name with its version, metadata, endpoints and nodes. */
typedef struct micro_service {
  size_t struct_size;
  micro_str_t name;
  micro_str_t version;
  micro_metadata_t metadata;
  const micro_endpoint_t* const* endpoints;
  size_t endpoint_count;
  const micro_node_t* const* nodes;
  size_t node_count;
} micro_service_t;

/* go-micro's transport Message: a header map and a body. */
typedef struct micro_message {
  size_t struct_size;
  micro_metadata_t header;
  micro_bytes_t body;
} micro_message_t;

#endif /* MICRO_TYPES_H */
