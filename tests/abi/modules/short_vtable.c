/* short-vtable: an in-memory registry written in plain C against a registry vtable one member
 * shorter than this SDK's (no `unwatch`), as a module built against an older minor would be. The
 * host and micro::Registry must read only the members it declares: register, get, list and
 * deregister work; watch is reported as not implemented (without unwatch no watch could be
 * stopped). Keeps each service's name, version and nodes (id, address); drops metadata. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "micro/module.h"

/* micro_registry_vtable_t as an older SDK declared it: without its last member. */
typedef struct short_registry_vtable {
  size_t struct_size;
  void (*destroy)(void* self);
  void (*register_service)(void* self, const micro_service_t* service,
                           const micro_register_options_t* options, micro_done_fn done, void* ctx);
  void (*deregister_service)(void* self, const micro_service_t* service, micro_done_fn done,
                             void* ctx);
  void (*get_service)(void* self, micro_str_t name, micro_services_fn on_result, void* ctx);
  void (*list_services)(void* self, micro_services_fn on_result, void* ctx);
  micro_error_t* (*watch)(void* self, micro_str_t service, micro_registry_event_fn on_event,
                          void* ctx, uint64_t* out_watch_id);
} short_registry_vtable_t;

_Static_assert(sizeof(short_registry_vtable_t) == offsetof(micro_registry_vtable_t, unwatch),
               "the short vtable must be exactly the SDK's minus its last member");

/* ---- owned strings and errors --------------------------------------------------------------- */

typedef struct owned_str {
  char* data;
  size_t size;
} owned_str_t;

static int copy_str(owned_str_t* out, micro_str_t from) {
  out->size = from.size;
  out->data = malloc(from.size + 1);
  if (out->data == NULL) return 0;
  if (from.size > 0) memcpy(out->data, from.data, from.size);
  out->data[from.size] = '\0';
  return 1;
}

static micro_str_t view(owned_str_t s) {
  micro_str_t out = {s.data, s.size};
  return out;
}

static int same(owned_str_t a, micro_str_t b) {
  return a.size == b.size && (b.size == 0 || memcmp(a.data, b.data, b.size) == 0);
}

/* An error the caller owns: one block holding the struct and its detail text. */
static void release_error(micro_error_t* error) { free(error); }

static micro_error_t* owned_error(int32_t code, const char* status, const char* detail) {
  const size_t size = strlen(detail);
  micro_error_t* error = malloc(sizeof(micro_error_t) + size + 1);
  if (error == NULL) return NULL; /* nothing better to do without memory */
  char* text = (char*)(error + 1);
  memcpy(text, detail, size + 1);
  error->struct_size = sizeof(micro_error_t);
  error->release = release_error;
  error->code = code;
  error->id.data = "short-vtable";
  error->id.size = strlen("short-vtable");
  error->detail.data = text;
  error->detail.size = size;
  error->status.data = status;
  error->status.size = strlen(status);
  return error;
}

/* A borrowed error for a completion: lives on the caller's stack for the callback's duration. */
static micro_error_t borrowed_error(int32_t code, const char* status, const char* detail) {
  micro_error_t error;
  memset(&error, 0, sizeof error);
  error.struct_size = sizeof(micro_error_t);
  error.code = code;
  error.id.data = "short-vtable";
  error.id.size = strlen("short-vtable");
  error.detail.data = detail;
  error.detail.size = strlen(detail);
  error.status.data = status;
  error.status.size = strlen(status);
  return error;
}

/* ---- the registry -----------------------------------------------------------------------------
 */

typedef struct stored_service {
  owned_str_t name;
  owned_str_t version;
  owned_str_t* node_ids;
  owned_str_t* node_addresses;
  size_t node_count;
  struct stored_service* next;
} stored_service_t;

typedef struct short_registry {
  pthread_mutex_t mutex; /* guards `services` */
  stored_service_t* services;
} short_registry_t;

static void free_service(stored_service_t* s) {
  size_t i;
  for (i = 0; i < s->node_count; ++i) {
    free(s->node_ids[i].data);
    free(s->node_addresses[i].data);
  }
  free(s->node_ids);
  free(s->node_addresses);
  free(s->name.data);
  free(s->version.data);
  free(s);
}

static void free_list(stored_service_t* s) {
  while (s != NULL) {
    stored_service_t* next = s->next;
    free_service(s);
    s = next;
  }
}

/* Appends a node; returns 0 when out of memory. */
static int add_node(stored_service_t* s, micro_str_t id, micro_str_t address) {
  owned_str_t* ids = realloc(s->node_ids, (s->node_count + 1) * sizeof *ids);
  if (ids == NULL) return 0;
  s->node_ids = ids;
  owned_str_t* addresses = realloc(s->node_addresses, (s->node_count + 1) * sizeof *addresses);
  if (addresses == NULL) return 0;
  s->node_addresses = addresses;
  if (!copy_str(&ids[s->node_count], id)) return 0;
  if (!copy_str(&addresses[s->node_count], address)) {
    free(ids[s->node_count].data);
    return 0;
  }
  s->node_count++;
  return 1;
}

