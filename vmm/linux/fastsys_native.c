/* The native SYSCALL hook of a recorded Linux program (see vmm/linux/fastsys.py).
 *
 * gettimeofday and clock_gettime are half the system calls a server makes (redis: two a
 * request). They read a host clock and write 16 bytes, which this hook does without
 * Python: it reads the clock, writes the answer through the program's page tables into
 * guest RAM, sets RAX and appends (icount, nr, arguments, nanoseconds) to a log that
 * Python turns into the same SYSCALL events its own handler would have logged, in order,
 * before any later event. Anything else, and anything unusual about these two (a page not
 * present or not writable, an executable page, a page boundary, a timezone pointer, a
 * clock it has no host clock for, a full log, or Python having switched the fast path
 * off), goes to the Python hook unchanged.
 *
 * Same build rules as vmm/icount_native.c: no globals, no calls but through the struct's
 * function pointers, no relocations; tests/unit/test_fastsys.py checks FASTSYS_CODE.
 */
#include <stdint.h>

struct timespec64 { int64_t sec; int64_t nsec; };

struct logged {                    /* one call done here, 40 bytes */
    uint64_t icount;
    uint64_t nr;
    uint64_t a0;
    uint64_t a1;
    int64_t ns;
};

struct fastsys {
    uint64_t enabled;              /*   0: 0 sends every call to Python */
    void (*slow)(void *uc, void *ud);                        /*   8: the Python hook */
    int (*reg_read)(void *uc, int regid, void *value);       /*  16: uc_reg_read */
    int (*reg_write)(void *uc, int regid, const void *value);/*  24: uc_reg_write */
    int (*clock_gettime)(int clock, struct timespec64 *ts);  /*  32: libc's */
    uint8_t *ram;                  /*  40: host address of guest-physical 0 */
    uint64_t ram_size;             /*  48 */
    uint64_t root;                 /*  56: guest-physical address of the PML4 */
    uint64_t *icount;              /*  64: the instruction counter's icount */
    uint64_t n;                    /*  72: entries in log */
    uint64_t cap;                  /*  80 */
    struct logged *log;            /*  88 */
    int64_t reg_rax, reg_rdi, reg_rsi;    /*  96, 104, 112: Unicorn register ids */
    int32_t clocks[16];            /* 120: guest clock id -> host clock id, -1: Python */
};

#define PTE_PWU 7ull               /* present, writable, user */
#define PTE_ADDR 0x000FFFFFFFFFF000ull
#define PTE_NX (1ull << 63)

/* Host address of [va, va+len) if it is in one present, writable, non-executable user page. */
static uint8_t *user_bytes(struct fastsys *s, uint64_t va, uint64_t len)
{
    uint64_t table = s->root, entry = 0;
    int shift;
    if ((va & 0xFFF) + len > 0x1000 || va >= (1ull << 47))
        return 0;
    for (shift = 39; shift >= 12; shift -= 9) {
        if (table + 0x1000 > s->ram_size)
            return 0;
        entry = *(uint64_t *)(s->ram + table + ((va >> shift) & 0x1FF) * 8);
        if ((entry & PTE_PWU) != PTE_PWU)
            return 0;
        table = entry & PTE_ADDR;
    }
    if (!(entry & PTE_NX) || table + 0x1000 > s->ram_size)
        return 0;                  /* code may live there: Python writes through Unicorn */
    return s->ram + table + (va & 0xFFF);
}

void vmrr_fast_syscall(void *uc, struct fastsys *s)
{
    uint64_t nr = 0, a0 = 0, a1 = 0, zero = 0;
    struct timespec64 ts;
    int64_t *out;
    int clock;
    if (!s->enabled || s->n >= s->cap)
        goto slow;
    s->reg_read(uc, (int)s->reg_rax, &nr);
    if (nr != 96 && nr != 228)
        goto slow;
    s->reg_read(uc, (int)s->reg_rdi, &a0);
    s->reg_read(uc, (int)s->reg_rsi, &a1);
    if (nr == 96) {                /* gettimeofday(tv, tz): only tv */
        if (a1 != 0)
            goto slow;
        clock = 0;
        out = (int64_t *)user_bytes(s, a0, 16);
    } else {                       /* clock_gettime(clock, tp) */
        if ((int32_t)a0 < 0 || (int32_t)a0 >= 16 || s->clocks[(int32_t)a0] < 0)
            goto slow;
        clock = (int32_t)a0;
        out = (int64_t *)user_bytes(s, a1, 16);
    }
    if (!out || s->clock_gettime(s->clocks[clock], &ts) != 0 || ts.sec < 0)
        goto slow;
    {
        int64_t ns = ts.sec * 1000000000 + ts.nsec;
        struct logged *e = &s->log[s->n++];
        if (nr == 96) {
            out[0] = ns / 1000000000;
            out[1] = (ns % 1000000000) / 1000;
        } else {
            out[0] = ns / 1000000000;
            out[1] = ns % 1000000000;
        }
        s->reg_write(uc, (int)s->reg_rax, &zero);
        e->icount = *s->icount;
        e->nr = nr;
        e->a0 = a0;
        e->a1 = a1;
        e->ns = ns;
    }
    return;
slow:
    s->slow(uc, 0);
}
