/* RDTSC, the wall clock and the monotonic clock all move forward. */
#include "sdk.h"

#define YEAR_2020_NS 1577836800000000000ULL

static int fail(const char *why)
{
    printf("FAIL t_rdtsc: %s\n", why);
    return 1;
}

/* Enough work to take measurable time under any emulator. */
static uint64_t busy_work(void)
{
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < 200000; i++)
        sink += i * i;
    return sink;
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    uint64_t mono1 = clock_monotonic_ns();
    uint64_t tsc1 = rdtsc();
    busy_work();
    uint64_t tsc2 = rdtsc();
    uint64_t mono2 = clock_monotonic_ns();
    uint64_t wall = clock_wall_ns();
    printf("tsc1=%lu tsc2=%lu delta=%lu\n", tsc1, tsc2, tsc2 - tsc1);
    printf("monotonic1=%lu monotonic2=%lu wall=%lu\n", mono1, mono2, wall);
    if (tsc2 <= tsc1)
        return fail("TSC did not increase");
    if (mono2 <= mono1)
        return fail("monotonic clock did not increase");
    if (wall < YEAR_2020_NS)
        return fail("wall clock is before 2020");
    puts("PASS t_rdtsc");
    return 0;
}
