/*
 * Heap allocator: boundary-tagged blocks, segregated free lists, immediate
 * coalescing, and an untouched "top" region carved on demand.
 *
 * A block at address B spans [B, B + size):
 *   B + 0   prev_size  size of the block before, valid only while that one is free
 *   B + 8   size | flags (IN_USE, PREV_IN_USE)
 *   B + 16  payload (16-byte aligned); a free block keeps its list links here
 *
 * Small sizes (up to 1 KiB) have one exact-size list each, so the steady
 * churn of a key-value server reuses blocks without splitting; larger
 * sizes share one list per power of two and are taken best-fit. A freed
 * block merges with free neighbours at once, and free space next to the top
 * goes back to the top, so the heap does not fragment under long runs.
 */
#include "sdk.h"

#define ALIGNMENT 16UL
#define HEADER_SIZE 16UL
#define MIN_BLOCK 32UL
#define IN_USE 1UL
#define PREV_IN_USE 2UL
#define FLAG_MASK 15UL

#define SMALL_LIMIT 1024UL
#define SMALL_BINS (SMALL_LIMIT / ALIGNMENT - 1) /* sizes 32..1024 step 16 */
#define LARGE_BINS 40
#define BIN_COUNT (SMALL_BINS + LARGE_BINS)

struct block {
    uint64_t prev_size;
    uint64_t size_flags;
    struct block *next_free; /* links exist only while the block is free */
    struct block *prev_free;
};

bool malloc_poison_freed;

static struct {
    uint64_t start;
    uint64_t end;
    uint64_t top; /* [top, end) was never handed out, or came back */
    struct block *bins[BIN_COUNT];
    uint64_t nonempty[(BIN_COUNT + 63) / 64];
    uint64_t used_bytes;
    uint64_t allocations;
    uint64_t failed;
} heap;

static uint64_t block_size(const struct block *b)
{
    return b->size_flags & ~FLAG_MASK;
}

static struct block *block_at(uint64_t addr)
{
    return (struct block *)addr;
}

static struct block *next_block(const struct block *b)
{
    return block_at((uint64_t)b + block_size(b));
}

static void *payload(struct block *b)
{
    return (char *)b + HEADER_SIZE;
}

static struct block *block_of(void *ptr)
{
    return block_at((uint64_t)ptr - HEADER_SIZE);
}

static int log2_floor(uint64_t x)
{
    return 63 - __builtin_clzll(x);
}

static unsigned bin_index(uint64_t size)
{
    if (size <= SMALL_LIMIT)
        return (unsigned)(size / ALIGNMENT - 2);
    unsigned index = SMALL_BINS + (unsigned)(log2_floor(size) - 10);
    return index < BIN_COUNT ? index : BIN_COUNT - 1;
}

static void mark_bin(unsigned index, bool nonempty)
{
    uint64_t bit = 1UL << (index % 64);
    if (nonempty)
        heap.nonempty[index / 64] |= bit;
    else
        heap.nonempty[index / 64] &= ~bit;
}

static void bin_insert(struct block *b)
{
    unsigned index = bin_index(block_size(b));
    b->prev_free = NULL;
    b->next_free = heap.bins[index];
    if (b->next_free)
        b->next_free->prev_free = b;
    heap.bins[index] = b;
    mark_bin(index, true);
}

static void bin_remove(struct block *b)
{
    unsigned index = bin_index(block_size(b));
    if (b->prev_free)
        b->prev_free->next_free = b->next_free;
    else
        heap.bins[index] = b->next_free;
    if (b->next_free)
        b->next_free->prev_free = b->prev_free;
    if (!heap.bins[index])
        mark_bin(index, false);
}

/* First non-empty bin at or above index, or -1. */
static int next_nonempty_bin(unsigned index)
{
    for (unsigned word = index / 64; word < sizeof(heap.nonempty) / 8; word++) {
        uint64_t bits = heap.nonempty[word];
        if (word == index / 64)
            bits &= ~0UL << (index % 64);
        if (bits)
            return (int)(word * 64 + (unsigned)__builtin_ctzll(bits));
    }
    return -1;
}

