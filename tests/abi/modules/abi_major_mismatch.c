/* abi-major-mismatch: a module built for the next ABI major. The host must refuse it after reading
 * the descriptor's first members, before calling anything else: every function here aborts. */
#include <stdlib.h>

#include "micro/module.h"

static void destroy_codec(void* self) {
  (void)self;
  abort();
}

static micro_error_t* create_codec(const micro_create_args_t* args, void** out_self) {
  (void)args;
  (void)out_self;
  abort();
}

static const micro_codec_vtable_t codec_vtable = {sizeof(micro_codec_vtable_t), destroy_codec, NULL,
                                                  NULL, NULL};

static const micro_plugin_t codec_plugin = {
    sizeof(micro_plugin_t), MICRO_KIND_CODEC, "abi-major-mismatch", "never created", 0, NULL, 0,
    create_codec,           &codec_vtable, 0};

static const micro_plugin_t* const plugins[] = {&codec_plugin};

static const micro_module_descriptor_t descriptor = {MICRO_ABI_VERSION_MAJOR + 1,
                                                     0,
                                                     sizeof(micro_module_descriptor_t),
                                                     "abi-major-mismatch",
                                                     "1.0.0",
                                                     "Built for the next ABI major",
                                                     plugins,
                                                     1};

MICRO_EXTERN_C MICRO_EXPORT const micro_module_descriptor_t* micro_module_entry(void);
const micro_module_descriptor_t* micro_module_entry(void) { return &descriptor; }
