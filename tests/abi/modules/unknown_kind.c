/* unknown-kind: a module whose plugin claims a kind this host does not know (42). The host must
 * refuse it while reading the descriptor: every function here aborts. */
#include <stdlib.h>

#include "micro/module.h"

static void destroy_thing(void* self) {
  (void)self;
  abort();
}

static micro_error_t* create_thing(const micro_create_args_t* args, void** out_self) {
  (void)args;
  (void)out_self;
  abort();
}

static const micro_codec_vtable_t vtable = {sizeof(micro_codec_vtable_t), destroy_thing, NULL,
                                            NULL, NULL};

static const micro_plugin_t plugin = {sizeof(micro_plugin_t), 42, "unknown-kind", "kind 42", 0,
                                      NULL, 0, create_thing, &vtable, 0};

static const micro_plugin_t* const plugins[] = {&plugin};

static const micro_module_descriptor_t descriptor = {
    MICRO_ABI_VERSION_MAJOR, MICRO_ABI_VERSION_MINOR, sizeof(micro_module_descriptor_t),
    "unknown-kind", "1.0.0", "A plugin of a kind from the future", plugins, 1};

MICRO_EXTERN_C MICRO_EXPORT const micro_module_descriptor_t* micro_module_entry(void);
const micro_module_descriptor_t* micro_module_entry(void) { return &descriptor; }
