#include "clock.h"
#include "cpu.h"
#include "machine.h"

/* Latch and both halves must be read without a handler latching in between. */
static uint64_t clock_read(uint32_t which)
{
    uint64_t flags = irq_save();
    outl(PORT_CLOCK_LATCH, which);
    uint64_t lo = inl(PORT_CLOCK_LO);
    uint64_t hi = inl(PORT_CLOCK_HI);
    irq_restore(flags);
    return (hi << 32) | lo;
}

uint64_t clock_wall_ns(void)
{
    return clock_read(CLOCK_SELECT_WALL);
}

uint64_t clock_monotonic_ns(void)
{
    return clock_read(CLOCK_SELECT_MONOTONIC);
}
