/* The native half of vmrr's exact instruction counter (see vmm/icount.py).
 *
 * Four Unicorn callbacks, all sharing one `struct counter` passed as user_data.
 * No globals, no calls but through the function pointer in the struct, no
 * relocations: the object's .text is position independent and ships as bytes in
 * vmm/icount.py (NATIVE_CODE, NATIVE_ENTRY). tests/unit/test_icount_blocks.py rebuilds
 * this file with vmm.icount.make_native() and compares, when gcc is present:
 *
 *   gcc -O2 -fPIC -fno-asynchronous-unwind-tables -fno-stack-protector
 *       -fcf-protection=none -fno-jump-tables -c icount_native.c
 *   objcopy -O binary -j .text icount_native.o icount_native.bin
 *
 * Unicorn's calling conventions (System V AMD64):
 *   block hook:  (uc, uint64 address, uint32 size, void *user_data)
 *   code hook:   (uc, uint64 address, uint32 size, void *user_data)
 *   edge hook:   (uc, uc_tb *cur, uc_tb *prev, void *user_data)
 */

#include <stdint.h>

typedef struct uc_tb {             /* unicorn.h */
    uint64_t pc;
    uint16_t icount;
    uint16_t size;
} uc_tb;

enum { KIND_NEW = 0, KIND_COUNTED = 1, KIND_EXACT = 2 };
enum { STOP_NONE = 0, STOP_MISS = 1, STOP_LIMIT = 2, STOP_CODE = 3 };

struct entry {                     /* one translated block, 24 bytes */
    uint64_t pc;
    uint16_t size;                 /* bytes, as Unicorn reports the block */
    uint16_t icount;               /* instructions in it, as Unicorn reports the block */
    uint8_t kind;                  /* KIND_*: NEW until Python has looked at it */
    uint8_t pad;
    uint16_t last_off;             /* offset of its last instruction */
    uint16_t counted;              /* COUNTED: its instructions no range code hook counts */
    uint32_t space;                /* the address space it was seen in (counter.space) */
    uint16_t pad2;
};

struct counter {
    uint64_t icount;               /*   0: instructions begun */
    uint64_t limit;                /*   8: stop before instruction number limit+1 begins */
    void (*emu_stop)(void *uc);    /*  16: uc_emu_stop */
    uint64_t last_pc;              /*  24: address of the instruction last begun */
    uint64_t exact_all;            /*  32: 1: the global code hook counts everything */
    struct entry *table;           /*  40 */
    uint64_t mask;                 /*  48: slots - 1 (a power of two, minus one) */
    uint64_t block_base;           /*  56: icount before the current counted block */
    struct entry *block;           /*  64: the block under way (kind COUNTED or EXACT), or 0 */
    uint64_t space;                /*  72: the address space running now (a Linux process's) */
    struct cell **cell_slot;       /*  80: the block hook's user_data inside Unicorn, or 0 */
    uint64_t stop_reason;          /*  88: STOP_* of the last stop asked for here */
    uint64_t stop_pc;              /*  96 */
    uint64_t stop_size;            /* 104 */
    uint64_t unused2;              /* 112 */
    uint64_t translations;         /* 120: blocks Unicorn translated (statistics) */
    uint64_t soft;                 /* 128: 1: the limit may be overrun to finish a block */
    const uint8_t *ram;            /* 136: guest RAM for native classification, or 0: none */
    uint64_t ram_size;             /* 144 */
    uint64_t paging;               /* 152: 1: 4-level page tables rooted at frame `space` */
    const uint64_t *ranges;        /* 160: [lo, hi) pairs code hooks count (exact ranges, tail) */
    uint64_t nranges;              /* 168: pairs in ranges; RANGES_OFF: classify none natively */
    uint64_t *log;                 /* 176: (pc, size | space << 16) of blocks classified here */
    uint64_t nlog;                 /* 184: entries in log, up to log_max */
    uint64_t log_max;              /* 192 */
    struct cell *cells;            /* 200: a ring of cells, one per translated block */
    uint64_t cells_mask;           /* 208: cells - 1 (a power of two, minus one) */
    uint64_t next_cell;            /* 216: the ring's next free cell */
};

/* A translated block's own cell: Unicorn passes the block hook the user_data the hook
   had when it translated the block (the edge hook moves it to a fresh cell after each
   translation), so the hook finds the block's entry without hashing. The entry is still
   checked: a cell may be shared (a translation the edge hook did not see) or stale (the
   entry went to another block). */
struct cell {
    struct counter *s;
    struct entry *e;
};

