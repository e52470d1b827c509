/* The module descriptor: the one thing a module exports. The host calls the entry symbol, checks
 * the ABI version in the descriptor before anything else, then creates instances through the
 * plugins' factories, handing each the host API, its options and the instances it depends on. */
#ifndef MICRO_MODULE_H
#define MICRO_MODULE_H

#include "micro/codec.h"
#include "micro/handler.h"
#include "micro/registry.h"
#include "micro/selector.h"
#include "micro/service.h"

/* Types an option can have in TOML. Values are stable forever. */
typedef enum micro_option_type {
  MICRO_OPTION_STRING = 1,
  MICRO_OPTION_INT = 2,
  MICRO_OPTION_FLOAT = 3,
  MICRO_OPTION_BOOL = 4,
  MICRO_OPTION_STRING_LIST = 5, /* array of strings */
  MICRO_OPTION_STRING_MAP = 6   /* inline table of string values */
} micro_option_type_t;

/* One option a plugin accepts, declared statically: the host validates the TOML against these
 * (unknown key, wrong type, missing required: file:line errors) before creating anything. */
typedef struct micro_option_spec {
  size_t struct_size;
  const char* name;          /* key in the kind's TOML table */
  uint32_t type;             /* micro_option_type_t */
  uint32_t required;         /* nonzero: no default; the config must set it */
  const char* default_value; /* as TOML value text ("5", "\"x\"", "[]"); NULL: unset */
  const char* help;          /* one line, shown by `micro modules inspect` */
} micro_option_spec_t;

/* One validated option value, as the factory receives it (borrowed for the create call). Only the
 * member for `type` is meaningful. */
typedef struct micro_option_value {
  size_t struct_size;
  micro_str_t name;
  uint32_t type;
  micro_str_t string_value;
  int64_t int_value;
  double float_value;
  uint32_t bool_value;
  const micro_str_t* list;
  size_t list_count;
  micro_metadata_t map;
} micro_option_value_t;

/* The service being assembled, from the config's [service] table. */
typedef struct micro_service_info {
  size_t struct_size;
  micro_str_t name;
  micro_str_t version;
  micro_str_t address; /* "127.0.0.1:0" */
  micro_metadata_t metadata;
} micro_service_info_t;

/* Instances a plugin asked for in `required_kinds`; the others are zero. The host keeps each alive
 * until the instance given them has been destroyed. */
typedef struct micro_dependencies {
  size_t struct_size;
  micro_registry_t registry;
  micro_transport_t transport;
  micro_selector_t selector;
  micro_broker_t broker;
  const micro_codec_t* codecs; /* every configured codec, in config order */
  size_t codec_count;
  micro_client_t client;
  micro_server_t server;
  micro_service_instance_t service;
} micro_dependencies_t;

typedef struct micro_create_args {
  size_t struct_size;
  const micro_host_api_t* host; /* valid until the instance is destroyed */
  const micro_service_info_t* service;
  const micro_option_value_t* const* options; /* one per declared option that has a value */
  size_t option_count;
  const micro_dependencies_t* deps; /* the struct is borrowed; the handles in it live on */
} micro_create_args_t;

/* One implementation a module provides. Static data: lives as long as the library is loaded. */
typedef struct micro_plugin {
  size_t struct_size;
  uint32_t kind;           /* micro_kind_t */
  const char* name;        /* "registry-memory" */
  const char* description; /* one line */
  uint32_t required_kinds; /* MICRO_KIND_BIT() of each kind it needs */
  const micro_option_spec_t* const* options;
  size_t option_count;
  /* Makes an instance. On success returns NULL and sets *out_self, which the caller owns and frees
   * with vtable->destroy; on failure returns an error. Called on the host's thread. */
  micro_error_t* (*create)(const micro_create_args_t* args, void** out_self);
  /* The micro_<kind>_vtable_t for `kind`; static. */
  const void* vtable;
  /* MICRO_KIND_BIT() of kinds it uses when present: the host hands them over when the config
   * names a module for them or their default module is installed, and zero otherwise. */
  uint32_t optional_kinds;
} micro_plugin_t;

/* What the entry symbol returns. The first three members are fixed for every ABI major, so any
 * host can read them and refuse a module of another major before calling anything else. */
typedef struct micro_module_descriptor {
  uint32_t abi_major;
  uint32_t abi_minor;
  size_t struct_size;
  const char* name;        /* "registry-memory": matches the library file's name */
  const char* version;     /* the module's own version, "1.2.0" */
  const char* description; /* one line */
  const micro_plugin_t* const* plugins;
  size_t plugin_count;
} micro_module_descriptor_t;

/* The entry symbol's type. It must have no side effects: it returns static data. */
typedef const micro_module_descriptor_t* (*micro_module_entry_fn)(void);

#endif /* MICRO_MODULE_H */
