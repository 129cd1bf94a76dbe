/*
 * Periodic timer interrupts reach the handler, and EOI clears the PIC's
 * in-service bit.
 */
#include "sdk.h"

#define WANTED_TICKS 20
#define TICK_NS (1 * NS_PER_MS)

static volatile uint32_t ticks;
static volatile uint32_t in_service_during_handler;

static void on_timer(struct isr_frame *frame)
{
    (void)frame;
    if (ticks == 0)
        in_service_during_handler = pic_in_service();
    ticks++;
    pic_eoi();
}

static int fail(const char *why)
{
    printf("FAIL t_interrupts: %s\n", why);
    return 1;
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    irq_register(IRQ_TIMER, on_timer);
    timer_start_periodic(TICK_NS);
    for (;;) {
        cli();
        if (ticks >= WANTED_TICKS)
            break;
        wait_for_interrupt();
    }
    timer_stop();
    uint32_t in_service_after = pic_in_service();
    sti();
    printf("ticks=%u fired=%u in_service_during=0x%x in_service_after=0x%x\n", ticks,
           timer_fired_count(), in_service_during_handler, in_service_after);
    if (!(in_service_during_handler & (1u << IRQ_TIMER)))
        return fail("timer line not in service inside its handler");
    if (in_service_after != 0)
        return fail("a line is still in service after EOI");
    if (timer_fired_count() < WANTED_TICKS)
        return fail("TIMER_FIRED below the ticks handled");
    puts("PASS t_interrupts");
    return 0;
}
