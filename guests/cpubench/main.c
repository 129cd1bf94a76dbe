/*
 * cpubench: CPU-bound and deterministic. Fills a 1 MiB buffer from a fixed
 * seed, then runs FNV-1a over it `rounds` times, each round seeded with the
 * previous checksum so no round can be skipped. Uses no timer, clock or
 * entropy: the same image and arguments always execute the same
 * instructions and print the same checksum.
 *
 * Boot arguments: rounds=N (default 15: about 1.1e8 instructions).
 */
#include "sdk.h"

#define BUFFER_SIZE (1024 * 1024)
#define DEFAULT_ROUNDS 15
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed;
    for (size_t i = 0; i < len; i++) {
        /* xorshift64: cheap and fully determined by the seed */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
}

static uint64_t fnv1a(const uint8_t *buf, size_t len, uint64_t hash)
{
    for (size_t i = 0; i < len; i++) {
        hash ^= buf[i];
        hash *= FNV_PRIME;
    }
    return hash;
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    uint64_t rounds = boot_arg_u64("rounds", DEFAULT_ROUNDS);
    uint8_t *buf = malloc(BUFFER_SIZE);
    if (!buf) {
        puts("cpubench: not enough memory for the buffer");
        return 1;
    }
    fill(buf, BUFFER_SIZE, 0x9e3779b97f4a7c15ULL);
    uint64_t checksum = FNV_OFFSET;
    for (uint64_t round = 0; round < rounds; round++)
        checksum = fnv1a(buf, BUFFER_SIZE, checksum);
    printf("cpubench: rounds=%lu checksum=0x%016lx\n", rounds, checksum);
    free(buf);
    return 0;
}