/* Best fit within one large bin, whose blocks vary in size. */
static struct block *best_fit(unsigned index, uint64_t size)
{
    struct block *best = NULL;
    for (struct block *b = heap.bins[index]; b; b = b->next_free) {
        uint64_t have = block_size(b);
        if (have >= size && (!best || have < block_size(best))) {
            best = b;
            if (have == size)
                break;
        }
    }
    return best;
}

static struct block *take_free_block(uint64_t size)
{
    int index = next_nonempty_bin(bin_index(size));
    while (index >= 0) {
        struct block *b = (unsigned)index < SMALL_BINS ? heap.bins[index] : best_fit((unsigned)index, size);
        if (b) {
            bin_remove(b);
            return b;
        }
        index = next_nonempty_bin((unsigned)index + 1);
    }
    return NULL;
}

static void release_block(struct block *b);

static void set_next_prev_in_use(struct block *b, bool in_use)
{
    uint64_t next = (uint64_t)next_block(b);
    if (next >= heap.top)
        return; /* the top has no header */
    struct block *n = block_at(next);
    if (in_use) {
        n->size_flags |= PREV_IN_USE;
    } else {
        n->size_flags &= ~PREV_IN_USE;
        n->prev_size = block_size(b);
    }
}

/* Give back the tail of an in-use block when it is big enough to stand alone. */
static void split_block(struct block *b, uint64_t size)
{
    uint64_t have = block_size(b);
    if (have - size < MIN_BLOCK)
        return;
    b->size_flags = size | (b->size_flags & FLAG_MASK);
    struct block *rest = next_block(b);
    rest->size_flags = (have - size) | IN_USE | PREV_IN_USE;
    /* The caller counted the whole block as used; release_block uncounts the tail. */
    heap.allocations++;
    release_block(rest); /* coalesces with whatever follows; no poisoning: nothing pointed here */
}

static struct block *carve_from_top(uint64_t size)
{
    if (heap.end - heap.top < size)
        return NULL;
    struct block *b = block_at(heap.top);
    /* Free space never borders the top, so the block before it is in use. */
    b->size_flags = size | IN_USE | PREV_IN_USE;
    heap.top += size;
    return b;
}

static uint64_t request_to_block_size(size_t request)
{
    if (request > (1UL << 40))
        return 0;
    uint64_t size = (request + HEADER_SIZE + ALIGNMENT - 1) & ~(ALIGNMENT - 1);
    return size < MIN_BLOCK ? MIN_BLOCK : size;
}

void heap_init(uint64_t start, uint64_t end)
{
    heap.start = (start + ALIGNMENT - 1) & ~(ALIGNMENT - 1);
    heap.end = end & ~(ALIGNMENT - 1);
    heap.top = heap.start;
}

void *malloc(size_t request)
{
    uint64_t size = request_to_block_size(request);
    if (!size)
        return NULL;
    uint64_t flags = irq_save();
    struct block *b = take_free_block(size);
    if (b) {
        b->size_flags |= IN_USE;
        set_next_prev_in_use(b, true);
    } else {
        b = carve_from_top(size);
    }
    void *result = NULL;
    if (b) {
        heap.used_bytes += block_size(b);
        heap.allocations++;
        split_block(b, size);
        result = payload(b);
    } else {
        heap.failed++;
    }
    irq_restore(flags);
    return result;
}

static void poison_payload(struct block *b)
{
    uint64_t *word = (uint64_t *)payload(b) + 2; /* past the list links */
    uint64_t *end = (uint64_t *)next_block(b);
    while (word < end)
        *word++ = POISON_POINTER;
}

/* Return a block to the free lists, merging it with free neighbours or the top. */
static void release_block(struct block *b)
{
    heap.used_bytes -= block_size(b);
    heap.allocations--;
    uint64_t size = block_size(b);
    uint64_t prev_flag = b->size_flags & PREV_IN_USE;
    if (!prev_flag) {
        struct block *prev = block_at((uint64_t)b - b->prev_size);
        bin_remove(prev);
        size += block_size(prev);
        prev_flag = prev->size_flags & PREV_IN_USE;
        b = prev;
    }
    uint64_t next = (uint64_t)b + size;
    if (next == heap.top) {
        heap.top = (uint64_t)b;
        return;
    }
    struct block *n = block_at(next);
    if (!(n->size_flags & IN_USE)) {
        bin_remove(n);
        size += block_size(n);
    }
    b->size_flags = size | prev_flag;
    bin_insert(b);
    set_next_prev_in_use(b, false);
}

