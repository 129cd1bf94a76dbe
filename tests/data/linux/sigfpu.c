/* The FPU state around a signal handler, printed so that a native run and a run under
 * vmrr compare byte for byte.
 *
 * The interrupted code sets a non-default x87 control word, status flags and MXCSR,
 * pushes six values on the x87 stack, fills XMM0-15 with patterns and sends itself
 * SIGUSR1 from the same assembly block (no compiled code in between to disturb them).
 * The handler's first instructions save what it sees live (Linux gives a handler the
 * FPU's initial state); it records its ucontext (uc_flags, the sigcontext's segment
 * word, the FXSAVE image uc_mcontext.fpregs points to, its software-reserved bytes),
 * edits two fields of that image (MXCSR's rounding and ST0), then clobbers every FPU
 * register before returning. After rt_sigreturn the interrupted code saves its state
 * again: it must be what it was, with the two edits.
 *
 * CPU-specific fields are printed as relations: MXCSR_MASK (Westmere 0xFFFF, newer CPUs
 * more), FIP/FDP/FOP (Intel CPUs store them always, AMD ones only with an exception
 * pending), and the XSAVE-dependent uc_flags bit and software-reserved bytes.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include "check.h"

/* Global: the handler's assembly names them. */
uint8_t live_fx[512] __attribute__((aligned(16)));            /* the handler's state on entry */
uint8_t live_env[28];
static uint8_t frame_fx[512];                                  /* *uc_mcontext.fpregs */
static uint8_t before_fx[512] __attribute__((aligned(16)));   /* interrupted code, before */
static uint8_t after_fx[512] __attribute__((aligned(16)));    /* interrupted code, after */
static uint8_t before_env[28], after_env[28];
static uint64_t seen_uc_flags, seen_csgsfs;
static uintptr_t seen_fpregs, seen_frame;
static int handled;

/* What the interrupted code loads: an x87 environment (FCW: round toward zero, double
 * precision; FSW: the precision flag; every register empty), six values, MXCSR (round
 * toward zero, precision flag set) and XMM patterns. */
static uint8_t start_env[28];
static const long double pushed[6] = {1.0L / 3.0L, -2.5e300L, 3.6e-4951L /* denormal */, 0.0L,
                                      -__builtin_infl(), 1.0e4000L};
static const uint32_t start_mxcsr = 0x7fa0;
static uint8_t xmm_patterns[16][16] __attribute__((aligned(16)));
static const long double st0_edit = 42.0L;

extern char x87_block_start[], x87_block_end[], last_x87_op[];

static uint16_t u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

void on_signal(int sig, siginfo_t *info, void *context);

/* The handler: save the live FPU state before anything can touch it, record the frame,
 * then leave every FPU register different from what the interrupted code had. */
__asm__(
    ".text\n"
    ".type handler_entry, @function\n"
    "handler_entry:\n"
    "    fxsave live_fx(%rip)\n"
    "    fnstenv live_env(%rip)\n"            /* the full tag word; it masks exceptions... */
    "    fldcw live_fx(%rip)\n"               /* ...so the control word goes back */
    "    subq $8, %rsp\n"
    "    call on_signal\n"
    "    addq $8, %rsp\n"
    "    fninit\n"
    "    fld1\n"
    "    fldz\n"
    "    fld1\n"
    "    movl $0x3f80, -4(%rsp)\n"
    "    ldmxcsr -4(%rsp)\n"
    "    pcmpeqd %xmm0, %xmm0\n"
    "    pcmpeqd %xmm1, %xmm1\n"
    "    pcmpeqd %xmm2, %xmm2\n"
    "    pcmpeqd %xmm3, %xmm3\n"
    "    pcmpeqd %xmm4, %xmm4\n"
    "    pcmpeqd %xmm5, %xmm5\n"
    "    pcmpeqd %xmm6, %xmm6\n"
    "    pcmpeqd %xmm7, %xmm7\n"
    "    pcmpeqd %xmm8, %xmm8\n"
    "    pcmpeqd %xmm9, %xmm9\n"
    "    pcmpeqd %xmm10, %xmm10\n"
    "    pcmpeqd %xmm11, %xmm11\n"
    "    pcmpeqd %xmm12, %xmm12\n"
    "    pcmpeqd %xmm13, %xmm13\n"
    "    pcmpeqd %xmm14, %xmm14\n"
    "    pcmpeqd %xmm15, %xmm15\n"
    "    ret\n"
    ".size handler_entry, .-handler_entry\n");
extern char handler_entry[];