static stored_service_t* new_service(micro_str_t name, micro_str_t version) {
  stored_service_t* s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  if (!copy_str(&s->name, name) || !copy_str(&s->version, version)) {
    free_service(s);
    return NULL;
  }
  return s;
}

/* A deep copy of `s` (without `next`), so results can be reported outside the lock. */
static stored_service_t* clone_service(const stored_service_t* s) {
  size_t i;
  stored_service_t* out = new_service(view(s->name), view(s->version));
  if (out == NULL) return NULL;
  for (i = 0; i < s->node_count; ++i) {
    if (!add_node(out, view(s->node_ids[i]), view(s->node_addresses[i]))) {
      free_service(out);
      return NULL;
    }
  }
  return out;
}

static void short_registry_destroy(void* self) {
  short_registry_t* r = self;
  free_list(r->services);
  pthread_mutex_destroy(&r->mutex);
  free(r);
}

static void short_registry_register(void* self, const micro_service_t* service,
                                    const micro_register_options_t* options, micro_done_fn done,
                                    void* ctx) {
  short_registry_t* r = self;
  stored_service_t* s;
  size_t i, j;
  int ok = 1;
  (void)options; /* no TTL in this registry */
  if (service == NULL || service->name.size == 0) {
    micro_error_t error = borrowed_error(MICRO_CODE_BAD_REQUEST, "Bad Request",
                                         "short-vtable: the service has no name");
    done(ctx, &error);
    return;
  }
  pthread_mutex_lock(&r->mutex);
  for (s = r->services; s != NULL; s = s->next)
    if (same(s->name, service->name) && same(s->version, service->version)) break;
  if (s == NULL) {
    s = new_service(service->name, service->version);
    if (s != NULL) {
      s->next = r->services;
      r->services = s;
    }
  }
  ok = s != NULL;
  for (i = 0; ok && i < service->node_count; ++i) {
    const micro_node_t* node = service->nodes[i];
    if (node == NULL) continue;
    for (j = 0; j < s->node_count; ++j) {
      if (same(s->node_ids[j], node->id)) {
        owned_str_t address;
        ok = copy_str(&address, node->address);
        if (ok) {
          free(s->node_addresses[j].data);
          s->node_addresses[j] = address;
        }
        break;
      }
    }
    if (ok && j == s->node_count) ok = add_node(s, node->id, node->address);
  }
  pthread_mutex_unlock(&r->mutex);
  if (ok) {
    done(ctx, NULL);
  } else {
    micro_error_t error =
        borrowed_error(MICRO_CODE_INTERNAL, "Internal Server Error", "short-vtable: out of memory");
    done(ctx, &error);
  }
}

static void short_registry_deregister(void* self, const micro_service_t* service,
                                      micro_done_fn done, void* ctx) {
  short_registry_t* r = self;
  stored_service_t** link;
  size_t i, j;
  pthread_mutex_lock(&r->mutex);
  for (link = &r->services; *link != NULL; link = &(*link)->next)
    if (same((*link)->name, service->name) && same((*link)->version, service->version)) break;
  if (*link != NULL) {
    stored_service_t* s = *link;
    for (i = 0; i < service->node_count; ++i) {
      if (service->nodes[i] == NULL) continue;
      for (j = 0; j < s->node_count; ++j) {
        if (!same(s->node_ids[j], service->nodes[i]->id)) continue;
        free(s->node_ids[j].data);
        free(s->node_addresses[j].data);
        s->node_ids[j] = s->node_ids[s->node_count - 1];
        s->node_addresses[j] = s->node_addresses[s->node_count - 1];
        s->node_count--;
        break;
      }
    }
    if (s->node_count == 0) {
      *link = s->next;
      free_service(s);
    }
  }
  pthread_mutex_unlock(&r->mutex);
  done(ctx, NULL);
}

/* Reports `found` (a list of clones) through `on_result` as C views, then frees it. */
static void report(stored_service_t* found, micro_services_fn on_result, void* ctx) {
  size_t count = 0, nodes = 0, i, k = 0, n = 0;
  stored_service_t* s;
  for (s = found; s != NULL; s = s->next) {
    count++;
    nodes += s->node_count;
  }
  micro_service_t* services = calloc(count + 1, sizeof *services);
  const micro_service_t** service_ptrs = calloc(count + 1, sizeof *service_ptrs);
  micro_node_t* node_structs = calloc(nodes + 1, sizeof *node_structs);
  const micro_node_t** node_ptrs = calloc(nodes + 1, sizeof *node_ptrs);
  if (services == NULL || service_ptrs == NULL || node_structs == NULL || node_ptrs == NULL) {
    micro_error_t error =
        borrowed_error(MICRO_CODE_INTERNAL, "Internal Server Error", "short-vtable: out of memory");
    on_result(ctx, &error, NULL, 0);
  } else {
    for (s = found; s != NULL; s = s->next, ++k) {
      services[k].struct_size = sizeof(micro_service_t);
      services[k].name = view(s->name);
      services[k].version = view(s->version);
      services[k].nodes = node_ptrs + n;
      services[k].node_count = s->node_count;
      for (i = 0; i < s->node_count; ++i, ++n) {
        node_structs[n].struct_size = sizeof(micro_node_t);
        node_structs[n].id = view(s->node_ids[i]);
        node_structs[n].address = view(s->node_addresses[i]);
        node_ptrs[n] = &node_structs[n];
      }
      service_ptrs[k] = &services[k];
    }
    on_result(ctx, NULL, (const micro_service_t* const*)service_ptrs, count);
  }
  free(services);
  free(service_ptrs);
  free(node_structs);
  free(node_ptrs);
  free_list(found);
}

