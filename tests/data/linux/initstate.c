/* The CPU state and stack a process starts with, printed so that a native run and a run
 * under vmrr compare byte for byte.
 *
 * Build with -Wl,-e,probe_entry: probe_entry (assembly below) is the program's entry. It
 * saves every general register, RFLAGS, the segment selectors, the FS/GS bases, the whole
 * FXSAVE image and the full x87 environment before anything else runs, puts them all
 * back and jumps to glibc's _start. For a static program that is the first instruction
 * of the process; for a dynamic one ld.so has run first (its registers are then ld.so's
 * leftovers, and only what Linux defines for the program's entry is printed for them).
 *
 * Values that legitimately differ between machines are printed as the relation Linux
 * defines (AT_HWCAP is CPUID.1:EDX of this CPU, AT_PHDR is the executable's program
 * headers, ...), never as the raw number. A second part checks what a new thread starts
 * with: a copy of its parent's FPU state at clone, x87 registers included.
 *
 * `initstate raw` prints the raw values too (not compared; for reading a failure).
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>
#include "check.h"

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif
#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27
#define AT_RSEQ_ALIGN 28
#endif

/* What probe_entry saved. The offsets are used by the assembly: keep them in step. */
struct entry_state {
    uint64_t gpr[16];          /* 0: rax rbx rcx rdx rsi rdi rbp rsp r8..r15 */
    uint64_t rflags;           /* 128 */
    uint16_t seg[6];           /* 136: cs ss ds es fs gs */
    uint32_t pad0;
    uint64_t fs_base, gs_base; /* 152, 160 */
    uint8_t fenv[28];          /* 168: fnstenv (full tag word) */
    uint8_t pad1[20];
    uint8_t fx[512] __attribute__((aligned(16)));   /* 224: fxsave */
};
struct entry_state entry_state __attribute__((aligned(64)));
extern char probe_entry[];
extern const ElfW(Ehdr) __ehdr_start;

__asm__(
    ".text\n"
    ".globl probe_entry\n"
    ".type probe_entry, @function\n"
    "probe_entry:\n"
    "    movq %rax, entry_state+0(%rip)\n"
    "    movq %rbx, entry_state+8(%rip)\n"
    "    movq %rcx, entry_state+16(%rip)\n"
    "    movq %rdx, entry_state+24(%rip)\n"
    "    movq %rsi, entry_state+32(%rip)\n"
    "    movq %rdi, entry_state+40(%rip)\n"
    "    movq %rbp, entry_state+48(%rip)\n"
    "    movq %rsp, entry_state+56(%rip)\n"
    "    movq %r8, entry_state+64(%rip)\n"
    "    movq %r9, entry_state+72(%rip)\n"
    "    movq %r10, entry_state+80(%rip)\n"
    "    movq %r11, entry_state+88(%rip)\n"
    "    movq %r12, entry_state+96(%rip)\n"
    "    movq %r13, entry_state+104(%rip)\n"
    "    movq %r14, entry_state+112(%rip)\n"
    "    movq %r15, entry_state+120(%rip)\n"
    "    pushfq\n"                              /* below RSP: nothing of Linux's is there */
    "    popq entry_state+128(%rip)\n"
    "    movw %cs, entry_state+136(%rip)\n"
    "    movw %ss, entry_state+138(%rip)\n"
    "    movw %ds, entry_state+140(%rip)\n"
    "    movw %es, entry_state+142(%rip)\n"
    "    movw %fs, entry_state+144(%rip)\n"
    "    movw %gs, entry_state+146(%rip)\n"
    "    fxsave entry_state+224(%rip)\n"
    "    fnstenv entry_state+168(%rip)\n"       /* masks x87 exceptions: fxrstor undoes it */
    "    movl $158, %eax\n"                     /* arch_prctl(ARCH_GET_FS, &fs_base) */
    "    movl $0x1003, %edi\n"
    "    leaq entry_state+152(%rip), %rsi\n"
    "    syscall\n"
    "    movl $158, %eax\n"                     /* arch_prctl(ARCH_GET_GS, &gs_base) */
    "    movl $0x1004, %edi\n"
    "    leaq entry_state+160(%rip), %rsi\n"
    "    syscall\n"
    "    fxrstor entry_state+224(%rip)\n"       /* everything back as it was */
    "    pushq entry_state+128(%rip)\n"
    "    popfq\n"
    "    movq entry_state+0(%rip), %rax\n"
    "    movq entry_state+16(%rip), %rcx\n"
    "    movq entry_state+24(%rip), %rdx\n"
    "    movq entry_state+32(%rip), %rsi\n"
    "    movq entry_state+40(%rip), %rdi\n"
    "    movq entry_state+88(%rip), %r11\n"
    "    jmp _start\n"
    ".size probe_entry, .-probe_entry\n");