#define LAST_UNKNOWN 0xFFFF        /* last_off of a block classified here: Python finds it */
#define LAZY_PC (1ull << 63)       /* last_pc holds the start of such a block (icount.py) */
#define RANGES_OFF (~0ull)

/* The table is a set-associative cache of WAYS entries a set. A Fibonacci hash spreads
   the addresses of a PIE program and its libraries, which share their low bits, over
   all sets. */
#define WAYS 4
static inline uint64_t set_of(const struct counter *s, uint64_t pc)
{
    return (((pc ^ s->space) * 0x9E3779B97F4A7C15ull) >> 32) & s->mask & ~(uint64_t)(WAYS - 1);
}
/* Blocks are known per address space: two processes may run different code at one
   address (two programs at the PIE base), and Unicorn keeps both translations. */
static inline struct entry *find(struct counter *s, uint64_t pc, uint64_t size)
{
    struct entry *e = &s->table[set_of(s, pc)];
    for (int i = 0; i < WAYS; i++)
        if (e[i].pc == pc && e[i].size == size && e[i].space == (uint32_t)s->space)
            return &e[i];
    return 0;
}
/* The cell the next translated block gets: this one is taken. */
static inline void next_cell(struct counter *s)
{
    struct cell *c = &s->cells[++s->next_cell & s->cells_mask];
    c->s = s;
    c->e = 0;
    *s->cell_slot = c;
}

/* A block is about to run (its entry `e`, or 0): count it whole, or stop before it. */
static inline __attribute__((always_inline))
void block(void *uc, uint64_t pc, uint32_t size, struct counter *s, struct entry *e)
{
    uint64_t n, all;

    if (!e || e->kind == KIND_NEW) {
        s->stop_reason = STOP_MISS;
        s->stop_pc = pc;
        s->stop_size = size;
        s->emu_stop(uc);           /* stops before this block: Python classifies it */
        return;
    }
    /* COUNTED: it adds the instructions no range hook counts, but whether it would cross
       the limit depends on all of them (the hooks could not stop it in time: the block's
       own instructions are counted before they run). EXACT: the code hooks count and stop. */
    n = e->kind == KIND_COUNTED ? e->counted : 0;
    all = e->kind == KIND_COUNTED ? e->icount : 0;
    if (s->icount + all > s->limit && (!s->soft || s->icount >= s->limit)) {
        s->stop_reason = STOP_LIMIT;
        s->stop_pc = pc;
        s->stop_size = size;
        s->emu_stop(uc);
        return;
    }
    s->block_base = s->icount;
    s->block = e;
    if (n) {
        s->icount += n;
        s->last_pc = e->last_off == LAST_UNKNOWN ? pc | LAZY_PC : pc + e->last_off;
    }
}

/* UC_HOOK_BLOCK: count the whole block before it runs, or stop before it. */
void vmrr_block_hook(void *uc, uint64_t pc, uint32_t size, struct counter *s)
{
    if (!s->exact_all)
        block(uc, pc, size, s, find(s, pc, size));
}

/* The same, with user_data the block's cell (when icount.py could set that up). */
void vmrr_block_hook_cell(void *uc, uint64_t pc, uint32_t size, struct cell *c)
{
    struct counter *s = c->s;
    struct entry *e = c->e;
    if (s->exact_all)
        return;
    if (!e || e->pc != pc || e->size != size || e->space != (uint32_t)s->space) {
        e = c->e = find(s, pc, size);
        if (c == *s->cell_slot)
            next_cell(s);              /* a translation the edge hook did not see */
    }
    block(uc, pc, size, s, e);
}

/* Native classification (Linux programs). The byte at `va` of the running address space,
   or 0 where the page is absent (then Python classifies the block, as before). */
static const uint8_t *code_page(const struct counter *s, uint64_t va)
{
    uint64_t table = s->space << 12, entry;
    if (!s->paging)
        return va < s->ram_size ? s->ram + (va & ~4095ull) : 0;
    for (int shift = 39; shift >= 12; shift -= 9) {
        if (table + 4096 > s->ram_size)
            return 0;
        entry = *(const uint64_t *)(s->ram + table + ((va >> shift) & 511) * 8);
        if (!(entry & 1) || (shift > 12 && (entry & 0x80)))
            return 0;                  /* absent, or a large page: Python looks */
        table = entry & 0x000FFFFFFFFFF000ull;
    }
    return table + 4096 <= s->ram_size ? s->ram + table : 0;
}

