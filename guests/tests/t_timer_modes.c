/* One-shot fires once, periodic fires repeatedly, stop stops. */
#include "sdk.h"

static volatile uint32_t handled;

static void on_timer(struct isr_frame *frame)
{
    (void)frame;
    handled++;
    pic_eoi();
}

/* Sleep until the handler count reaches target (interrupts drive the wakeups). */
static void wait_for_handled(uint32_t target)
{
    for (;;) {
        cli();
        if (handled >= target)
            break;
        wait_for_interrupt();
    }
    sti();
}

/*
 * No timer may be running here, so poll the clock instead of halting. Each
 * clock read is an event in a recording: read it only every few thousand
 * instructions.
 */
static void spin_ms(uint64_t ms)
{
    uint64_t until = clock_monotonic_ns() + ms * NS_PER_MS;
    while (clock_monotonic_ns() < until) {
        for (volatile int i = 0; i < 5000; i++)
            cpu_relax();
    }
}

static int fail(const char *why)
{
    printf("FAIL t_timer_modes: %s\n", why);
    return 1;
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    irq_register(IRQ_TIMER, on_timer);
    sti();

    uint32_t fired0 = timer_fired_count();
    timer_start_oneshot(10 * NS_PER_MS);
    wait_for_handled(1);
    spin_ms(60);
    uint32_t oneshot_fired = timer_fired_count() - fired0;
    printf("one-shot: handled=%u fired=%u\n", handled, oneshot_fired);
    if (handled != 1 || oneshot_fired != 1)
        return fail("one-shot did not fire exactly once");

    uint32_t fired1 = timer_fired_count();
    timer_start_periodic(2 * NS_PER_MS);
    wait_for_handled(1 + 5);
    timer_stop();
    uint32_t periodic_fired = timer_fired_count() - fired1;
    printf("periodic: handled=%u fired=%u\n", handled - 1, periodic_fired);
    if (periodic_fired < 5)
        return fail("periodic fired fewer than 5 times");

    uint32_t fired_at_stop = timer_fired_count();
    uint32_t handled_at_stop = handled;
    spin_ms(30);
    printf("after stop: fired=+%u handled=+%u\n", timer_fired_count() - fired_at_stop,
           handled - handled_at_stop);
    if (timer_fired_count() != fired_at_stop)
        return fail("timer kept firing after stop");
    /* An expiry already latched in the PIC may still be delivered once. */
    if (handled - handled_at_stop > 1)
        return fail("interrupts kept arriving after stop");
    puts("PASS t_timer_modes");
    return 0;
}
