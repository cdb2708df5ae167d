/*
 * core/loop_int.h - compatibility only: every layer of core's internals at
 * once, for tests written before the split. Core's own files include the
 * layer they need (base.h has the map); new code should too.
 */
#ifndef WEFT_CORE_LOOP_INT_H
#define WEFT_CORE_LOOP_INT_H

#include "wait_int.h"

#endif /* WEFT_CORE_LOOP_INT_H */
