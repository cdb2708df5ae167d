/*
 * core/ctx.h - raw context switch (internal).
 *
 * A context is just a saved stack pointer; the registers live on the stack
 * (see ctx_x86_64.S / ctx_aarch64.S). weft__ctx_make prepares a fresh stack
 * so that switching to it calls entry(arg) on it. Sanitizer bookkeeping is
 * done by the caller (task.c), not here, so this layer stays testable on
 * its own (tests/ctx_aarch64_test runs it under qemu).
 */
#ifndef WEFT_CORE_CTX_H
#define WEFT_CORE_CTX_H

#include <stddef.h>

void weft__ctx_switch(void **save_sp, void *load_sp);
void weft__ctx_start(void);

/* Build the first frame at the top of [lo, lo+size) and return the stack
 * pointer to switch to. entry must never return. */
void *weft__ctx_make(void *lo, size_t size, void (*entry)(void *), void *arg);

#endif /* WEFT_CORE_CTX_H */
