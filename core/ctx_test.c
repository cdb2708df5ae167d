/*
 * core/ctx_test.c - the raw context switch on its own, no loop: two contexts
 * bounce between each other, and callee-saved integer and floating-point
 * registers must survive every switch. Built natively by //core:ctx_test and
 * cross-built for aarch64 and run under qemu-aarch64 by //core:ctx_aarch64_test.
 * Prints "PLAIN: N passed, M failed" (counted by tools/test.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "ctx.h"

static void *main_sp, *co_sp;
static volatile long hops;
static int failed, passed;

static void check(int ok, const char *what)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL: %s\n", what);
    }
}

static void co_entry(void *arg)
{
    long *counter = arg;
    volatile double acc = 1.0;
    for (;;) {
        (*counter)++;
        acc *= 1.0000001;
        weft__ctx_switch(&co_sp, main_sp);
    }
}

int main(void)
{
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED)
        return 2;
    long counter = 0;
    co_sp = weft__ctx_make(stack, size, co_entry, &counter);
    /* Values kept in registers across calls must come back intact. */
    register long r1 = 0x1111, r2 = 0x2222, r3 = 0x3333;
    double d1 = 1.5, d2 = -2.25;
    for (int i = 0; i < 100000; i++) {
        weft__ctx_switch(&main_sp, co_sp);
        r1 += 1;
        r2 += 2;
        r3 += 3;
        d1 += 1.0;
        d2 -= 1.0;
        hops++;
    }
    check(counter == 100000, "the coroutine ran once per switch");
    check(hops == 100000, "main resumed once per switch");
    check(r1 == 0x1111 + 100000 && r2 == 0x2222 + 200000 && r3 == 0x3333 + 300000,
          "integer registers survive");
    check(d1 == 1.5 + 100000.0 && d2 == -2.25 - 100000.0, "floating-point registers survive");
    printf("PLAIN: %d passed, %d failed\n", passed, failed);
    munmap(stack, size);
    return failed ? 1 : 0;
}