/* A block is counted as a whole unless it holds, before its last instruction, one whose
   hook reads the icount: SYSCALL 0F 05, SYSENTER 0F 34, RDTSC 0F 31, CPUID 0F A2, RDTSCP
   0F 01 F9. Without instruction boundaries, any such byte pair not at the block's very
   end sends the block to Python (a pair inside an immediate is a false alarm, never a
   miss). IN and OUT are not looked for: a Linux program has no ports (their hooks read
   no icount), and appliances do not classify natively. */
static int classify_here(const struct counter *s, uint64_t pc, uint64_t size)
{
    const uint8_t *p0, *p1 = 0;
    uint64_t n0 = 4096 - (pc & 4095), i;
    uint8_t a, b, c;
    if (!s->ram || s->nranges == RANGES_OFF || size == 0 || size > 4096)
        return 0;
    for (i = 0; i < s->nranges; i++)
        if (s->ranges[2 * i] < pc + size && pc < s->ranges[2 * i + 1])
            return 0;                  /* code hooks count part of it: Python splits the count */
    p0 = code_page(s, pc);
    if (!p0)
        return 0;
    p0 += pc & 4095;
    if (size > n0) {
        p1 = code_page(s, pc + n0);
        if (!p1)
            return 0;
    } else {
        n0 = size;
    }
#define BYTE(k) ((k) < n0 ? p0[k] : p1[(k) - n0])
    for (i = 0; i + 1 < size; i++) {
        a = BYTE(i);
        if (a != 0x0F)
            continue;
        b = BYTE(i + 1);
        if (b == 0x05 || b == 0x34 || b == 0x31 || b == 0xA2) {
            if (i + 2 != size)
                return 0;
        } else if (b == 0x01 && i + 2 < size) {
            c = BYTE(i + 2);
            if (c == 0xF9 && i + 3 != size)
                return 0;
        }
    }
#undef BYTE
    return 1;
}

/* UC_HOOK_EDGE_GENERATED: Unicorn just translated `cur`; remember its shape. */
void vmrr_edge_hook(void *uc, uc_tb *cur, uc_tb *prev, struct counter *s)
{
    struct entry *set = &s->table[set_of(s, cur->pc)];
    struct entry *e = find(s, cur->pc, cur->size);
    (void)uc;
    (void)prev;
    s->translations++;
    if (!e) {
        e = &set[s->translations & (WAYS - 1)];    /* all ways taken: evict one in turn */
        for (int i = 0; i < WAYS; i++)
            if (set[i].size == 0) {
                e = &set[i];
                break;
            }
    }
    e->pc = cur->pc;
    e->size = cur->size;
    e->space = (uint32_t)s->space;
    e->icount = cur->icount;
    e->kind = KIND_NEW;            /* the bytes may differ: Python looks again */
    if (cur->icount && s->nlog < s->log_max && classify_here(s, cur->pc, cur->size)) {
        e->kind = KIND_COUNTED;
        e->counted = cur->icount;
        e->last_off = LAST_UNKNOWN;
        s->log[2 * s->nlog] = cur->pc;
        s->log[2 * s->nlog + 1] = cur->size | (s->space & 0xFFFFFFFFull) << 16;
        s->nlog++;
    }
    if (s->cell_slot) {
        (*s->cell_slot)->e = e;    /* the cell `cur` was translated with */
        next_cell(s);
    }
}
static inline void count_one(void *uc, uint64_t pc, struct counter *s)
{
    /* The block hook already asked to stop before this block (to classify it, or at the
       limit): Unicorn still calls the first instruction's code hook, then stops before the
       instruction. It has not begun. */
    if (s->stop_reason != STOP_NONE)
        return;
    if (s->icount >= s->limit) {
        s->stop_reason = STOP_CODE;
        s->emu_stop(uc);           /* a code hook's stop takes effect before this insn */
        return;
    }
    s->icount++;
    /* A counted block that range hooks count in part set last_pc to its own last
       instruction when it began; the hooks of its earlier instructions keep it. */
    if (!s->block || s->block->kind != KIND_COUNTED)
        s->last_pc = pc;
}

/* UC_HOOK_CODE over every address (exact_all): the per-instruction counter. */
void vmrr_code_hook(void *uc, uint64_t pc, uint32_t size, struct counter *s)
{
    (void)size;
    count_one(uc, pc, s);
}

/* UC_HOOK_CODE over one block's range: the same, unless exact_all already counts. */
void vmrr_range_hook(void *uc, uint64_t pc, uint32_t size, struct counter *s)
{
    (void)size;
    if (!s->exact_all)
        count_one(uc, pc, s);
}
