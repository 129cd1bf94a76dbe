/* HLT waits for a 300 ms one-shot timer; the host should idle meanwhile. */
#include "sdk.h"

#define SLEEP_NS (300 * NS_PER_MS)

static volatile int woke;

static void on_timer(struct isr_frame *frame)
{
    (void)frame;
    woke = 1;
    pic_eoi();
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    irq_register(IRQ_TIMER, on_timer);
    uint64_t start = clock_monotonic_ns();
    timer_start_oneshot(SLEEP_NS);
    int halts = 0;
    for (;;) {
        cli();
        if (woke)
            break;
        halts++;
        wait_for_interrupt();
    }
    sti();
    uint64_t elapsed = clock_monotonic_ns() - start;
    printf("slept %lu ns over %d hlt\n", elapsed, halts);
    if (elapsed < SLEEP_NS) {
        puts("FAIL t_hlt_idle: woke before the timer was due");
        return 1;
    }
    puts("PASS t_hlt_idle");
    return 0;
}
