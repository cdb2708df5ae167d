/* weft/weft.h - umbrella header: everything public. */
#ifndef WEFT_WEFT_H
#define WEFT_WEFT_H

#include "error.h"
#include "loop.h"
#include "future.h"
#include "task.h"

#endif /* WEFT_WEFT_H */