static const char *const GPR_NAMES[16] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                                          "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
static const char *const SEG_NAMES[6] = {"cs", "ss", "ds", "es", "fs", "gs"};
static int raw, dynamic;
static unsigned cpu1_ecx, cpu1_edx, cpu7_ebx;

static uint16_t u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* An FXSAVE image in the words Linux and the SDM use. FIP, FDP and FOP are left out:
 * AMD CPUs store them only while an exception is pending, Intel ones always. */
static void print_fxsave(const char *what, const uint8_t *fx) {
    printf("%s: fcw %04x fsw %04x ftw(abridged) %02x mxcsr %08x\n", what, u16(fx), u16(fx + 2), fx[4],
           u32(fx + 24));
    uint32_t mask = u32(fx + 28);
    printf("%s: mxcsr_mask %s\n", what, mask && !(u32(fx + 24) & ~mask) ? "covers mxcsr" : "WRONG");
    for (int i = 0; i < 8; i++) {
        const uint8_t *st = fx + 32 + 16 * i;
        printf("%s: st%d %04x %016llx\n", what, i, u16(st + 8), (unsigned long long)u64(st));
    }
    for (int i = 0; i < 16; i++) {
        const uint8_t *x = fx + 160 + 16 * i;
        printf("%s: xmm%d %016llx%016llx\n", what, i, (unsigned long long)u64(x + 8),
               (unsigned long long)u64(x));
    }
    if (raw)
        printf("raw %s: fop %04x fip %016llx fdp %016llx mxcsr_mask %08x\n", what, u16(fx + 6),
               (unsigned long long)u64(fx + 8), (unsigned long long)u64(fx + 16), mask);
}

static uintptr_t lowest_string, stack_end;    /* the strings execve copied, and the stack's end */

/* Linux's fs/binfmt_elf.c create_elf_tables, for 64-bit: argv, envp and the file name are
 * copied to the top of the stack (8 bytes left free at the very top); below them, aligned
 * down to 16, the platform string, right below it the 16 AT_RANDOM bytes, and below those
 * argc, argv, envp and the auxiliary vector, RSP aligned to 16. */
