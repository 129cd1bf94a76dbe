/* The stack grows on demand up to RLIMIT_STACK: argv[1] "deep" recurses through ~4 MiB and
 * prints "PASS stack"; "overflow" recurses forever and must die of SIGSEGV; "altstack" catches
 * that SIGSEGV on an alternate stack and prints "PASS altstack". */
#include <setjmp.h>
#include <signal.h>
#include "check.h"

static sigjmp_buf escape;
static char altstack[1 << 16];

__attribute__((noinline)) static long recurse(long depth, long limit) {
    volatile char frame[1024];
    frame[0] = (char)depth;
    if (depth == limit) return frame[0];
    return recurse(depth + 1, limit) + frame[0];
}

static void on_segv(int sig) { (void)sig; siglongjmp(escape, 1); }

int main(int argc, char **argv) {
    CHECK(argc == 2);
    if (strcmp(argv[1], "deep") == 0) {
        recurse(0, 4000);                     /* ~4.3 MiB: under the 8 MiB limit */
        printf("PASS stack\n");
    } else if (strcmp(argv[1], "overflow") == 0) {
        recurse(0, -1);
    } else if (strcmp(argv[1], "altstack") == 0) {
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
        CHECK(sigaltstack(&ss, NULL) == 0);
        struct sigaction sa = {0};
        sa.sa_handler = on_segv;
        sa.sa_flags = SA_ONSTACK;
        CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
        if (sigsetjmp(escape, 1) == 0) recurse(0, -1);
        printf("PASS altstack\n");
    }
    return 0;
}
