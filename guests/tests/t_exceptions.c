/*
 * Exceptions and software interrupts reach their handlers with the right
 * vector, error code and RIP: faults (#DE, #UD from ud2 and from rdrand)
 * report the faulting instruction, traps (int3, int 0x80) the next one.
 * Each trigger lives in the assembly below so its exact addresses are known.
 */
#include "sdk.h"

#define VEC_SOFTWARE 0x80

/* Each trigger_* runs one instruction between *_at and *_after labels. */
__asm__(
    ".text\n"
    ".globl trigger_divide_error, de_at, de_after\n"
    "trigger_divide_error:\n"
    "    xorl %ecx, %ecx\n"
    "    movl $1, %eax\n"
    "    xorl %edx, %edx\n"
    "de_at:\n"
    "    divq %rcx\n"             /* 48 f7 f1: three bytes */
    "de_after:\n"
    "    ret\n"
    ".globl trigger_ud2, ud_at, ud_after\n"
    "trigger_ud2:\n"
    "ud_at:\n"
    "    ud2\n"
    "ud_after:\n"
    "    ret\n"
    ".globl trigger_int3, bp_at, bp_after\n"
    "trigger_int3:\n"
    "bp_at:\n"
    "    int3\n"
    "bp_after:\n"
    "    ret\n"
    ".globl trigger_int80, int80_at, int80_after\n"
    "trigger_int80:\n"
    "int80_at:\n"
    "    int $0x80\n"
    "int80_after:\n"
    "    ret\n"
    ".globl trigger_rdrand, rdrand_at, rdrand_after\n"
    "trigger_rdrand:\n"
    "rdrand_at:\n"
    "    rdrand %eax\n"           /* 0f c7 f0: not on this CPU model */
    "rdrand_after:\n"
    "    ret\n");

void trigger_divide_error(void);
void trigger_ud2(void);
void trigger_int3(void);
void trigger_int80(void);
void trigger_rdrand(void);
extern const char de_at[], de_after[], ud_at[], ud_after[], bp_at[], bp_after[];
extern const char int80_at[], int80_after[], rdrand_at[], rdrand_after[];

struct expectation {
    const char *name;
    uint64_t vector;
    uint64_t rip_reported; /* where the frame must say we were */
    uint64_t rip_resume;   /* where the handler sends us back to */
};

static const struct expectation *expected;
static volatile int handled;
static volatile int mismatches;

static void on_exception(struct isr_frame *frame)
{
    handled++;
    if (!expected || frame->vector != expected->vector || frame->error_code != 0 ||
        frame->rip != expected->rip_reported) {
        printf("  mismatch: vector=%lu error=%lu rip=0x%lx\n", frame->vector, frame->error_code,
               frame->rip);
        mismatches++;
    }
    if (expected)
        frame->rip = expected->rip_resume;
}

static int check(const struct expectation *e, void (*trigger)(void))
{
    expected = e;
    handled = 0;
    mismatches = 0;
    trigger();
    expected = NULL;
    printf("%s: vector %lu handled=%d mismatches=%d\n", e->name, e->vector, handled, mismatches);
    return handled == 1 && mismatches == 0;
}

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    const struct expectation cases[] = {
        {"#DE div by zero", VEC_DIVIDE_ERROR, (uint64_t)de_at, (uint64_t)de_after},
        {"#UD ud2", VEC_INVALID_OPCODE, (uint64_t)ud_at, (uint64_t)ud_after},
        {"#BP int3", VEC_BREAKPOINT, (uint64_t)bp_after, (uint64_t)bp_after},
        {"int 0x80", VEC_SOFTWARE, (uint64_t)int80_after, (uint64_t)int80_after},
        {"#UD rdrand", VEC_INVALID_OPCODE, (uint64_t)rdrand_at, (uint64_t)rdrand_after},
    };
    void (*triggers[])(void) = {trigger_divide_error, trigger_ud2, trigger_int3, trigger_int80,
                                trigger_rdrand};
    isr_register(VEC_DIVIDE_ERROR, on_exception);
    isr_register(VEC_INVALID_OPCODE, on_exception);
    isr_register(VEC_BREAKPOINT, on_exception);
    isr_register(VEC_SOFTWARE, on_exception);

    int failures = 0;
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (!check(&cases[i], triggers[i])) {
            printf("FAIL t_exceptions: %s\n", cases[i].name);
            failures++;
        }
    }
    if (failures)
        return 1;
    puts("PASS t_exceptions");
    return 0;
}
