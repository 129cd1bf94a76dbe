/* Signals. argv[1] picks the scenario:
 *   handled   SIGSEGV with SA_SIGINFO (si_addr checked, out through siglongjmp), SIGFPE from an
 *             integer divide by zero, raise(SIGUSR1), a blocked signal delivered on unblock;
 *             prints "PASS signals"
 *   abort     abort(): SIGABRT, not handled
 *   null      a store through NULL in store_null(): SIGSEGV, not handled
 *   term      raise(SIGTERM): terminated by the signal's default action, no crash
 *   exit7     exit(7)
 *   sigpipe   a write to a pipe with no reader: SIGPIPE's default action ends the program */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include "check.h"

static sigjmp_buf escape;
static volatile void *seen_addr;
static volatile int seen_sig, seen_code, usr1_count;
int *volatile target;                  /* NULL: the crash scenarios store through it */
volatile int divisor;                  /* 0 */

static void on_fault(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    seen_sig = sig;
    seen_code = info->si_code;
    seen_addr = info->si_addr;
    siglongjmp(escape, 1);
}

static void on_usr1(int sig) { (void)sig; usr1_count++; }

__attribute__((noinline)) void store_null(void) { *target = 42; }

static void handled(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
    CHECK(sigaction(SIGFPE, &sa, NULL) == 0);

    /* SIGSEGV: si_addr is the faulting address, the handler leaves through siglongjmp */
    target = (int *)(uintptr_t)0x1234;
    if (sigsetjmp(escape, 1) == 0) {
        *target = 1;
        CHECK(!"the store did not fault");
    }
    CHECK(seen_sig == SIGSEGV && seen_code == SEGV_MAPERR && seen_addr == (void *)0x1234);
    target = NULL;

    /* the signal mask was restored by siglongjmp: a second fault is delivered too */
    seen_sig = 0;
    if (sigsetjmp(escape, 1) == 0) {
        store_null();
        CHECK(!"the store did not fault");
    }
    CHECK(seen_sig == SIGSEGV && seen_addr == NULL);

    /* SIGFPE: integer division by zero */
    seen_sig = 0;
    volatile int quotient = 0;
    if (sigsetjmp(escape, 1) == 0) {
        quotient = 100 / divisor;
        CHECK(!"the division did not trap");
    }
    CHECK(seen_sig == SIGFPE && seen_code == FPE_INTDIV);
    (void)quotient;

    /* raise(SIGUSR1): the handler runs before raise returns */
    CHECK(signal(SIGUSR1, on_usr1) != SIG_ERR);
    CHECK(raise(SIGUSR1) == 0 && usr1_count == 1);
    CHECK(kill(getpid(), SIGUSR1) == 0 && usr1_count == 2);

    /* blocked, then pending, then delivered when unblocked */
    sigset_t set, old, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &set, &old) == 0);
    CHECK(raise(SIGUSR1) == 0 && usr1_count == 2);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1));
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    CHECK(usr1_count == 3);

    /* ignored */
    CHECK(signal(SIGUSR2, SIG_IGN) != SIG_ERR && raise(SIGUSR2) == 0);
    printf("PASS signals\n");
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    printf("scenario %s\n", argv[1]);
    fflush(stdout);
    if (strcmp(argv[1], "handled") == 0) handled();
    else if (strcmp(argv[1], "abort") == 0) abort();
    else if (strcmp(argv[1], "null") == 0) store_null();
    else if (strcmp(argv[1], "term") == 0) raise(SIGTERM);
    else if (strcmp(argv[1], "exit7") == 0) exit(7);
    else if (strcmp(argv[1], "sigpipe") == 0) {
        int p[2];
        CHECK(pipe(p) == 0 && close(p[0]) == 0);
        (void)!write(p[1], "x", 1);
        CHECK(!"survived SIGPIPE");
    }
    else CHECK(!"unknown scenario");
    return 0;
}