static void print_stack(uint64_t rsp) {
    uint64_t *sp = (uint64_t *)rsp;
    uint64_t argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    int envc = 0;
    while (envp[envc])
        envc++;
    ElfW(auxv_t) *auxv = (ElfW(auxv_t) *)(envp + envc + 1);
    printf("stack: rsp %% 16 = %llu, argc %llu, envc %d\n", (unsigned long long)(rsp % 16),
           (unsigned long long)argc, envc);
    for (uint64_t i = 0; i < argc; i++)
        printf("stack: argv[%llu] %s\n", (unsigned long long)i, argv[i]);
    for (int i = 0; i < envc; i++)
        printf("stack: envp[%d] %s\n", i, envp[i]);

    /* the strings, one after another: argv's, envp's, then AT_EXECFN's */
    uintptr_t next = (uintptr_t)argv[0];
    int contiguous = 1;
    lowest_string = next;
    for (uint64_t i = 0; i < argc; i++) {
        contiguous &= (uintptr_t)argv[i] == next;
        next = (uintptr_t)argv[i] + strlen(argv[i]) + 1;
    }
    for (int i = 0; i < envc; i++) {
        contiguous &= (uintptr_t)envp[i] == next;
        next = (uintptr_t)envp[i] + strlen(envp[i]) + 1;
    }
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    contiguous &= (uintptr_t)execfn == next;
    stack_end = (uintptr_t)execfn + strlen(execfn) + 1 + 8;
    printf("stack: argv, envp and AT_EXECFN strings contiguous in that order: %s\n", contiguous ? "yes" : "no");
    printf("stack: 8 bytes after AT_EXECFN's string the stack ends on a page boundary: %s\n",
           stack_end % 4096 == 0 && *(uint64_t *)(stack_end - 8) == 0 ? "yes" : "no");

    /* the auxiliary vector, in order */
    ElfW(auxv_t) *a = auxv;
    uintptr_t platform = 0, random_bytes = 0;
    for (; a->a_type != AT_NULL; a++) {
        if (a->a_type == AT_PLATFORM)
            platform = a->a_un.a_val;
        if (a->a_type == AT_RANDOM)
            random_bytes = a->a_un.a_val;
    }
    uintptr_t auxv_end = (uintptr_t)(a + 1);
    printf("stack: AT_PLATFORM's string ends 16-aligned below the strings: %s\n",
           platform && (platform + 7) % 16 == 0 && platform + 7 <= lowest_string ? "yes" : "no");
    printf("stack: AT_RANDOM's 16 bytes right below AT_PLATFORM's string: %s\n",
           random_bytes + 16 == platform ? "yes" : "no");
    printf("stack: the auxiliary vector ends less than 16 bytes below AT_RANDOM: %s\n",
           auxv_end <= random_bytes && random_bytes - auxv_end < 16 ? "yes" : "no");
}

static int has_xsave(void) { return (cpu1_ecx >> 26) & 1; }

/* AT_MINSIGSTKSZ as arch/x86/kernel/signal.c init_sigframe_size computes it: the largest
 * signal frame without the FPU state (sizeof(struct sigframe_ia32) = 736 on a kernel with
 * IA32 emulation, as Debian's: 732 bytes of fields padded to 8; sizeof(struct
 * rt_sigframe) = 440 without), 15 bytes of alignment, the FPU state
 * (fpu__get_fpstate_size: the 512-byte FXSAVE image, or the XSAVE area of the features
 * XCR0 enables plus its 4-byte end marker; plus the 112-byte fsave header with IA32
 * emulation) and 63 bytes to align it to 64; rounded up to 16. */
static const char *minsigstksz_relation(uint64_t value) {
    uint64_t state = 512;
    if (has_xsave()) {
        unsigned eax, ebx, ecx, edx;
        __cpuid_count(0xd, 0, eax, ebx, ecx, edx);
        state = ebx + 4;
    }
    uint64_t with_ia32 = (736 + 15 + state + 112 + 63 + 15) & ~15ull;
    uint64_t without = (440 + 15 + state + 63 + 15) & ~15ull;
    return value == with_ia32 || value == without ? "as Linux computes it for this CPU's FPU state" : "WRONG";
}

static uintptr_t interp_base;
static uintptr_t interp_end;

static int find_interp(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    if (info->dlpi_addr && (uintptr_t)info->dlpi_addr == getauxval(AT_BASE)) {
        interp_base = info->dlpi_addr;
        for (int i = 0; i < info->dlpi_phnum; i++) {
            const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
            if (ph->p_type == PT_LOAD && info->dlpi_addr + ph->p_vaddr + ph->p_memsz > interp_end)
                interp_end = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        }
    }
    return 0;
}

