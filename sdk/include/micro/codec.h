/* Codec: turns a message between its wire form (chosen by Content-Type) and the canonical form
 * a handler reads (protobuf binary for typed handlers, the raw bytes for untyped ones). */
#ifndef MICRO_CODEC_H
#define MICRO_CODEC_H

#include "micro/host.h"

/* A message's schema as plain data, so a codec can translate without generated code. */
typedef struct micro_schema {
  size_t struct_size;
  micro_bytes_t file_descriptor_set; /* serialized google.protobuf.FileDescriptorSet */
  micro_str_t message_name;          /* full name in that set, e.g. "greeter.Request" */
} micro_schema_t;

/* Implemented by a codec module. Every function may be called from many threads at once. */
typedef struct micro_codec_vtable {
  size_t struct_size;
  /* Frees the instance. No other call may be running or start afterwards. */
  void (*destroy)(void* self);
  /* The content types this instance handles, e.g. "application/json". The array and strings are
   * owned by the instance and live as long as it does. */
  void (*content_types)(void* self, const micro_str_t** out_types, size_t* out_count);
  /* Wire bytes of `content_type` -> canonical bytes, appended to `out`. `schema` may be NULL for
   * untyped messages. On failure returns an error (400/415/413-style) naming the field or offset;
   * `out` may then hold partial output, which the caller discards. */
  micro_error_t* (*decode)(void* self, micro_str_t content_type, micro_bytes_t wire,
                           const micro_schema_t* schema, micro_sink_t* out);
  /* Canonical bytes -> wire bytes of `content_type`, appended to `out`. Same rules as decode. */
  micro_error_t* (*encode)(void* self, micro_str_t content_type, micro_bytes_t canonical,
                           const micro_schema_t* schema, micro_sink_t* out);
} micro_codec_vtable_t;

/* A codec instance: a handle, not owned unless the comment where it appears says so. */
typedef struct micro_codec {
  const micro_codec_vtable_t* vtable;
  void* self;
} micro_codec_t;

#endif /* MICRO_CODEC_H */
