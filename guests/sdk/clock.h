/* Wall and monotonic clocks (ports 0x70-0x72). */
#ifndef VMRR_CLOCK_H
#define VMRR_CLOCK_H
#include <stdint.h>

/* Nanoseconds since the Unix epoch. */
uint64_t clock_wall_ns(void);
/* Nanoseconds since boot. */
uint64_t clock_monotonic_ns(void);
static inline uint64_t clock_monotonic_ms(void)
{
    return clock_monotonic_ns() / 1000000ULL;
}
#endif