static void print_auxv(uint64_t rsp) {
    uint64_t *sp = (uint64_t *)rsp;
    char **envp = (char **)(sp + 1) + sp[0] + 1;
    while (*envp)
        envp++;
    ElfW(auxv_t) *a = (ElfW(auxv_t) *)(envp + 1);
    int vdso = 0, rseq = 0;
    for (; a->a_type != AT_NULL; a++) {
        uint64_t v = a->a_un.a_val;
        if (raw)
            printf("raw auxv %llu %#llx\n", (unsigned long long)a->a_type, (unsigned long long)v);
        switch (a->a_type) {
        case AT_SYSINFO_EHDR:                   /* vmrr gives no vDSO, on purpose */
            vdso = 1;
            break;
        case AT_RSEQ_FEATURE_SIZE:              /* vmrr's rseq is ENOSYS, on purpose */
        case AT_RSEQ_ALIGN:
            rseq = 1;
            break;
        case AT_MINSIGSTKSZ:
            printf("auxv: AT_MINSIGSTKSZ %s\n", minsigstksz_relation(v));
            break;
        case AT_HWCAP:
            printf("auxv: AT_HWCAP %s\n", v == cpu1_edx ? "= CPUID.1:EDX" : "WRONG");
            break;
        case AT_HWCAP2:
            printf("auxv: AT_HWCAP2 %s\n", v == ((cpu7_ebx & 1) ? 2u : 0u) ? "= FSGSBASE of CPUID.7" : "WRONG");
            break;
        case AT_PAGESZ: printf("auxv: AT_PAGESZ %llu\n", (unsigned long long)v); break;
        case AT_CLKTCK: printf("auxv: AT_CLKTCK %llu\n", (unsigned long long)v); break;
        case AT_PHDR:
            printf("auxv: AT_PHDR %s\n",
                   v == (uintptr_t)&__ehdr_start + __ehdr_start.e_phoff ? "= the executable's program headers" : "WRONG");
            break;
        case AT_PHENT: printf("auxv: AT_PHENT %llu\n", (unsigned long long)v); break;
        case AT_PHNUM:
            printf("auxv: AT_PHNUM %s\n", v == __ehdr_start.e_phnum ? "= e_phnum" : "WRONG");
            break;
        case AT_BASE:
            if (!dynamic) {
                printf("auxv: AT_BASE %llu\n", (unsigned long long)v);
            } else {
                dl_iterate_phdr(find_interp, NULL);
                const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)v;
                printf("auxv: AT_BASE %s\n", interp_base == v && !memcmp(eh->e_ident, ELFMAG, SELFMAG)
                       && eh->e_type == ET_DYN ? "= ld.so's load address" : "WRONG");
            }
            break;
        case AT_FLAGS: printf("auxv: AT_FLAGS %llu\n", (unsigned long long)v); break;
        case AT_ENTRY:
            printf("auxv: AT_ENTRY %s\n", v == (uintptr_t)probe_entry ? "= the entry point" : "WRONG");
            break;
        case AT_UID: printf("auxv: AT_UID %s\n", v == getuid() ? "= getuid()" : "WRONG"); break;
        case AT_EUID: printf("auxv: AT_EUID %s\n", v == geteuid() ? "= geteuid()" : "WRONG"); break;
        case AT_GID: printf("auxv: AT_GID %s\n", v == getgid() ? "= getgid()" : "WRONG"); break;
        case AT_EGID: printf("auxv: AT_EGID %s\n", v == getegid() ? "= getegid()" : "WRONG"); break;
        case AT_SECURE: printf("auxv: AT_SECURE %llu\n", (unsigned long long)v); break;
        case AT_RANDOM:
            printf("auxv: AT_RANDOM %s\n", v > rsp && v + 16 <= lowest_string ? "16 bytes on the stack" : "WRONG");
            break;
        case AT_EXECFN: {
            char **argv = (char **)(sp + 1);
            printf("auxv: AT_EXECFN %s\n", !strcmp((const char *)v, argv[0]) ? "= argv[0]" : "WRONG");
            break;
        }
        case AT_PLATFORM: printf("auxv: AT_PLATFORM %s\n", (const char *)v); break;
        default:
            printf("auxv: type %llu (unexpected)\n", (unsigned long long)a->a_type);
        }
    }
    /* Deliberate differences: named, so a reader of the output sees them. */
    printf("auxv: AT_SYSINFO_EHDR and AT_RSEQ_* not compared (vmrr: no vDSO, rseq is ENOSYS)\n");
    if (raw)
        printf("raw: vdso %d rseq %d\n", vdso, rseq);
}

