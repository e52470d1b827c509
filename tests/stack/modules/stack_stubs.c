/* stack-stubs: one plugin of every kind, in plain C (proof that a module needs no C++). Each
 * instance logs through the host what it was given: "created <kind> with deps [<kinds>] and
 * options [<name>=<value> ...]" on create and "destroyed <kind>" on destroy, so a test can check
 * the order of creation, the dependencies each got and the options it received.
 *
 * Built twice: as stack-stubs (every kind) and, with STACK_STUBS_CODEC_ONLY, as stack-stub-codec
 * (only a codec), the module a config names for the wrong kind. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "micro/module.h"

#ifdef STACK_STUBS_CODEC_ONLY
#define MODULE_NAME "stack-stub-codec"
#else
#define MODULE_NAME "stack-stubs"
#endif

typedef struct stub {
  micro_kind_t kind;
  const micro_host_api_t* host; /* valid until this instance is destroyed */
} stub_t;

static const char* kind_text(micro_kind_t kind) { return micro_kind_name((uint32_t)kind); }

static void log_line(const micro_host_api_t* host, micro_log_level_t level, const char* text) {
  if (!MICRO_HAS_MEMBER(micro_host_api_t, host, log) || host->log == NULL) return;
  micro_str_t message = {text, strlen(text)};
  host->log(host->ctx, level, message);
}

/* An error the caller owns (one block: struct and text). */
static void release_error(micro_error_t* error) { free(error); }

static micro_error_t* new_error(int32_t code, const char* detail) {
  const size_t size = strlen(detail);
  micro_error_t* error = calloc(1, sizeof(micro_error_t) + size + 1);
  if (error == NULL) return NULL;
  memcpy((char*)(error + 1), detail, size);
  error->struct_size = sizeof(micro_error_t);
  error->release = release_error;
  error->code = code;
  error->id.data = MODULE_NAME;
  error->id.size = strlen(MODULE_NAME);
  error->detail.data = (const char*)(error + 1);
  error->detail.size = size;
  return error;
}

/* Appends printf-style text to `out` (of `capacity` bytes), truncating if it must. */
static void append(char* out, size_t capacity, const char* format, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char* out, size_t capacity, const char* format, ...) {
  const size_t used = strlen(out);
  va_list args;
  if (used + 1 >= capacity) return;
  va_start(args, format);
  vsnprintf(out + used, capacity - used, format, args);
  va_end(args);
}

/* ---- destroy, and the service's start/stop ----------------------------------------------------
 */

static void stub_destroy(void* self) {
  stub_t* stub = self;
  char line[64] = "";
  append(line, sizeof line, "destroyed %s", kind_text(stub->kind));
  log_line(stub->host, MICRO_LOG_INFO, line);
  free(stub);
}

#ifndef STACK_STUBS_CODEC_ONLY
static void service_start(void* self, micro_done_fn done, void* ctx) {
  log_line(((stub_t*)self)->host, MICRO_LOG_INFO, "started service");
  done(ctx, NULL);
}

static void service_stop(void* self, micro_done_fn done, void* ctx) {
  log_line(((stub_t*)self)->host, MICRO_LOG_INFO, "stopped service");
  done(ctx, NULL);
}
#endif

/* Only destroy (and the service's start/stop): the host needs nothing else. */
static const micro_codec_vtable_t codec_vtable = {sizeof codec_vtable, stub_destroy, NULL, NULL,
                                                  NULL};
#ifndef STACK_STUBS_CODEC_ONLY
static const micro_transport_vtable_t transport_vtable = {sizeof transport_vtable, stub_destroy,
                                                          NULL, NULL};
static const micro_registry_vtable_t registry_vtable = {
    sizeof registry_vtable, stub_destroy, NULL, NULL, NULL, NULL, NULL, NULL};
static const micro_selector_vtable_t selector_vtable = {sizeof selector_vtable, stub_destroy, NULL,
                                                        NULL, NULL};
static const micro_broker_vtable_t broker_vtable = {
    sizeof broker_vtable, stub_destroy, NULL, NULL, NULL, NULL, NULL, NULL};
static const micro_client_vtable_t client_vtable = {sizeof client_vtable, stub_destroy, NULL, NULL,
                                                    NULL};
static const micro_server_vtable_t server_vtable = {
    sizeof server_vtable, stub_destroy, NULL, NULL, NULL, NULL, NULL};
