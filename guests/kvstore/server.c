/*
 * Connections and the event loop. Each socket channel is one client with
 * an input buffer (requests may arrive split across reads, or many in one
 * read when pipelined) and an output buffer sent once per batch.
 */
#include "kvstore.h"
#include "db.h"
#include "sdk.h"

#define RECV_CHUNK 16384                 /* the device's per-channel buffer */
#define MAX_QUERY_BUFFER (64UL << 20)    /* a larger unparsed request is refused */
#define KEEP_BUFFER (64UL << 10)         /* buffers above this shrink when drained */

static struct client *clients[SOCK_MAX_CHANNELS];
static uint64_t open_channels;
static uint64_t batches;

static bool now_valid;
static int64_t now_cached;

int64_t now_ms(void)
{
    if (!now_valid) {
        now_cached = (int64_t)clock_monotonic_ms();
        now_valid = true;
    }
    return now_cached;
}

void now_invalidate(void)
{
    now_valid = false;
}

/* The main loop polls the device; the interrupt only ends a HLT. */
static void on_sock_irq(struct isr_frame *frame)
{
    (void)frame;
    pic_eoi();
}

static void client_open(int chan)
{
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        sock_close(chan);
        stats.rejected_connections++;
        return;
    }
    c->chan = chan;
    clients[chan] = c;
    open_channels |= 1UL << chan;
    stats.connections_received++;
    stats.connected_clients++;
    if (config.verbose)
        printf("kvstore: client on channel %d connected\n", chan);
}

static void client_close(struct client *c)
{
    sock_close(c->chan);
    open_channels &= ~(1UL << c->chan);
    clients[c->chan] = NULL;
    stats.connected_clients--;
    if (config.verbose)
        printf("kvstore: client on channel %d closed\n", c->chan);
    free(c->in);
    request_free(&c->req);
    free(c->out.data);
    free(c);
}

static void accept_all(void)
{
    for (;;) {
        int chan = sock_accept();
        if (chan < 0 || chan >= SOCK_MAX_CHANNELS)
            return;
        client_open(chan);
    }
}

/* Make room for one more RECV_CHUNK; false when the request is too large. */
static bool reserve_input(struct client *c)
{
    if (c->in_cap - c->in_len >= RECV_CHUNK)
        return true;
    size_t cap = c->in_cap ? c->in_cap : 2 * RECV_CHUNK;
    while (cap - c->in_len < RECV_CHUNK)
        cap *= 2;
    if (cap > MAX_QUERY_BUFFER)
        return false;
    char *in = realloc(c->in, cap);
    if (!in)
        return false;
    c->in = in;
    c->in_cap = cap;
    return true;
}

/* Run every complete request in the input buffer; keep a partial one for later. */
static uint64_t process_input(struct client *c)
{
    size_t pos = 0;
    uint64_t commands = 0;
    while (!c->close_after_reply) {
        enum parse_status status = resp_parse(c->in + pos, c->in_len - pos, &c->req);
        if (status == PARSE_INCOMPLETE)
            break;
        if (status == PARSE_ERROR) {
            reply_error(&c->out, "ERR Protocol error: %s", c->req.error);
            c->close_after_reply = true;
            break;
        }
        if (c->req.argc > 0) {
            command_execute(c, &c->req);
            commands++;
        }
        pos += c->req.consumed;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    if (c->in_len == 0 && c->in_cap > KEEP_BUFFER) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return commands;
}

/* Send the batch's replies; false when the client is gone or replies were lost. */
static bool flush_output(struct client *c)
{
    bool ok = !c->out.failed;
    if (ok && c->out.len > 0)
        ok = sock_send(c->chan, c->out.data, c->out.len) == (int)c->out.len;
    reply_buf_reset(&c->out, KEEP_BUFFER);
    return ok;
}

/* Time one batch in config.latency_sample: each RDTSC is an event in the trace. */
static uint64_t process_input_timed(struct client *c)
{
    if (batches++ % config.latency_sample != 0)
        return process_input(c);
    uint64_t start = rdtsc();
    uint64_t commands = process_input(c);
    stats.timed_cycles += rdtsc() - start;
    stats.timed_commands += commands;
    return commands;
}

static void serve_client(struct client *c)
{
    if (!reserve_input(c)) {
        reply_error(&c->out, "ERR Protocol error: request too large");
        flush_output(c);
        client_close(c);
        return;
    }
    int n = sock_recv(c->chan, c->in + c->in_len, RECV_CHUNK);
    if (n == -VMRR_EAGAIN)
        return;
    if (n <= 0) { /* the peer hung up (0) or the channel is gone */
        client_close(c);
        return;
    }
    c->in_len += (size_t)n;
    stats.commands_processed += process_input_timed(c);
    if (!flush_output(c) || c->close_after_reply)
        client_close(c);
}

static bool work_waiting(void)
{
    return sock_accept_queue() > 0 || (sock_ready() & open_channels) != 0 ||
           expire_tick_pending();
}

void server_run(void)
{
    irq_register(IRQ_SOCK, on_sock_irq);
    for (;;) {
        expire_update_timer();
        if (expire_tick_pending())
            expire_run_tick();
        /* Check for work with interrupts off, so none can slip in before the HLT. */
        cli();
        if (!work_waiting()) {
            wait_for_interrupt();
            continue;
        }
        sti();
        now_invalidate();
        accept_all();
        uint64_t ready = sock_ready() & open_channels;
        while (ready) {
            int chan = __builtin_ctzll(ready);
            ready &= ready - 1;
            serve_client(clients[chan]);
        }
    }
}