/* A value a register holds when ld.so hands over: what it points to, or the number. */
static const char *classify(uint64_t v, uint64_t rsp) {
    static char buf[40];
    if (v == 0)
        return "0";
    if (v >= rsp - 65536 && v < stack_end)
        return "(the stack)";
    if (v >= interp_base && v < interp_end)
        return "(ld.so)";
    snprintf(buf, sizeof buf, "%#llx", (unsigned long long)v);
    return buf;
}

static void print_registers(void) {
    struct entry_state *s = &entry_state;
    uint64_t rsp = s->gpr[7];
    for (int i = 0; i < 16; i++) {
        if (i == 7)
            printf("entry: rsp = &argc\n");
        else if (!dynamic)
            printf("entry: %s %#llx\n", GPR_NAMES[i], (unsigned long long)s->gpr[i]);
        else if (i == 3)                         /* the x86-64 psABI: RDX is for atexit */
            printf("entry: rdx %s\n", classify(s->gpr[i], rsp));
        if (raw)
            printf("raw entry: %s %#llx\n", GPR_NAMES[i], (unsigned long long)s->gpr[i]);
    }
    /* ld.so's arithmetic leaves its own flags; Linux's are IF and the reserved bit 1 */
    if (!dynamic)
        printf("entry: rflags %#llx\n", (unsigned long long)s->rflags);
    if (raw)
        printf("raw entry: rflags %#llx\n", (unsigned long long)s->rflags);
    for (int i = 0; i < 6; i++)
        printf("entry: %s %#x\n", SEG_NAMES[i], s->seg[i]);
    if (!dynamic)
        printf("entry: fs_base %#llx gs_base %#llx\n", (unsigned long long)s->fs_base,
               (unsigned long long)s->gs_base);
    else                                        /* ld.so set up the main thread's TLS */
        printf("entry: fs_base %s gs_base %#llx\n", s->fs_base == (uintptr_t)pthread_self() ? "= pthread_self()" : "WRONG",
               (unsigned long long)s->gs_base);
    if (raw)
        printf("raw entry: fs_base %#llx\n", (unsigned long long)s->fs_base);
    uint16_t fcw = u16(s->fenv), fsw = u16(s->fenv + 4), ftw = u16(s->fenv + 8);
    printf("entry: x87 environment fcw %04x fsw %04x tag word %04x\n", fcw, fsw, ftw);
    if (!dynamic) {
        print_fxsave("entry", s->fx);
    } else {
        /* ld.so's string functions leave their values in XMM registers; Linux's FPU
         * control state reaches the program as the process started with it */
        const uint8_t *fx = s->fx;
        printf("entry: fcw %04x fsw %04x ftw(abridged) %02x mxcsr %08x\n", u16(fx), u16(fx + 2), fx[4],
               u32(fx + 24));
        for (int i = 0; i < 8; i++) {
            const uint8_t *st = fx + 32 + 16 * i;
            printf("entry: st%d %04x %016llx\n", i, u16(st + 8), (unsigned long long)u64(st));
        }
    }
}

/* -- a new thread starts with a copy of its parent's FPU state (Linux: fpu_clone) -- */

static uint8_t thread_fx[512] __attribute__((aligned(16)));
static uint16_t thread_ftw;

static void *thread_main(void *arg) {
    uint8_t env[28];
    (void)arg;
    __asm__ volatile("fxsave %0" : "=m"(thread_fx));
    __asm__ volatile("fnstenv %0\n\tfldcw %1" : "=m"(env) : "m"(thread_fx[0]));
    thread_ftw = u16(env + 8);
    /* the thread's own copy: emptying it leaves the parent's registers alone */
    __asm__ volatile("fninit");
    return NULL;
}

