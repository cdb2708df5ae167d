/*
 * core/ctx.c - first frames for new contexts. The layouts mirror exactly what
 * weft__ctx_switch pops; keep the two files in step.
 */
#include "ctx.h"

#include <stdint.h>
#include <string.h>

void *weft__ctx_make(void *lo, size_t size, void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* From the saved sp upwards: csr word (mxcsr | x87 cw << 32), r15, r14,
     * r13 = arg, r12 = entry, rbx, rbp = 0, jump target, pad. */
    uint64_t *sp = (uint64_t *)top - 9;
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    memset(sp, 0, 9 * sizeof(uint64_t));
    sp[0] = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    sp[3] = (uint64_t)(uintptr_t)arg;
    sp[4] = (uint64_t)(uintptr_t)entry;
    sp[7] = (uint64_t)(uintptr_t)weft__ctx_start;
    return sp;
#elif defined(__aarch64__)
    /* 176-byte frame: x19 = entry, x20 = arg, x29 = 0, x30 = ctx_start,
     * FPCR copied from the creating thread. */
    uint64_t *sp = (uint64_t *)(top - 176);
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)entry;
    sp[1] = (uint64_t)(uintptr_t)arg;
    sp[10] = 0;
    sp[11] = (uint64_t)(uintptr_t)weft__ctx_start;
    sp[20] = fpcr;
    return sp;
#else
#error "weft: no context switch for this architecture"
#endif
}
