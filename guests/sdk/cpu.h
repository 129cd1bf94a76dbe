/*
 * CPU helpers: port I/O, interrupt flag, HLT and the TSC.
 */
#ifndef VMRR_CPU_H
#define VMRR_CPU_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t value)
{
    __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t value;
    __asm__ volatile("inl %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

static inline void sti(void)
{
    __asm__ volatile("sti" : : : "memory");
}

static inline void cli(void)
{
    __asm__ volatile("cli" : : : "memory");
}

/* With IF = 0 this powers the VM off (nothing could wake it). */
static inline void hlt(void)
{
    __asm__ volatile("hlt" : : : "memory");
}

/*
 * Enable interrupts and halt until the next one. STI delays interrupt
 * delivery by one instruction, so an interrupt that became pending while
 * the caller checked for work with interrupts disabled is taken on the HLT
 * instead of being lost. Returns with interrupts enabled.
 */
static inline void wait_for_interrupt(void)
{
    __asm__ volatile("sti\n\thlt" : : : "memory");
}

static inline uint64_t read_rflags(void)
{
    uint64_t flags;
    __asm__ volatile("pushfq\n\tpopq %0" : "=r"(flags) : : "memory");
    return flags;
}

#define RFLAGS_IF (1UL << 9)

static inline int interrupts_enabled(void)
{
    return (read_rflags() & RFLAGS_IF) != 0;
}

/* Disable interrupts, returning the previous flags for irq_restore(). */
static inline uint64_t irq_save(void)
{
    uint64_t flags;
    __asm__ volatile("pushfq\n\tpopq %0\n\tcli" : "=r"(flags) : : "memory");
    return flags;
}

static inline void irq_restore(uint64_t flags)
{
    __asm__ volatile("pushq %0\n\tpopfq" : : "r"(flags) : "memory", "cc");
}

/* The TSC runs at 1 GHz: one tick per nanosecond since boot. */
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
    __asm__ volatile("pause" : : : "memory");
}

#endif
