/* The native SYSCALL hook of a recorded Linux program (see vmm/linux/fastsys.py).
 *
 * A server's system calls are mostly clock reads and a read and a write on a socket per
 * request. This hook does those without Python: a clock read, or a non-blocking
 * recv/send on the host socket behind the guest descriptor, with the bytes moved through
 * the program's page tables in guest RAM; it sets RAX and appends (icount, nr, arguments,
 * result) to a log, and the bytes received to a data log, which Python turns into the
 * same SYSCALL events its own handler would have logged, in order, before any later
 * event. Anything else, and anything unusual (a page not present or not writable, an
 * executable page, a timezone pointer, a clock it has no host clock for, a socket with
 * nothing to read or no room to write, an error, a write of more than SCRATCH bytes, a
 * full log, or Python having switched the fast path off), goes to the Python hook
 * unchanged: nothing has been consumed or sent then. A read asks the host for at most SCRATCH bytes, and
 * only for as much of the buffer as lies in pages already there: a short read, which a
 * socket may always give.
 *
 * In replay (``replay``), the same four calls are answered from a queue of the recorded
 * ones that come next (Python fills it from the trace): a call that is the queue's head
 * — same icount, number and arguments — gets the recorded result and bytes without
 * Python; anything else goes to Python, which checks it against the trace as always.
 *
 * Same build rules as vmm/icount_native.c: no globals, no calls but through the struct's
 * function pointers, no relocations; tests/functional/test_linux_clocks.py checks
 * FASTSYS_CODE against this source.
 */
#include <stdint.h>

struct timespec64 { int64_t sec; int64_t nsec; };

struct logged {                    /* one call done here, 56 bytes */
    uint64_t icount;
    uint64_t nr;
    uint64_t a0;
    uint64_t a1;
    uint64_t a2;
    int64_t value;                 /* clock: ns; read/write: bytes moved */
    uint64_t data;                 /* read: offset of its bytes in the data log */
};

#define SCRATCH 65536
#define MSG_DONTWAIT 0x40
#define MSG_NOSIGNAL 0x4000

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
    int64_t reg_rdx;               /* 184 */
    int64_t (*recv)(int fd, void *buf, uint64_t n, int flags);          /* 192: libc's */
    int64_t (*send)(int fd, const void *buf, uint64_t n, int flags);    /* 200: libc's */
    int32_t *sockets;              /* 208: guest fd -> host fd of a plain stream socket, or -1 */
    uint64_t nsockets;             /* 216 */
    uint8_t *data;                 /* 224: the data log */
    uint64_t data_used;            /* 232 */
    uint64_t data_cap;             /* 240 */
    uint8_t *scratch;              /* 248: SCRATCH bytes */
    int64_t reg_rip, reg_rflags, reg_rcx, reg_r11;  /* 256..280: Unicorn register ids */
    uint64_t replay;               /* 288: 1: answer from the queue, never from the host */
    struct logged *queue;          /* 296: the recorded calls coming next, in order */
    uint64_t qhead;                /* 304: queued calls answered */
    uint64_t qlen;                 /* 312: queued calls */
    const uint8_t *qdata;          /* 320: the bytes the queued reads received */
};

#define PTE_PWU 7ull               /* present, writable, user */
#define PTE_ADDR 0x000FFFFFFFFFF000ull
#define PTE_NX (1ull << 63)

/* Host address of [va, va+len) if it is in one present user page: writable and not
   executable when ``store`` (code may live there: Python writes through Unicorn). */
static uint8_t *user_bytes(struct fastsys *s, uint64_t va, uint64_t len, int store)
{
    uint64_t table = s->root, entry = 0, need = store ? PTE_PWU : 5;
    int shift;
    if ((va & 0xFFF) + len > 0x1000 || va >= (1ull << 47))
        return 0;
    for (shift = 39; shift >= 12; shift -= 9) {
        if (table + 0x1000 > s->ram_size)
            return 0;
        entry = *(uint64_t *)(s->ram + table + ((va >> shift) & 0x1FF) * 8);
        if ((entry & need) != need)
            return 0;
        table = entry & PTE_ADDR;
    }
    if ((store && !(entry & PTE_NX)) || table + 0x1000 > s->ram_size)
        return 0;
    return s->ram + table + (va & 0xFFF);
}

