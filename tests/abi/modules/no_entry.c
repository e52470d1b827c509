/* no-entry: a shared library that is not a micro module: it exports no micro_module_entry. */
#include "micro/abi.h"

/* A near miss: the right idea under the wrong name (hidden by the module map anyway). */
MICRO_EXPORT int micro_module_entry_v1(void);
int micro_module_entry_v1(void) { return 1; }
