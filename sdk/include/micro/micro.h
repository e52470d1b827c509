/* Everything in the C ABI, for convenience. */
#ifndef MICRO_MICRO_H
#define MICRO_MICRO_H
#include "micro/module.h"
#endif
