/* Interval timer on IRQ 0 (ports 0x40-0x43). */
#ifndef VMRR_TIMER_H
#define VMRR_TIMER_H
#include <stdint.h>

#define NS_PER_MS 1000000ULL
#define NS_PER_SEC 1000000000ULL

/* Fire every interval_ns, starting interval_ns from now. */
void timer_start_periodic(uint64_t interval_ns);
/* Fire once, interval_ns from now. */
void timer_start_oneshot(uint64_t interval_ns);
void timer_stop(void);
/* Expirations since boot (32 bits, wraps). */
uint32_t timer_fired_count(void);
#endif
