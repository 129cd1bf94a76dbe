/*
 * Nested interrupts: the console line (IRQ 1) handler re-enables interrupts
 * while its line is still in service, and waits for timer ticks (IRQ 0,
 * higher priority) to arrive inside it. Needs one byte on stdin.
 */
#include "sdk.h"

#define TICK_NS (1 * NS_PER_MS)
#define TICKS_INSIDE_WANTED 3
#define GIVE_UP_TICKS 10000 /* ten seconds without console input */

static volatile int depth;
static volatile int max_depth;
static volatile uint32_t ticks;
static volatile uint32_t ticks_inside_console;
static volatile uint32_t in_service_nested;
static volatile int console_irqs;
static volatile int nesting_done;

static void enter(void)
{
    depth++;
    if (depth > max_depth)
        max_depth = depth;
}

static void on_timer(struct isr_frame *frame)
{
    (void)frame;
    enter();
    ticks++;
    if (depth == 2) {
        ticks_inside_console++;
        in_service_nested = pic_in_service();
    }
    pic_eoi();
    depth--;
}

static void drain_console(void)
{
    while (console_getc() >= 0)
        ;
}

static void on_console(struct isr_frame *frame)
{
    (void)frame;
    enter();
    console_irqs++;
    drain_console();
    if (!nesting_done) {
        /* Line 1 stays in service: only the higher-priority timer may nest. */
        while (ticks_inside_console < TICKS_INSIDE_WANTED)
            wait_for_interrupt();
        cli();
        nesting_done = 1;
    }
    depth--;
    pic_eoi();
}

static int fail(const char *why)
{
    printf("FAIL t_nested: %s\n", why);
    return 1;
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    irq_register(IRQ_TIMER, on_timer);
    irq_register(IRQ_CONSOLE, on_console);
    console_rx_irq_enable(1);
    timer_start_periodic(TICK_NS);
    for (;;) {
        cli();
        if (nesting_done || ticks >= GIVE_UP_TICKS)
            break;
        wait_for_interrupt();
    }
    timer_stop();
    console_rx_irq_enable(0);
    uint32_t in_service_after = pic_in_service();
    sti();
    printf("max_depth=%d ticks_inside=%u console_irqs=%d in_service_nested=0x%x after=0x%x\n",
           max_depth, ticks_inside_console, console_irqs, in_service_nested, in_service_after);
    if (!nesting_done)
        return fail("no console interrupt (feed one byte on stdin)");
    if (max_depth != 2)
        return fail("no nested interrupt observed");
    if (in_service_nested != ((1u << IRQ_TIMER) | (1u << IRQ_CONSOLE)))
        return fail("lines 0 and 1 were not both in service while nested");
    if (in_service_after != 0)
        return fail("a line is still in service at the end");
    puts("PASS t_nested");
    return 0;
}