/* Every page of [va, va+len) is present (and writable, not executable, when ``store``). */
static int user_range(struct fastsys *s, uint64_t va, uint64_t len, int store)
{
    while (len) {
        uint64_t n = 0x1000 - (va & 0xFFF);
        if (n > len)
            n = len;
        if (!user_bytes(s, va, n, store))
            return 0;
        va += n;
        len -= n;
    }
    return 1;
}

/* How much of [va, va+len), from va on, lies in pages a store may go to (a buffer's
   tail may be pages the program never touched yet: a socket read may return less). */
static uint64_t user_prefix(struct fastsys *s, uint64_t va, uint64_t len)
{
    uint64_t done = 0;
    while (done < len) {
        uint64_t n = 0x1000 - ((va + done) & 0xFFF);
        if (n > len - done)
            n = len - done;
        if (!user_bytes(s, va + done, n, 1))
            break;
        done += n;
    }
    return done;
}

/* Copy between guest [va, va+len) (checked with user_range) and the host buffer. */
static void copy_user(struct fastsys *s, uint64_t va, uint8_t *buf, uint64_t len, int store)
{
    while (len) {
        uint64_t n = 0x1000 - (va & 0xFFF), i;
        uint8_t *p;
        if (n > len)
            n = len;
        p = user_bytes(s, va, n, store);
        for (i = 0; i < n; i++) {
            if (store)
                p[i] = buf[i];
            else
                buf[i] = p[i];
        }
        va += n;
        buf += n;
        len -= n;
    }
}

