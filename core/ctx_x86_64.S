/*
 * core/ctx_x86_64.S - stack switch for x86-64, System V ABI.
 *
 * void weft__ctx_switch(void **save_sp, void *load_sp)
 *   Pushes the callee-saved registers (rbp, rbx, r12-r15) and the MXCSR and
 *   x87 control words on the current stack, stores the stack pointer in
 *   *save_sp, loads load_sp and pops the same frame from there, then returns
 *   with a plain ret. docs/machine.md: ending in pop + jmp (~5 ns saved in
 *   a bare probe); in weft it cost ~10 ns per yield instead (switch bench:
 *   20.2 ns/op with pop + jmp, 8.6-10.4 ns/op with ret, 2026-11-22): every
 *   task reaches this function through the same call chain, so ret is
 *   predicted right, while a jmp leaves the return-stack buffer one entry
 *   deep and every later return in the chain mispredicts.
 *
 * void weft__ctx_start(void)
 *   First "return address" of a new context (see weft__ctx_make in ctx.c):
 *   calls r12(r13) on an aligned stack. The entry function never returns.
 */
#if defined(__x86_64__)
    .text
    .globl  weft__ctx_switch
    .type   weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

    .globl  weft__ctx_start
    .type   weft__ctx_start, @function
    .p2align 4
weft__ctx_start:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r13, %rdi
    andq    $-16, %rsp
    callq   *%r12
    ud2
    .cfi_endproc
    .size   weft__ctx_start, .-weft__ctx_start

    .section .note.GNU-stack,"",@progbits
#endif
