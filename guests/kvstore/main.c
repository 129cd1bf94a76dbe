/*
 * kvstore entry point: boot arguments, the keyspace, expiry, then the
 * event loop.
 *
 * Boot arguments (space-separated, all optional):
 *   hz=N              expiry timer rate while keys have an expiry
 *                     (default 100; kvstore-race: 1000)
 *   reap_buckets=N    hash buckets the reaper visits per tick (default 256)
 *   reap_max=N        keys the reaper may delete per tick (default 64)
 *   latency_sample=N  time one request batch in N with RDTSC (default 16)
 *   verbose=1         log connections to the console
 */
#include "kvstore.h"
#include "db.h"
#include "sdk.h"

#ifdef KV_RACE
#define DEFAULT_HZ 1000
#else
#define DEFAULT_HZ 100
#endif
#define DEFAULT_REAP_BUCKETS 256
#define DEFAULT_REAP_MAX 64
#define DEFAULT_LATENCY_SAMPLE 16

struct kv_config config;
struct kv_stats stats;

static uint64_t bounded_arg(const char *name, uint64_t fallback, uint64_t min, uint64_t max)
{
    uint64_t value = boot_arg_u64(name, fallback);
    return value < min ? min : value > max ? max : value;
}

static void read_config(void)
{
    config.hz = bounded_arg("hz", DEFAULT_HZ, 1, 10000);
    config.reap_buckets = bounded_arg("reap_buckets", DEFAULT_REAP_BUCKETS, 1, 1UL << 20);
    config.reap_max = bounded_arg("reap_max", DEFAULT_REAP_MAX, 1, 1UL << 20);
    config.latency_sample = bounded_arg("latency_sample", DEFAULT_LATENCY_SAMPLE, 1, 1UL << 20);
    config.verbose = boot_arg_u64("verbose", 0) != 0;
}

int kmain(struct vmrr_boot_info *bi)
{
    read_config();
    stats.boot_ns = clock_monotonic_ns();
#ifdef KV_RACE
    /* Make a use of a freed entry fault at once instead of reading stale data. */
    malloc_poison_freed = true;
#endif
    db_init(entropy_u64(), entropy_u64());
    commands_seed(entropy_u64());
    expire_init();
    printf("%s: %lu MiB RAM, hz=%lu reap_buckets=%lu reap_max=%lu latency_sample=%lu%s\n",
           KV_APPLIANCE, bi->mem_size >> 20, config.hz, config.reap_buckets, config.reap_max,
           config.latency_sample, config.verbose ? " verbose" : "");
    puts("kvstore: ready");
    server_run();
    return 0;
}
