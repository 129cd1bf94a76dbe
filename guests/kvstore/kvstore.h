/*
 * kvstore: an in-memory key-value server speaking enough RESP2 for
 * redis-cli and redis-benchmark. Shared declarations of the server
 * (server.c), its commands (commands.c) and expiry (expire.c).
 */
#ifndef KV_KVSTORE_H
#define KV_KVSTORE_H

#include <stdbool.h>
#include <stdint.h>
#include "resp.h"

#ifdef KV_RACE
#define KV_APPLIANCE "kvstore-race"
#else
#define KV_APPLIANCE "kvstore"
#endif

struct kv_config {
    uint64_t hz;             /* expiry timer rate while keys have an expiry */
    uint64_t reap_buckets;   /* buckets the reaper visits per tick */
    uint64_t reap_max;       /* keys the reaper may delete per tick */
    uint64_t latency_sample; /* time one batch in this many with RDTSC */
    bool verbose;            /* log connections to the console */
};

struct client {
    int chan;
    char *in;                /* received bytes not yet consumed */
    size_t in_len;
    size_t in_cap;
    struct request req;
    struct reply_buf out;
    bool close_after_reply;  /* QUIT or a protocol error */
};

struct kv_stats {
    uint64_t boot_ns;
    uint64_t connections_received;
    uint64_t connected_clients;
    uint64_t commands_processed;
    uint64_t timed_commands;  /* commands in batches timed with RDTSC */
    uint64_t timed_cycles;
    uint64_t rejected_connections;
};

extern struct kv_config config;
extern struct kv_stats stats;

/* Monotonic milliseconds, read once per batch of requests and then cached. */
int64_t now_ms(void);
void now_invalidate(void);

/* commands.c */
void command_execute(struct client *c, struct request *req);
/* Seed the generator SPOP uses to pick members. */
void commands_seed(uint64_t seed);

/* expire.c */
void expire_init(void);
/* Start or stop the expiry timer depending on whether any key can expire. */
void expire_update_timer(void);
/* Main-loop work due from the timer: true if a tick is pending. */
bool expire_tick_pending(void);
void expire_run_tick(void);

/* server.c */
void server_run(void);

#endif
