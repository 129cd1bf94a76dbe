/*
 * Interrupt and exception handling: the IDT, per-vector handlers and the
 * frame every handler receives.
 */
#ifndef VMRR_INTERRUPTS_H
#define VMRR_INTERRUPTS_H

#include <stdint.h>

/* Exception vectors used by the SDK and the tests. */
#define VEC_DIVIDE_ERROR 0
#define VEC_BREAKPOINT 3
#define VEC_INVALID_OPCODE 6
#define VEC_DOUBLE_FAULT 8
#define VEC_GENERAL_PROTECTION 13
#define VEC_PAGE_FAULT 14

/*
 * Saved state of the interrupted code, lowest address first: the registers
 * isr_common pushed, the vector and error code the stub pushed, then what
 * the CPU (the VMM) pushed. A handler may change any field, e.g. rip to
 * skip a faulting instruction; iretq restores from it.
 */
struct isr_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector;
    uint64_t error_code; /* 0 for vectors without one */
    uint64_t rip, cs, rflags, rsp, ss;
};

typedef void (*isr_handler_t)(struct isr_frame *frame);

/* Install handler for vector (NULL restores the default behaviour). */
void isr_register(int vector, isr_handler_t handler);

/* Convenience for hardware lines: vector 32 + line. */
void irq_register(int line, isr_handler_t handler);

/*
 * Mark a gate not present. Any delivery to it then makes the VMM stop the
 * VM with an "unhandled exception" crash report; tests use this.
 */
void idt_clear_gate(int vector);

/* Make a gate present again (interrupt gate to the SDK stub). */
void idt_restore_gate(int vector);

/* Number of hardware interrupts that arrived with no handler registered. */
extern volatile uint64_t spurious_irq_count;

/* Called from isr_common; not for guests. */
void isr_dispatch(struct isr_frame *frame);
void idt_init(void);

#endif