static const micro_service_vtable_t service_vtable = {sizeof service_vtable, stub_destroy,
                                                      service_start, service_stop};
static const micro_handler_vtable_t handler_vtable = {sizeof handler_vtable, stub_destroy};
#endif

/* ---- the dependencies an instance got ----------------------------------------------------------
 */

/* Checks that a handle given as the dependency of `kind` is one of this module's instances of
 * that kind, and notes it in `out`. Returns 0 (and describes the mismatch in `problem`) if not. */
static int note_dep(micro_kind_t kind, const void* vtable, void* self, char* out, size_t out_size,
                    char* problem, size_t problem_size) {
  if (vtable == NULL && self == NULL) return 1; /* not given */
  const stub_t* stub = self;
  if (vtable == NULL || stub == NULL || stub->kind != kind) {
    append(problem, problem_size, "the %s handed over is %s; ", kind_text(kind),
           stub == NULL ? "half empty" : kind_text(stub->kind));
    return 0;
  }
  append(out, out_size, "%s%s", out[0] == '\0' ? "" : " ", kind_text(kind));
  return 1;
}

static void note_deps(const micro_dependencies_t* deps, char* out, size_t out_size, char* problem,
                      size_t problem_size) {
  size_t i;
  if (deps == NULL) return;
  /* In micro_kind_t order, so the text is predictable. */
  if (MICRO_HAS_MEMBER(micro_dependencies_t, deps, codec_count) && deps->codec_count > 0) {
    int ok = deps->codecs != NULL;
    for (i = 0; ok && i < deps->codec_count; ++i)
      ok = deps->codecs[i].self != NULL &&
           ((const stub_t*)deps->codecs[i].self)->kind == MICRO_KIND_CODEC;
    if (ok)
      append(out, out_size, "%scodec*%zu", out[0] == '\0' ? "" : " ", deps->codec_count);
    else
      append(problem, problem_size, "a codec handed over is not a codec; ");
  }
  note_dep(MICRO_KIND_TRANSPORT, deps->transport.vtable, deps->transport.self, out, out_size,
           problem, problem_size);
  note_dep(MICRO_KIND_REGISTRY, deps->registry.vtable, deps->registry.self, out, out_size, problem,
           problem_size);
  note_dep(MICRO_KIND_SELECTOR, deps->selector.vtable, deps->selector.self, out, out_size, problem,
           problem_size);
  note_dep(MICRO_KIND_BROKER, deps->broker.vtable, deps->broker.self, out, out_size, problem,
           problem_size);
  note_dep(MICRO_KIND_CLIENT, deps->client.vtable, deps->client.self, out, out_size, problem,
           problem_size);
  note_dep(MICRO_KIND_SERVER, deps->server.vtable, deps->server.self, out, out_size, problem,
           problem_size);
  note_dep(MICRO_KIND_SERVICE, deps->service.vtable, deps->service.self, out, out_size, problem,
           problem_size);
}

/* ---- options -----------------------------------------------------------------------------------
 */

static void note_options(const micro_create_args_t* args, char* out, size_t out_size, int* fail) {
  size_t i, j;
  for (i = 0; i < args->option_count; ++i) {
    const micro_option_value_t* v = args->options[i];
    if (v == NULL) continue;
    append(out, out_size, "%s%.*s=", out[0] == '\0' ? "" : " ", (int)v->name.size, v->name.data);
    switch (v->type) {
      case MICRO_OPTION_STRING:
        append(out, out_size, "%.*s", (int)v->string_value.size, v->string_value.data);
        break;
      case MICRO_OPTION_INT:
        append(out, out_size, "%lld", (long long)v->int_value);
        break;
      case MICRO_OPTION_FLOAT:
        append(out, out_size, "%g", v->float_value);
        break;
      case MICRO_OPTION_BOOL:
        append(out, out_size, "%s", v->bool_value ? "true" : "false");
        if (v->name.size == 4 && memcmp(v->name.data, "fail", 4) == 0 && v->bool_value) *fail = 1;
        break;
      case MICRO_OPTION_STRING_LIST:
        for (j = 0; j < v->list_count; ++j)
          append(out, out_size, "%s%.*s", j == 0 ? "" : ",", (int)v->list[j].size, v->list[j].data);
        break;
      case MICRO_OPTION_STRING_MAP:
        for (j = 0; j < v->map.count; ++j)
          append(out, out_size, "%s%.*s:%.*s", j == 0 ? "" : ",", (int)v->map.items[j].key.size,
                 v->map.items[j].key.data, (int)v->map.items[j].value.size,
                 v->map.items[j].value.data);
        break;
      default:
        append(out, out_size, "?");
        break;
    }
  }
}

