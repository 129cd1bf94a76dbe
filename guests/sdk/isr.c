/*
 * IDT setup and the C side of interrupt dispatch.
 */
#include "interrupts.h"
#include "console.h"
#include "cpu.h"
#include "libc.h"
#include "machine.h"
#include "pic.h"
#include "power.h"

#define IDT_ENTRIES 256
#define KERNEL_CODE_SELECTOR 0x08
#define GATE_PRESENT 0x80
#define GATE_TYPE_INTERRUPT 0x0E
#define HW_IRQ_LINES 8

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
} __attribute__((packed));

struct idt_descriptor {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

extern const uint64_t isr_stub_table[IDT_ENTRIES];

static struct idt_gate idt[IDT_ENTRIES] __attribute__((aligned(16)));
static isr_handler_t handlers[IDT_ENTRIES];
volatile uint64_t spurious_irq_count;

static void set_gate(int vector, uint64_t target, uint8_t type_attr)
{
    struct idt_gate *gate = &idt[vector];
    gate->offset_low = (uint16_t)target;
    gate->selector = KERNEL_CODE_SELECTOR;
    gate->ist = 0;
    gate->type_attr = type_attr;
    gate->offset_mid = (uint16_t)(target >> 16);
    gate->offset_high = (uint32_t)(target >> 32);
    gate->reserved = 0;
}

void idt_init(void)
{
    for (int vector = 0; vector < IDT_ENTRIES; vector++)
        set_gate(vector, isr_stub_table[vector], GATE_PRESENT | GATE_TYPE_INTERRUPT);
    struct idt_descriptor descriptor = {
        .limit = sizeof(idt) - 1,
        .base = (uint64_t)idt,
    };
    __asm__ volatile("lidt %0" : : "m"(descriptor) : "memory");
}

static int valid_vector(int vector)
{
    return vector >= 0 && vector < IDT_ENTRIES;
}

void isr_register(int vector, isr_handler_t handler)
{
    if (valid_vector(vector))
        handlers[vector] = handler;
}

void irq_register(int line, isr_handler_t handler)
{
    isr_register(IRQ_VECTOR_BASE + line, handler);
}

void idt_clear_gate(int vector)
{
    if (valid_vector(vector))
        idt[vector].type_attr &= (uint8_t)~GATE_PRESENT;
}

void idt_restore_gate(int vector)
{
    if (valid_vector(vector))
        set_gate(vector, isr_stub_table[vector], GATE_PRESENT | GATE_TYPE_INTERRUPT);
}

static void unhandled_exception(const struct isr_frame *frame)
{
    printf("guest: unhandled exception vector %lu error 0x%lx at rip 0x%lx rsp 0x%lx\n",
           frame->vector, frame->error_code, frame->rip, frame->rsp);
    poweroff(128 + (int)frame->vector);
}

void isr_dispatch(struct isr_frame *frame)
{
    uint64_t vector = frame->vector;
    isr_handler_t handler = handlers[vector];
    if (handler) {
        handler(frame);
        return;
    }
    /* An IRQ nobody wants must still be ended, or it blocks every lower-priority line. */
    if (vector >= IRQ_VECTOR_BASE && vector < IRQ_VECTOR_BASE + HW_IRQ_LINES) {
        spurious_irq_count++;
        pic_eoi();
        return;
    }
    unhandled_exception(frame);
}