void on_signal(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    (void)info;
    handled = sig;
    seen_uc_flags = uc->uc_flags;
    seen_csgsfs = (uint64_t)uc->uc_mcontext.gregs[REG_CSGSFS];
    seen_fpregs = (uintptr_t)uc->uc_mcontext.fpregs;
    seen_frame = (uintptr_t)context;
    memcpy(frame_fx, uc->uc_mcontext.fpregs, sizeof frame_fx);
    /* rt_sigreturn restores what the frame holds, edits included */
    uc->uc_mcontext.fpregs->mxcsr = (uc->uc_mcontext.fpregs->mxcsr & ~0x6000u) | 0x4000u;   /* round up */
    memcpy(&uc->uc_mcontext.fpregs->_st[0], &st0_edit, 10);
}

/* Set the state, signal, save the state after the handler returned. */
static void interrupted(void) {
    pid_t pid = getpid(), tid = (pid_t)syscall(SYS_gettid);
    __asm__ volatile(
        "x87_block_start:\n"
        "    fldenv %[env]\n"
        "    fldt 0+%[values]\n"
        "    fldt 16+%[values]\n"
        "    fldt 32+%[values]\n"
        "    fldt 48+%[values]\n"
        "    fldt 64+%[values]\n"
        "last_x87_op:\n"
        "    fldt 80+%[values]\n"
        "x87_block_end:\n"
        "    ldmxcsr %[mxcsr]\n"
        "    movdqa 0+%[xmm], %%xmm0\n"
        "    movdqa 16+%[xmm], %%xmm1\n"
        "    movdqa 32+%[xmm], %%xmm2\n"
        "    movdqa 48+%[xmm], %%xmm3\n"
        "    movdqa 64+%[xmm], %%xmm4\n"
        "    movdqa 80+%[xmm], %%xmm5\n"
        "    movdqa 96+%[xmm], %%xmm6\n"
        "    movdqa 112+%[xmm], %%xmm7\n"
        "    movdqa 128+%[xmm], %%xmm8\n"
        "    movdqa 144+%[xmm], %%xmm9\n"
        "    movdqa 160+%[xmm], %%xmm10\n"
        "    movdqa 176+%[xmm], %%xmm11\n"
        "    movdqa 192+%[xmm], %%xmm12\n"
        "    movdqa 208+%[xmm], %%xmm13\n"
        "    movdqa 224+%[xmm], %%xmm14\n"
        "    movdqa 240+%[xmm], %%xmm15\n"
        "    fxsave %[before]\n"
        "    fnstenv %[before_env]\n"
        "    fldcw %[before]\n"
        "    movl $234, %%eax\n"                /* tgkill(pid, tid, SIGUSR1) */
        "    syscall\n"
        "    fxsave %[after]\n"
        "    fnstenv %[after_env]\n"
        "    fninit\n"                          /* the x87 stack empty again for C code */
        "    movl $0x1f80, -4(%%rsp)\n"
        "    ldmxcsr -4(%%rsp)\n"
        : [before] "=m"(before_fx), [after] "=m"(after_fx), [before_env] "=m"(before_env),
          [after_env] "=m"(after_env)
        : [env] "m"(start_env), [values] "m"(pushed), [mxcsr] "m"(start_mxcsr), [xmm] "m"(xmm_patterns),
          "D"(pid), "S"(tid), "d"(SIGUSR1)
        : "rax", "rcx", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

static int has_xsave(void) {
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    return (c >> 26) & 1;
}

/* Linux's software-reserved bytes (fpu/signal.c save_sw_bytes): the magic, the size of
 * the state with its end marker, the user features (none without XSAVE: they are known
 * only from CPUID leaf 0xD) and the state's size. */
static void print_sw_reserved(const uint8_t *fx) {
    const uint8_t *sw = fx + 464;
    uint32_t magic = u32(sw), extended = u32(sw + 4), size = u32(sw + 16);
    uint64_t features = u64(sw + 8);
    int padding_zero = 1;
    for (int i = 20; i < 48; i++)
        padding_zero &= sw[i] == 0;
    printf("frame: sw_reserved magic1 %08x\n", magic);
    if (!has_xsave()) {
        printf("frame: sw_reserved sizes %s\n", size == 512 && extended == 516 ? "Linux's for this CPU's state" : "WRONG");
        printf("frame: sw_reserved xfeatures %s\n", features == 0 ? "as Linux has them for this CPU" : "WRONG");
    } else {
        unsigned a, b, c, d, lo, hi;
        __cpuid_count(0xd, 0, a, b, c, d);
        __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        printf("frame: sw_reserved sizes %s\n", size >= b && extended == size + 4 ? "Linux's for this CPU's state" : "WRONG");
        printf("frame: sw_reserved xfeatures %s\n",
               (features & ~(((uint64_t)hi << 32) | lo)) == 0 && (features & 3) == 3
                   ? "as Linux has them for this CPU" : "WRONG");
    }
    printf("frame: sw_reserved padding %s\n", padding_zero ? "zero" : "NOT ZERO");
}

/* An FXSAVE image: x87 and SSE state in the SDM's words; FIP/FDP/FOP as relations. */
static void print_fxsave(const char *what, const uint8_t *fx, const uint8_t *env) {
    printf("%s: fcw %04x fsw %04x ftw(abridged) %02x mxcsr %08x\n", what, u16(fx), u16(fx + 2), fx[4],
           u32(fx + 24));
    if (env)
        printf("%s: tag word %04x\n", what, u16(env + 8));
    uint32_t mask = u32(fx + 28);
    printf("%s: mxcsr_mask %s\n", what, (mask & 0xffbf) == 0xffbf && !(u32(fx + 24) & ~mask) ? "covers mxcsr" : "WRONG");
    uint16_t fop = u16(fx + 6);
    uint64_t fip = u64(fx + 8), fdp = u64(fx + 16);
    printf("%s: fop %s\n", what, fop == 0 || fop == 0x32d ? "zero or the last x87 opcode" : "WRONG");
    printf("%s: fip %s\n", what, fip == 0 || fip == (uintptr_t)last_x87_op ? "zero or the last x87 instruction" : "WRONG");
    printf("%s: fdp %s\n", what, fdp == 0 || fdp == (uintptr_t)&pushed[5] ? "zero or the last x87 operand" : "WRONG");
    for (int i = 0; i < 8; i++) {
        const uint8_t *st = fx + 32 + 16 * i;
        printf("%s: st%d %04x %016llx\n", what, i, u16(st + 8), (unsigned long long)u64(st));
    }
    for (int i = 0; i < 16; i++) {
        const uint8_t *x = fx + 160 + 16 * i;
        printf("%s: xmm%d %016llx%016llx\n", what, i, (unsigned long long)u64(x + 8), (unsigned long long)u64(x));
    }
}

int main(void) {
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            xmm_patterns[i][j] = (uint8_t)(i * 16 + j + 1);
    /* the starting x87 environment: the current one with FCW, FSW and the tags changed */
    __asm__ volatile("fnstenv %0\n\tfninit" : "=m"(start_env));
    uint16_t fcw = 0x0e7f, fsw = 0x0020, tags = 0xffff;
    memcpy(start_env, &fcw, 2);
    memcpy(start_env + 4, &fsw, 2);
    memcpy(start_env + 8, &tags, 2);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))(void *)handler_entry;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    interrupted();
    CHECK(handled == SIGUSR1);

    print_fxsave("before", before_fx, before_env);
    print_fxsave("handler", live_fx, live_env);
    printf("frame: uc_flags %s\n",
           seen_uc_flags == (has_xsave() ? 7u : 6u) ? "SIGCONTEXT_SS|STRICT_RESTORE_SS, FP_XSTATE with XSAVE" : "WRONG");
    printf("frame: cs %#llx gs %#llx fs %#llx ss %#llx\n", (unsigned long long)(seen_csgsfs & 0xffff),
           (unsigned long long)(seen_csgsfs >> 16 & 0xffff), (unsigned long long)(seen_csgsfs >> 32 & 0xffff),
           (unsigned long long)(seen_csgsfs >> 48));
    printf("frame: fpregs %s\n", seen_fpregs % 64 == 0 && seen_fpregs > seen_frame ? "64-byte aligned, above the ucontext" : "WRONG");
    print_fxsave("frame", frame_fx, NULL);
    print_sw_reserved(frame_fx);
    print_fxsave("after", after_fx, after_env);

    /* after the handler: the state as before, with the handler's two edits */
    uint8_t expect[512];
    memcpy(expect, before_fx, sizeof expect);
    uint32_t mxcsr = (u32(expect + 24) & ~0x6000u) | 0x4000u;
    memcpy(expect + 24, &mxcsr, 4);
    memcpy(expect + 32, &st0_edit, 10);
    int same = !memcmp(expect, after_fx, 160 + 256) && !memcmp(before_env + 8, after_env + 8, 2);
    printf("after: the interrupted state restored, with the handler's edits: %s\n", same ? "yes" : "no");
    printf("PASS sigfpu\n");
    return 0;
}