/* ---- the factory
 * --------------------------------------------------------------------------------- */

static micro_error_t* stub_create(micro_kind_t kind, const micro_create_args_t* args,
                                  void** out_self) {
  char deps[256] = "", options[1024] = "", problem[512] = "", line[1536] = "";
  int fail = 0;
  if (args == NULL || out_self == NULL || !MICRO_HAS_MEMBER(micro_create_args_t, args, deps))
    return new_error(MICRO_CODE_BAD_REQUEST, "create: arguments missing");
  note_deps(args->deps, deps, sizeof deps, problem, sizeof problem);
  note_options(args, options, sizeof options, &fail);
  if (problem[0] != '\0') {
    append(line, sizeof line, "%s got wrong dependencies: %s", kind_text(kind), problem);
    return new_error(MICRO_CODE_INTERNAL, line);
  }
  if (fail) {
    append(line, sizeof line, "%s told to fail by its options", kind_text(kind));
    return new_error(MICRO_CODE_UNAVAILABLE, line);
  }
  stub_t* stub = calloc(1, sizeof *stub);
  if (stub == NULL) return new_error(MICRO_CODE_INTERNAL, "out of memory");
  stub->kind = kind;
  stub->host = args->host;
  append(line, sizeof line, "created %s with deps [%s] and options [%s]", kind_text(kind), deps,
         options);
  log_line(stub->host, MICRO_LOG_INFO, line);
  *out_self = stub;
  return NULL;
}

#define STUB_FACTORY(kind_id, fn)                                              \
  static micro_error_t* fn(const micro_create_args_t* args, void** out_self) { \
    return stub_create(kind_id, args, out_self);                               \
  }

/* ---- options each kind declares
 * ------------------------------------------------------------------ */

static const micro_option_spec_t codec_level = {
    sizeof(micro_option_spec_t), "level", MICRO_OPTION_INT, 0, "1", "an int with a default"};
static const micro_option_spec_t* const codec_options[] = {&codec_level};

#define PLUGIN(var, kind_id, name, required, options, count, factory, vtable) \
  static const micro_plugin_t var = {sizeof(micro_plugin_t),                  \
                                     kind_id,                                 \
                                     name,                                    \
                                     "stub " name,                            \
                                     required,                                \
                                     options,                                 \
                                     count,                                   \
                                     factory,                                 \
                                     vtable,                                  \
                                     0}

STUB_FACTORY(MICRO_KIND_CODEC, create_codec)
PLUGIN(codec_plugin, MICRO_KIND_CODEC, "stub-codec", 0, codec_options, 1, create_codec,
       &codec_vtable);

#ifdef STACK_STUBS_CODEC_ONLY
static const micro_plugin_t* const plugins[] = {&codec_plugin};
#else
static const micro_option_spec_t registry_address = {sizeof(micro_option_spec_t),
                                                     "address",
                                                     MICRO_OPTION_STRING,
                                                     1,
                                                     NULL,
                                                     "where the registry is, e.g. \"mem://stubs\""};
static const micro_option_spec_t* const registry_options[] = {&registry_address};

static const micro_option_spec_t selector_retries = {
    sizeof(micro_option_spec_t), "retries", MICRO_OPTION_INT, 0, "3", "an int with a default"};
static const micro_option_spec_t selector_strategy = {
    sizeof(micro_option_spec_t), "strategy", MICRO_OPTION_STRING, 0, "\"random\"",
    "a string with a default"};
static const micro_option_spec_t* const selector_options[] = {&selector_retries,
                                                              &selector_strategy};

/* Twenty default strings: more than the host's option storage reserves room for up front. */
static const micro_option_spec_t handler_tags = {
    sizeof(micro_option_spec_t),
    "tags",
    MICRO_OPTION_STRING_LIST,
    0,
    "[\"t01\",\"t02\",\"t03\",\"t04\",\"t05\",\"t06\",\"t07\",\"t08\",\"t09\",\"t10\","
    "\"t11\",\"t12\",\"t13\",\"t14\",\"t15\",\"t16\",\"t17\",\"t18\",\"t19\",\"t20\"]",
    "a list with a long default"};
static const micro_option_spec_t handler_labels = {
    sizeof(micro_option_spec_t), "labels", MICRO_OPTION_STRING_MAP, 0, NULL, "a table of strings"};
