#include "timer.h"
#include "cpu.h"
#include "machine.h"

static void timer_arm(uint64_t interval_ns, uint32_t mode)
{
    uint64_t flags = irq_save();
    outl(PORT_TIMER_INTERVAL_LO, (uint32_t)interval_ns);
    outl(PORT_TIMER_INTERVAL_HI, (uint32_t)(interval_ns >> 32));
    outl(PORT_TIMER_CTRL, mode);
    irq_restore(flags);
}

void timer_start_periodic(uint64_t interval_ns)
{
    timer_arm(interval_ns, TIMER_MODE_PERIODIC);
}

void timer_start_oneshot(uint64_t interval_ns)
{
    timer_arm(interval_ns, TIMER_MODE_ONESHOT);
}

void timer_stop(void)
{
    outl(PORT_TIMER_CTRL, TIMER_MODE_STOP);
}

uint32_t timer_fired_count(void)
{
    return inl(PORT_TIMER_FIRED);
}