static void check_thread(void) {
    static const long double pushed[2] = {1.0L / 3.0L, -2.5e300L};
    uint16_t fcw = 0x0e7f;                    /* round toward zero, double precision */
    uint32_t mxcsr = 0x7f80;                  /* round toward zero */
    uint16_t fcw_before;
    uint32_t mxcsr_before;
    __asm__ volatile("fnstcw %0\n\tstmxcsr %1" : "=m"(fcw_before), "=m"(mxcsr_before));
    pthread_t t;
    /* Two values on the x87 stack across pthread_create: glibc's code there touches no
     * x87 register, so the clone sees them. */
    __asm__ volatile("fldt %0\n\tfldt %1\n\tfldcw %2\n\tldmxcsr %3"
                     :: "m"(pushed[0]), "m"(pushed[1]), "m"(fcw), "m"(mxcsr));
    int rc = pthread_create(&t, NULL, thread_main, NULL);
    long double top, below;
    __asm__ volatile("fstpt %0\n\tfstpt %1\n\tfldcw %2\n\tldmxcsr %3"
                     : "=m"(top), "=m"(below) : "m"(fcw_before), "m"(mxcsr_before));
    CHECK(rc == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("thread: parent's x87 stack kept: %s\n",
           top == pushed[1] && below == pushed[0] ? "yes" : "no");
    const uint8_t *fx = thread_fx;
    printf("thread: fcw %04x fsw %04x ftw(abridged) %02x tag word %04x mxcsr %08x\n", u16(fx), u16(fx + 2),
           fx[4], thread_ftw, u32(fx + 24));
    for (int i = 0; i < 2; i++) {
        const uint8_t *st = fx + 32 + 16 * i;
        printf("thread: st%d %04x %016llx\n", i, u16(st + 8), (unsigned long long)u64(st));
    }
}

/* -- after SYSCALL: RCX holds the address after it and R11 the flags (the instruction's own
 * doing; Linux returns with both as they were) -- */

static void check_syscall_registers(void) {
    uint64_t rcx, r11, after, flags;
    long pid;
    __asm__ volatile("pushfq\n\tpopq %[flags]\n\t"
                     "leaq 1f(%%rip), %[after]\n\t"
                     "movl $39, %%eax\n\t"        /* getpid */
                     "syscall\n"
                     "1:\tmovq %%rcx, %[rcx]\n\t"
                     "movq %%r11, %[r11]"
                     : [rcx] "=r"(rcx), [r11] "=r"(r11), [after] "=&r"(after), [flags] "=&r"(flags), "=a"(pid)
                     : : "rcx", "r11", "memory");
    printf("syscall: rcx is the address after it: %s, r11 is rflags: %s\n", rcx == after ? "yes" : "no",
           r11 == flags ? "yes" : "no");
}

int main(int argc, char **argv) {
    unsigned eax, ebx;
    raw = argc > 1 && !strcmp(argv[1], "raw");
    dynamic = getauxval(AT_BASE) != 0;
    __cpuid(1, eax, ebx, cpu1_ecx, cpu1_edx);
    unsigned ecx, edx;
    __cpuid_count(7, 0, eax, cpu7_ebx, ecx, edx);
    (void)ebx;
    if (dynamic)
        dl_iterate_phdr(find_interp, NULL);
    printf("initstate: %s\n", dynamic ? "dynamic" : "static");
    uint64_t rsp = entry_state.gpr[7];
    print_stack(rsp);
    print_auxv(rsp);
    print_registers();
    /* what the x87 control word means for a program: 1/3 in double-extended precision */
    volatile long double three = 3.0L;
    printf("x87: 1/3 = %La\n", 1.0L / three);
    /* The division raised the precision flag natively, not under Unicorn (its x87 sets no
     * exception flags: a CPU emulation gap, not the personality's); the thread check
     * below starts from clear flags. */
    __asm__ volatile("fnclex");
    check_thread();
    check_syscall_registers();
    printf("PASS initstate\n");
    return 0;
}
