/* micro-cpp ABI: version, export macro and the kinds of module.
 *
 * The boundary between the host and a module is C only. Conventions that hold for every
 * header in this folder (each function restates what differs):
 *
 *  - Names: `micro_*_vtable_t` members are implemented by a module and called by its user
 *    (the host or another module); `micro_host_api_t` members are implemented by the host.
 *  - Growth: every struct that crosses the boundary starts with `struct_size` (or, for the module
 *    descriptor, the ABI version) and only ever grows by appending members. A reader checks
 *    `struct_size` before touching a member added in a later minor version (MICRO_HAS_MEMBER),
 *    and reads an absent member as zero, so a member added later must mean "the default" at 0.
 *    Arrays of growable structs are arrays of pointers, so an element's size never sets a stride.
 *  - Ownership: pointers passed as arguments are borrowed for the duration of the call; pointers
 *    passed to a callback are borrowed for the duration of that callback. Whoever needs data
 *    longer copies it. A `micro_error_t*` returned by a function is owned by the caller and freed
 *    with micro_error_free(). Instances made by a factory are destroyed with their vtable's
 *    `destroy`.
 *  - Threads: a completion callback is called exactly once, on any thread, possibly before the
 *    function that started the operation returns. Event callbacks (watch, subscribe, accept)
 *    may run on any module-owned thread, never concurrently for the same subscription.
 *  - Errors: never exceptions. Synchronous functions return `micro_error_t*` (NULL = success);
 *    completions receive `const micro_error_t*` (NULL = success). */
#ifndef MICRO_ABI_H
#define MICRO_ABI_H

#include <stddef.h>
#include <stdint.h>

/* The major version must match exactly between host and module; minor versions only add. */
#define MICRO_ABI_VERSION_MAJOR 1u
#define MICRO_ABI_VERSION_MINOR 0u

/* The one symbol a module exports. */
#define MICRO_MODULE_ENTRY_SYMBOL "micro_module_entry"

#if defined(_WIN32)
#define MICRO_EXPORT __declspec(dllexport)
#else
#define MICRO_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define MICRO_EXTERN_C extern "C"
#else
#define MICRO_EXTERN_C
#endif

/* True when `ptr` (a pointer to a struct starting with `size_t struct_size`) is large enough to
 * hold `member`: the check a reader makes before touching a member added in a later minor. */
#define MICRO_HAS_MEMBER(type, ptr, member) \
  ((ptr) != NULL && (ptr)->struct_size >= offsetof(type, member) + sizeof(((type*)0)->member))

/* The eight go-micro kinds plus the user-facing handler kind. Values are stable forever. */
typedef enum micro_kind {
  MICRO_KIND_CODEC = 1,
  MICRO_KIND_TRANSPORT = 2,
  MICRO_KIND_REGISTRY = 3,
  MICRO_KIND_SELECTOR = 4,
  MICRO_KIND_BROKER = 5,
  MICRO_KIND_CLIENT = 6,
  MICRO_KIND_SERVER = 7,
  MICRO_KIND_SERVICE = 8,
  MICRO_KIND_HANDLER = 9
} micro_kind_t;

/* Bit for a kind in a `required_kinds` mask. */
#define MICRO_KIND_BIT(kind) (1u << (unsigned)(kind))

/* The kind's name as the TOML table calls it ("registry"), or NULL for a value that is no kind. */
static inline const char* micro_kind_name(uint32_t kind) {
  static const char* const names[] = {NULL,     "codec",  "transport", "registry", "selector",
                                      "broker", "client", "server",    "service",  "handler"};
  return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : NULL;
}

#endif /* MICRO_ABI_H */
