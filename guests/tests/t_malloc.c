/*
 * Heap allocator under random churn: blocks keep their contents, the heap
 * stays consistent, and when everything is freed the heap is whole again
 * (no leak, no fragments left behind).
 */
#include "sdk.h"

#define SLOTS 1024
#define OPERATIONS 30000
#define CHECK_EVERY 5000

struct slot {
    uint8_t *ptr;
    size_t size;
    uint8_t tag;
};

static struct slot slots[SLOTS];
static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Mostly small sizes, like a key-value server's, with the odd large one. */
static size_t random_size(void)
{
    uint64_t r = rng();
    if (r % 100 < 80)
        return 1 + r % 200;
    if (r % 100 < 97)
        return 1 + r % 4000;
    return 1 + r % 200000;
}

static int fail(const char *why, unsigned op)
{
    printf("FAIL t_malloc: %s (operation %u)\n", why, op);
    return 1;
}

/* Checks the edges and a stride through the middle: cheap, and catches overlapping blocks. */
static bool intact(const struct slot *s)
{
    for (size_t i = 0; i < s->size; i += (i < 32 || i + 32 >= s->size) ? 1 : 61) {
        if (s->ptr[i] != s->tag)
            return false;
    }
    return true;
}

static void fill(struct slot *s, size_t from)
{
    memset(s->ptr + from, s->tag, s->size - from);
}

/* One random malloc, free or realloc on slot index; false if contents were damaged. */
static bool churn(struct slot *s)
{
    if (!s->ptr) {
        s->size = random_size();
        s->tag = (uint8_t)rng();
        s->ptr = malloc(s->size);
        if (s->ptr)
            fill(s, 0);
        return true;
    }
    if (!intact(s))
        return false;
    if (rng() % 3 == 0) {
        size_t old = s->size;
        size_t size = random_size();
        uint8_t *moved = realloc(s->ptr, size);
        if (moved) {
            s->ptr = moved;
            s->size = size;
            if (size > old)
                fill(s, old);
        }
        return !moved || intact(s);
    }
    free(s->ptr);
    s->ptr = NULL;
    return true;
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    for (unsigned op = 0; op < OPERATIONS; op++) {
        if (!churn(&slots[rng() % SLOTS]))
            return fail("block contents changed", op);
        if (op % CHECK_EVERY == 0 && !heap_check())
            return fail("heap corrupt", op);
    }
    struct heap_stats during;
    heap_get_stats(&during);
    for (unsigned i = 0; i < SLOTS; i++) {
        if (slots[i].ptr && !intact(&slots[i]))
            return fail("block contents changed at the end", i);
        free(slots[i].ptr);
        slots[i].ptr = NULL;
    }
    struct heap_stats after;
    heap_get_stats(&after);
    printf("peak blocks=%lu used=%lu; after freeing all: used=%lu blocks=%lu failed=%lu\n",
           during.allocations, during.used_bytes, after.used_bytes, after.allocations,
           after.failed);
    if (!heap_check())
        return fail("heap corrupt after freeing everything", OPERATIONS);
    if (after.used_bytes != 0 || after.allocations != 0)
        return fail("bytes still counted as used after freeing everything", OPERATIONS);
    /* Everything merged back: one allocation of nearly the whole heap must succeed. */
    void *whole = malloc(after.heap_bytes - 4096);
    if (!whole)
        return fail("heap fragmented: cannot allocate it whole again", OPERATIONS);
    free(whole);
    puts("PASS t_malloc");
    return 0;
}
