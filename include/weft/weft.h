/* weft/weft.h - umbrella header: everything public. */
#ifndef WEFT_WEFT_H
#define WEFT_WEFT_H

#include "error.h"
#include "loop.h"
#include "future.h"
#include "task.h"
#include "timeout.h"
#include "sync.h"
#include "queue.h"
#include "combine.h"
#include "group.h"
#include "gen.h"
#include "pool.h"
#include "chan.h"
#include "broadcast.h"
#include "runtime.h"
#include "metrics.h"
#include "stream.h"
#include "pipe.h"
#include "process.h"
#include "fs.h"
#include "net.h"
#include "signal.h"
#include "actor.h"
#include "supervisor.h"

#endif /* WEFT_WEFT_H */