static const micro_option_spec_t* const handler_options[] = {&handler_tags, &handler_labels};

static const micro_option_spec_t fail_option = {
    sizeof(micro_option_spec_t),
    "fail",
    MICRO_OPTION_BOOL,
    0,
    "false",
    "fail the factory, to test that a failed build destroys what it made"};
static const micro_option_spec_t* const fail_only[] = {&fail_option};

enum {
  SELECTOR_NEEDS = MICRO_KIND_BIT(MICRO_KIND_REGISTRY),
  CLIENT_NEEDS = MICRO_KIND_BIT(MICRO_KIND_SELECTOR) | MICRO_KIND_BIT(MICRO_KIND_TRANSPORT) |
                 MICRO_KIND_BIT(MICRO_KIND_CODEC) | MICRO_KIND_BIT(MICRO_KIND_BROKER),
  SERVER_NEEDS = MICRO_KIND_BIT(MICRO_KIND_TRANSPORT) | MICRO_KIND_BIT(MICRO_KIND_REGISTRY) |
                 MICRO_KIND_BIT(MICRO_KIND_CODEC) | MICRO_KIND_BIT(MICRO_KIND_BROKER),
  SERVICE_NEEDS = MICRO_KIND_BIT(MICRO_KIND_CLIENT) | MICRO_KIND_BIT(MICRO_KIND_SERVER),
  HANDLER_NEEDS = MICRO_KIND_BIT(MICRO_KIND_SERVER) | MICRO_KIND_BIT(MICRO_KIND_CLIENT)
};

STUB_FACTORY(MICRO_KIND_TRANSPORT, create_transport)
STUB_FACTORY(MICRO_KIND_REGISTRY, create_registry)
STUB_FACTORY(MICRO_KIND_SELECTOR, create_selector)
STUB_FACTORY(MICRO_KIND_BROKER, create_broker)
STUB_FACTORY(MICRO_KIND_CLIENT, create_client)
STUB_FACTORY(MICRO_KIND_SERVER, create_server)
STUB_FACTORY(MICRO_KIND_SERVICE, create_service)
STUB_FACTORY(MICRO_KIND_HANDLER, create_handler)

PLUGIN(transport_plugin, MICRO_KIND_TRANSPORT, "stub-transport", 0, NULL, 0, create_transport,
       &transport_vtable);
PLUGIN(registry_plugin, MICRO_KIND_REGISTRY, "stub-registry", 0, registry_options, 1,
       create_registry, &registry_vtable);
PLUGIN(selector_plugin, MICRO_KIND_SELECTOR, "stub-selector", SELECTOR_NEEDS, selector_options, 2,
       create_selector, &selector_vtable);
PLUGIN(broker_plugin, MICRO_KIND_BROKER, "stub-broker", 0, NULL, 0, create_broker, &broker_vtable);
PLUGIN(client_plugin, MICRO_KIND_CLIENT, "stub-client", CLIENT_NEEDS, NULL, 0, create_client,
       &client_vtable);
PLUGIN(server_plugin, MICRO_KIND_SERVER, "stub-server", SERVER_NEEDS, fail_only, 1, create_server,
       &server_vtable);
PLUGIN(service_plugin, MICRO_KIND_SERVICE, "stub-service", SERVICE_NEEDS, NULL, 0, create_service,
       &service_vtable);
PLUGIN(handler_plugin, MICRO_KIND_HANDLER, "stub-handler", HANDLER_NEEDS, handler_options, 2,
       create_handler, &handler_vtable);

static const micro_plugin_t* const plugins[] = {
    &codec_plugin,  &transport_plugin, &registry_plugin, &selector_plugin, &broker_plugin,
    &client_plugin, &server_plugin,    &service_plugin,  &handler_plugin};
#endif

static const micro_module_descriptor_t descriptor = {MICRO_ABI_VERSION_MAJOR,
                                                     MICRO_ABI_VERSION_MINOR,
                                                     sizeof(micro_module_descriptor_t),
                                                     MODULE_NAME,
                                                     "1.0.0",
                                                     "Stub plugins written in C",
                                                     plugins,
                                                     sizeof plugins / sizeof plugins[0]};

MICRO_EXTERN_C MICRO_EXPORT const micro_module_descriptor_t* micro_module_entry(void);
const micro_module_descriptor_t* micro_module_entry(void) { return &descriptor; }
