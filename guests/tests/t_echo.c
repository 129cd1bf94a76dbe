/*
 * Socket echo server: every byte a client sends comes straight back, many
 * clients at once. Boot arg max_clients=N powers off (status 0) after N
 * clients have disconnected; without it the server runs until killed.
 */
#include "sdk.h"

#define RECV_CHUNK 16384

static uint8_t buffer[RECV_CHUNK];
static uint64_t open_channels;

static void on_sock_irq(struct isr_frame *frame)
{
    (void)frame;
    pic_eoi(); /* the main loop polls the device; the IRQ only wakes it */
}

static void accept_all(void)
{
    for (;;) {
        int chan = sock_accept();
        if (chan < 0)
            return;
        open_channels |= 1UL << chan;
    }
}

/* Returns 1 when the channel closed. */
static int echo_once(int chan)
{
    int n = sock_recv(chan, buffer, sizeof(buffer));
    if (n == -VMRR_EAGAIN)
        return 0;
    if (n > 0 && sock_send(chan, buffer, (size_t)n) == n)
        return 0;
    sock_close(chan);
    open_channels &= ~(1UL << chan);
    return 1;
}

static int work_waiting(void)
{
    return sock_accept_queue() > 0 || (sock_ready() & open_channels) != 0;
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    uint64_t max_clients = boot_arg_u64("max_clients", 0);
    uint64_t closed = 0;
    irq_register(IRQ_SOCK, on_sock_irq);
    puts("echo: ready");
    for (;;) {
        cli();
        if (!work_waiting()) {
            wait_for_interrupt();
            continue;
        }
        sti();
        accept_all();
        uint64_t ready = sock_ready() & open_channels;
        while (ready) {
            int chan = __builtin_ctzll(ready);
            ready &= ready - 1;
            closed += (uint64_t)echo_once(chan);
        }
        if (max_clients && closed >= max_clients) {
            printf("echo: %lu clients served\n", closed);
            return 0;
        }
    }
}
