/*
 * Active expiry, driven by the timer. The timer runs only while some key
 * has an expiry, so an idle server takes no interrupts at all.
 *
 * kvstore: the timer interrupt only sets a flag; the main loop reaps a
 * bounded number of expired keys between requests.
 *
 * kvstore-race (KV_RACE): the reaper runs inside the timer interrupt, at a
 * higher rate, unlinking and freeing entries while the interrupted code may
 * hold a pointer to one of them. See cmd_set in commands.c.
 */
#include "kvstore.h"
#include "db.h"
#include "sdk.h"

static volatile bool tick_pending;
static bool timer_running;

#ifdef KV_RACE
static void on_timer(struct isr_frame *frame)
{
    (void)frame;
    db_reap_expired((int64_t)clock_monotonic_ms(), (unsigned)config.reap_buckets,
                    (unsigned)config.reap_max);
    pic_eoi();
}
#else
static void on_timer(struct isr_frame *frame)
{
    (void)frame;
    tick_pending = true;
    pic_eoi();
}
#endif

void expire_init(void)
{
    irq_register(IRQ_TIMER, on_timer);
}

void expire_update_timer(void)
{
    bool needed = db_expires_count() > 0;
    if (needed == timer_running)
        return;
    if (needed)
        timer_start_periodic(NS_PER_SEC / config.hz);
    else
        timer_stop();
    timer_running = needed;
}

bool expire_tick_pending(void)
{
    return tick_pending;
}

void expire_run_tick(void)
{
    tick_pending = false;
    now_invalidate();
    db_reap_expired(now_ms(), (unsigned)config.reap_buckets, (unsigned)config.reap_max);
}