void free(void *ptr)
{
    if (!ptr)
        return;
    uint64_t flags = irq_save();
    struct block *b = block_of(ptr);
    if (!(b->size_flags & IN_USE))
        panic("heap: double free of %p", ptr);
    if (malloc_poison_freed)
        poison_payload(b);
    release_block(b);
    irq_restore(flags);
}

size_t malloc_usable_size(void *ptr)
{
    return ptr ? block_size(block_of(ptr)) - HEADER_SIZE : 0;
}

/* Grow b in place by absorbing a free neighbour or the top; false if neither fits. */
static bool grow_in_place(struct block *b, uint64_t size)
{
    uint64_t have = block_size(b);
    uint64_t next = (uint64_t)b + have;
    if (next == heap.top) {
        if (heap.end - (uint64_t)b < size)
            return false;
        heap.top = (uint64_t)b + size;
        b->size_flags = size | (b->size_flags & FLAG_MASK);
        heap.used_bytes += size - have;
        return true;
    }
    struct block *n = block_at(next);
    if ((n->size_flags & IN_USE) || have + block_size(n) < size)
        return false;
    bin_remove(n);
    uint64_t merged = have + block_size(n);
    b->size_flags = merged | (b->size_flags & FLAG_MASK);
    heap.used_bytes += merged - have;
    set_next_prev_in_use(b, true);
    split_block(b, size);
    return true;
}

void *realloc(void *ptr, size_t request)
{
    if (!ptr)
        return malloc(request);
    if (request == 0) {
        free(ptr);
        return NULL;
    }
    uint64_t size = request_to_block_size(request);
    if (!size)
        return NULL;
    struct block *b = block_of(ptr);
    uint64_t flags = irq_save();
    bool done = false;
    if (block_size(b) >= size) {
        split_block(b, size);
        done = true;
    } else {
        done = grow_in_place(b, size);
    }
    irq_restore(flags);
    if (done)
        return ptr;
    void *moved = malloc(request);
    if (moved) {
        memcpy(moved, ptr, block_size(b) - HEADER_SIZE);
        free(ptr);
    }
    return moved;
}

void *calloc(size_t count, size_t size)
{
    if (size && count > (~(size_t)0) / size)
        return NULL;
    void *ptr = malloc(count * size);
    if (ptr)
        memset(ptr, 0, count * size);
    return ptr;
}

void heap_get_stats(struct heap_stats *stats)
{
    uint64_t flags = irq_save();
    stats->heap_bytes = heap.end - heap.start;
    stats->used_bytes = heap.used_bytes;
    stats->free_bytes = stats->heap_bytes - heap.used_bytes;
    stats->allocations = heap.allocations;
    stats->failed = heap.failed;
    irq_restore(flags);
}

bool heap_check(void)
{
    uint64_t flags = irq_save();
    bool ok = true;
    bool prev_in_use = true;
    uint64_t prev_size = 0;
    for (uint64_t addr = heap.start; addr < heap.top;) {
        struct block *b = block_at(addr);
        uint64_t size = block_size(b);
        bool in_use = (b->size_flags & IN_USE) != 0;
        if (size < MIN_BLOCK || addr + size > heap.top ||
            ((b->size_flags & PREV_IN_USE) != 0) != prev_in_use ||
            (!prev_in_use && b->prev_size != prev_size) ||
            (!in_use && !prev_in_use)) {
            printf("heap: corrupt block at 0x%lx size 0x%lx flags 0x%lx\n", addr, size,
                   b->size_flags & FLAG_MASK);
            ok = false;
            break;
        }
        prev_in_use = in_use;
        prev_size = size;
        addr += size;
    }
    if (ok && !prev_in_use) {
        puts("heap: free block borders the top");
        ok = false;
    }
    irq_restore(flags);
    return ok;
}