/* read(fd, buf, count) or write(fd, buf, count) on a plain socket: 1 if done here. */
static int socket_io(struct fastsys *s, void *uc, uint64_t nr, uint64_t fd, uint64_t buf, uint64_t asked)
{
    uint64_t count = asked;
    int64_t got;
    int host;
    struct logged *e;
    if (fd >= s->nsockets || (host = s->sockets[fd]) < 0 || count == 0)
        return 0;
    if (nr == 0) {
        if (count > SCRATCH)
            count = SCRATCH;
        count = user_prefix(s, buf, count);    /* a short read, as a socket may give */
        if (count == 0 || s->data_used + count > s->data_cap)
            return 0;
        got = s->recv(host, s->data + s->data_used, count, MSG_DONTWAIT);
        if (got <= 0)
            return 0;              /* nothing yet, the end, an error: Python asks again */
        copy_user(s, buf, s->data + s->data_used, (uint64_t)got, 1);
    } else {
        if (count > SCRATCH || !user_range(s, buf, count, 0))
            return 0;
        copy_user(s, buf, s->scratch, count, 0);
        got = s->send(host, s->scratch, count, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (got <= 0)
            return 0;              /* no room, a reset, a closed peer: Python decides */
    }
    e = &s->log[s->n++];
    e->icount = *s->icount;
    e->nr = nr;
    e->a0 = fd;
    e->a1 = buf;
    e->a2 = asked;
    e->value = got;
    e->data = s->data_used;
    if (nr == 0)
        s->data_used += (uint64_t)got;
    s->reg_write(uc, (int)s->reg_rax, &got);
    return 1;
}

/* Replay: the next recorded call, if it is this one (same icount, number and arguments),
   done as its Python handler would do it from the recorded answer. 0: Python does it
   (and says how the replay diverged, if it did). */
static int replayed(struct fastsys *s, void *uc, uint64_t nr)
{
    struct logged *q;
    uint64_t a0 = 0, a1 = 0, a2 = 0, zero = 0;
    int64_t *out;
    if (s->qhead >= s->qlen)
        return 0;
    q = &s->queue[s->qhead];
    if (q->nr != nr || q->icount != *s->icount)
        return 0;
    s->reg_read(uc, (int)s->reg_rdi, &a0);
    s->reg_read(uc, (int)s->reg_rsi, &a1);
    if (a0 != q->a0 || a1 != q->a1)
        return 0;
    if (nr <= 1) {                 /* read, write on a plain socket: RAX = the recorded count */
        s->reg_read(uc, (int)s->reg_rdx, &a2);
        if (a2 != q->a2 || a0 >= s->nsockets || s->sockets[a0] < 0)
            return 0;
        if (nr == 0) {
            if (!user_range(s, a1, (uint64_t)q->value, 1))
                return 0;
            copy_user(s, a1, (uint8_t *)s->qdata + q->data, (uint64_t)q->value, 1);
        } else if (!user_range(s, a1, a2, 0)) {
            return 0;              /* Python reads the whole buffer (faulting pages in) */
        }
        s->reg_write(uc, (int)s->reg_rax, &q->value);
    } else {                       /* gettimeofday(tv, NULL), clock_gettime(clock, tp) */
        if (nr == 96 && a1 != 0)
            return 0;
        out = (int64_t *)user_bytes(s, nr == 96 ? a0 : a1, 16, 1);
        if (!out)
            return 0;
        out[0] = q->value / 1000000000;
        out[1] = nr == 96 ? (q->value % 1000000000) / 1000 : q->value % 1000000000;
        s->reg_write(uc, (int)s->reg_rax, &zero);
    }
    s->qhead++;
    return 1;
}

void vmrr_fast_syscall(void *uc, struct fastsys *s)
{
    uint64_t nr = 0, a0 = 0, a1 = 0, a2 = 0, zero = 0, rip = 0, rflags = 0;
    struct timespec64 ts;
    int64_t *out;
    int clock;
    /* What the SYSCALL instruction itself does, which Unicorn skips when it is hooked:
       RCX = the address after it, R11 = RFLAGS (Linux returns them so). RIP is still at
       the instruction here. Every call, recording or not, fast or not. */
    s->reg_read(uc, (int)s->reg_rip, &rip);
    s->reg_read(uc, (int)s->reg_rflags, &rflags);
    rip += 2;
    s->reg_write(uc, (int)s->reg_rcx, &rip);
    s->reg_write(uc, (int)s->reg_r11, &rflags);
    if (!s->enabled || s->n >= s->cap)
        goto slow;
    s->reg_read(uc, (int)s->reg_rax, &nr);
    if (nr != 96 && nr != 228 && nr != 0 && nr != 1)
        goto slow;
    if (s->replay) {
        if (replayed(s, uc, nr))
            return;
        goto slow;
    }
    s->reg_read(uc, (int)s->reg_rdi, &a0);
    s->reg_read(uc, (int)s->reg_rsi, &a1);
    if (nr <= 1) {                 /* read, write */
        s->reg_read(uc, (int)s->reg_rdx, &a2);
        if (a0 < (1ull << 31) && socket_io(s, uc, nr, a0, a1, a2))
            return;
        goto slow;
    }
    if (nr == 96) {                /* gettimeofday(tv, tz): only tv */
        if (a1 != 0)
            goto slow;
        clock = 0;
        out = (int64_t *)user_bytes(s, a0, 16, 1);
    } else {                       /* clock_gettime(clock, tp) */
        if ((int32_t)a0 < 0 || (int32_t)a0 >= 16 || s->clocks[(int32_t)a0] < 0)
            goto slow;
        clock = (int32_t)a0;
        out = (int64_t *)user_bytes(s, a1, 16, 1);
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
        e->a2 = 0;
        e->value = ns;
        e->data = 0;
    }
    return;
slow:
    s->slow(uc, 0);
}