/* Clones the services whose name is `name` (every service when `all`), under the lock. */
static stored_service_t* snapshot(short_registry_t* r, micro_str_t name, int all, int* failed) {
  stored_service_t *found = NULL, *s;
  *failed = 0;
  pthread_mutex_lock(&r->mutex);
  for (s = r->services; s != NULL && !*failed; s = s->next) {
    if (!all && !same(s->name, name)) continue;
    stored_service_t* copy = clone_service(s);
    if (copy == NULL) {
      *failed = 1;
      break;
    }
    copy->next = found;
    found = copy;
  }
  pthread_mutex_unlock(&r->mutex);
  if (*failed) {
    free_list(found);
    found = NULL;
  }
  return found;
}

static void short_registry_get(void* self, micro_str_t name, micro_services_fn on_result,
                               void* ctx) {
  int failed;
  stored_service_t* found = snapshot(self, name, 0, &failed);
  if (found == NULL) {
    char detail[256];
    snprintf(detail, sizeof detail, "service '%.*s' is not registered", (int)name.size,
             name.data == NULL ? "" : name.data);
    micro_error_t error =
        failed ? borrowed_error(MICRO_CODE_INTERNAL, "Internal Server Error", "out of memory")
               : borrowed_error(MICRO_CODE_NOT_FOUND, "Not Found", detail);
    on_result(ctx, &error, NULL, 0);
    return;
  }
  report(found, on_result, ctx);
}

static void short_registry_list(void* self, micro_services_fn on_result, void* ctx) {
  int failed;
  micro_str_t any = {NULL, 0};
  stored_service_t* found = snapshot(self, any, 1, &failed);
  if (failed) {
    micro_error_t error =
        borrowed_error(MICRO_CODE_INTERNAL, "Internal Server Error", "out of memory");
    on_result(ctx, &error, NULL, 0);
    return;
  }
  report(found, on_result, ctx);
}

/* A caller that knows the vtable has no unwatch never gets here. */
static micro_error_t* short_registry_watch(void* self, micro_str_t service,
                                           micro_registry_event_fn on_event, void* ctx,
                                           uint64_t* out_watch_id) {
  (void)self;
  (void)service;
  (void)on_event;
  (void)ctx;
  (void)out_watch_id;
  return owned_error(MICRO_CODE_INTERNAL, "Internal Server Error",
                     "short-vtable: watch was called although this vtable has no unwatch");
}

static const short_registry_vtable_t short_vtable = {sizeof(short_registry_vtable_t),
                                                     short_registry_destroy,
                                                     short_registry_register,
                                                     short_registry_deregister,
                                                     short_registry_get,
                                                     short_registry_list,
                                                     short_registry_watch};

static micro_error_t* short_registry_create(const micro_create_args_t* args, void** out_self) {
  (void)args;
  short_registry_t* r = calloc(1, sizeof *r);
  if (r == NULL) return owned_error(MICRO_CODE_INTERNAL, "Internal Server Error", "out of memory");
  pthread_mutex_init(&r->mutex, NULL);
  *out_self = r;
  return NULL;
}

/* Built as if before optional_kinds existed: the host must read the plugin up to this size. */
static const micro_plugin_t registry_plugin = {offsetof(micro_plugin_t, optional_kinds),
                                               MICRO_KIND_REGISTRY,
                                               "short-vtable",
                                               "In-memory registry with a pre-unwatch vtable",
                                               0,
                                               NULL,
                                               0,
                                               short_registry_create,
                                               &short_vtable,
                                               0 /* beyond struct_size: never read */};

static const micro_plugin_t* const plugins[] = {&registry_plugin};

static const micro_module_descriptor_t descriptor = {
    MICRO_ABI_VERSION_MAJOR,
    MICRO_ABI_VERSION_MINOR,
    sizeof(micro_module_descriptor_t),
    "short-vtable",
    "1.0.0",
    "A C registry built against a registry vtable without unwatch",
    plugins,
    1};

MICRO_EXTERN_C MICRO_EXPORT const micro_module_descriptor_t* micro_module_entry(void);
const micro_module_descriptor_t* micro_module_entry(void) { return &descriptor; }
