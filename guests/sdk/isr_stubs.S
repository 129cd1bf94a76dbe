/*
 * One entry stub per vector. Each pushes a dummy error code where the CPU
 * pushes none, then its vector number, so every frame has the same layout
 * (struct isr_frame in interrupts.h) when isr_common calls isr_dispatch.
 */
    .section .text
    .code64

.macro ISR_STUB vector
    .balign 16
isr_stub_\vector:
    .if (\vector == 8) || (\vector == 10) || (\vector == 11) || (\vector == 12) || (\vector == 13) || (\vector == 14) || (\vector == 17)
    .else
    pushq $0
    .endif
    pushq $\vector
    jmp isr_common
.endm

.macro ISR_TABLE_ENTRY vector
    .quad isr_stub_\vector
.endm

    .altmacro
    .set vec, 0
    .rept 256
    ISR_STUB %vec
    .set vec, vec + 1
    .endr

    .balign 16
    .type isr_common, @function
isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    /* The ABI wants a 16-byte aligned stack at the call, whatever we interrupted. */
    movq %rsp, %rbx
    andq $-16, %rsp
    call isr_dispatch
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp          /* vector and error code */
    iretq
    .size isr_common, . - isr_common

    .section .rodata
    .balign 8
    .globl isr_stub_table
isr_stub_table:
    .set vec, 0
    .rept 256
    ISR_TABLE_ENTRY %vec
    .set vec, vec + 1
    .endr

    .section .note.GNU-stack, "", @progbits
