/* Edge cases where a kernel's exact answer matters: errors of file calls, O_APPEND,
 * ftruncate, a reader seeing another descriptor's writes, pipes, /proc/self/fd, clocks,
 * sleeps with bad arguments, signal details (SA_RESETHAND, SA_NODEFER, the handler's mask, sigaltstack, returning from a SIGSEGV
 * handler that moved RIP). argv[1] is a scratch directory. Prints "PASS edges". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/ucontext.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

static volatile int hits, mask_had_self, on_altstack;
static char altstack[65536];

static void count(int sig) {
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    mask_had_self = sigismember(&now, sig);
    hits++;
}

static void skip_fault(int sig, siginfo_t *info, void *ctx) {
    (void)sig; (void)info;
    ucontext_t *uc = ctx;
    char here;
    on_altstack = &here >= altstack && &here < altstack + sizeof altstack;
    uc->uc_mcontext.gregs[REG_RIP] += 6;              /* skip "movl $imm32, (%rax)" */
    hits++;
}

int *volatile nowhere;

static void files(const char *dir) {
    char buf[256];
    CHECK(chdir(dir) == 0);
    int fd = open("f.txt", O_CREAT | O_WRONLY | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, "0123456789", 10) == 10);
    CHECK(read(fd, buf, 1) == -1 && errno == EBADF);           /* write-only */
    CHECK(ftruncate(fd, 4) == 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 4 && (st.st_mode & 0777) == 0600);
    CHECK(close(fd) == 0);
    fd = open("f.txt", O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && lseek(fd, 0, SEEK_SET) == 0 && write(fd, "ab", 2) == 2);
    CHECK(lseek(fd, 0, SEEK_CUR) == 6);                          /* appended at the end */
    CHECK(close(fd) == 0);
    fd = open("f.txt", O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 6 && memcmp(buf, "0123ab", 6) == 0);
    CHECK(write(fd, "x", 1) == -1 && errno == EBADF);            /* read-only */
    CHECK(lseek(fd, -1, SEEK_SET) == -1 && errno == EINVAL);
    CHECK(lseek(fd, 100, SEEK_SET) == 100 && read(fd, buf, 1) == 0);
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", fd);
    char target[512];
    ssize_t n = readlink(buf, target, sizeof target - 1);
    CHECK(n > 0);
    target[n] = 0;
    CHECK(strlen(target) > 6 && strcmp(target + strlen(target) - 6, "/f.txt") == 0);
    CHECK(close(fd) == 0);

    /* a reader sees what the program wrote through another descriptor, size included */
    int w = open("g.txt", O_CREAT | O_TRUNC | O_WRONLY, 0644);
    CHECK(w >= 0 && write(w, "old content", 11) == 11);
    int r = open("g.txt", O_RDONLY);
    CHECK(r >= 0 && read(r, buf, 3) == 3 && memcmp(buf, "old", 3) == 0);
    CHECK(pwrite(w, "NEW", 3, 0) == 3 && write(w, " more", 5) == 5);
    CHECK(read(r, buf, sizeof buf) == 13 && memcmp(buf, " content more", 13) == 0);
    CHECK(pread(r, buf, 3, 0) == 3 && memcmp(buf, "NEW", 3) == 0);
    CHECK(fstat(r, &st) == 0 && st.st_size == 16);
    CHECK(ftruncate(w, 2) == 0 && fstat(r, &st) == 0 && st.st_size == 2);
    CHECK(pread(r, buf, sizeof buf, 0) == 2 && memcmp(buf, "NE", 2) == 0);
    CHECK(close(w) == 0 && close(r) == 0 && unlink("g.txt") == 0);

    CHECK(open("f.txt/x", O_RDONLY) == -1 && errno == ENOTDIR);
    CHECK(open("f.txt", O_RDONLY | O_DIRECTORY) == -1 && errno == ENOTDIR);
    CHECK(open(".", O_WRONLY) == -1 && errno == EISDIR);
    CHECK(mkdir("no/such/dir", 0755) == -1 && errno == ENOENT);
    CHECK(chdir("f.txt") == -1 && errno == ENOTDIR);
    CHECK(mkdir("d", 0755) == 0);
    CHECK(open("d/inside", O_CREAT | O_WRONLY, 0644) >= 0);
    CHECK(rmdir("d") == -1 && errno == ENOTEMPTY);
    CHECK(unlink("d") == -1 && errno == EISDIR);
    CHECK(rmdir("f.txt") == -1 && errno == ENOTDIR);
    CHECK(rename("f.txt", "d/inside") == 0);                     /* replaces the target */
    CHECK(stat("d/inside", &st) == 0 && st.st_size == 6);
    CHECK(access("f.txt", F_OK) == -1 && errno == ENOENT);
    CHECK(unlink("d/inside") == 0 && rmdir("d") == 0);
    CHECK(getcwd(buf, 2) == NULL && errno == ERANGE);

    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(lseek(p[0], 0, SEEK_CUR) == -1 && errno == ESPIPE);
    CHECK(pread(p[0], buf, 1, 0) == -1 && errno == ESPIPE);
    CHECK(fstat(p[0], &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0 && (fcntl(p[0], F_GETFL) & O_NONBLOCK));
    CHECK(read(p[0], buf, 1) == -1 && errno == EAGAIN);          /* empty, non-blocking */
    /* a pipe holds 64 KiB: a non-blocking writer gets a partial write, then EAGAIN */
    static char lots[100000];
    CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0);
    CHECK(write(p[1], lots, sizeof lots) == 65536);
    CHECK(write(p[1], lots, 10) == -1 && errno == EAGAIN);
    CHECK(read(p[0], lots, sizeof lots) == 65536);
    CHECK(write(p[1], lots, 10) == 10);
    /* no reader left: EPIPE (SIGPIPE ignored here; signals.c "sigpipe" dies of it) */
    CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
    CHECK(close(p[0]) == 0);
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE);
    CHECK(close(p[1]) == 0 && signal(SIGPIPE, SIG_DFL) == SIG_IGN);
    CHECK(dup2(1, 1) == 1);
    CHECK(dup2(99, 5) == -1 && errno == EBADF);
}

static void clocks(void) {
    struct timespec res, t0, t1;
    CHECK(clock_getres(CLOCK_MONOTONIC, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0);
    struct timespec bad = {0, 1000000000};
    CHECK(nanosleep(&bad, NULL) == -1 && errno == EINVAL);
    bad.tv_sec = -1; bad.tv_nsec = 0;
    CHECK(nanosleep(&bad, NULL) == -1 && errno == EINVAL);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &t0) == 0);
    struct timespec until = t0;
    until.tv_nsec += 20 * 1000000;
    if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == 0);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &t1) == 0);
    CHECK((t1.tv_sec - until.tv_sec) * 1000000000LL + (t1.tv_nsec - until.tv_nsec) >= 0);
    struct timespec past = {0, 1};                                 /* long ago: returns at once */
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &past, NULL) == 0);
    struct tms tm;
    CHECK(times(&tm) != (clock_t)-1);
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0);
    struct timeval tv;
    struct timezone tz;
    CHECK(gettimeofday(&tv, &tz) == 0);
}

static void signals(void) {
    struct sigaction sa = {0}, old;
    sa.sa_handler = count;
    sa.sa_flags = SA_RESETHAND;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK(raise(SIGUSR1) == 0 && hits == 1 && mask_had_self);      /* blocked inside its handler */
    CHECK(sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == SIG_DFL);   /* reset */

    sa.sa_flags = SA_NODEFER;
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
    CHECK(raise(SIGUSR2) == 0 && hits == 2 && !mask_had_self);
    CHECK(sigaction(SIGUSR2, NULL, &old) == 0 && old.sa_handler == count && (old.sa_flags & SA_NODEFER));

    CHECK(sigaction(SIGKILL, &sa, NULL) == -1 && errno == EINVAL);
    CHECK(sigaction(0, &sa, NULL) == -1 && errno == EINVAL);
    CHECK(sigaction(65, &sa, NULL) == -1 && errno == EINVAL);

    /* a SIGSEGV handler on an alternate stack that returns past the faulting store */
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    CHECK(sigaltstack(&ss, NULL) == 0);
    struct sigaction segv = {0};
    segv.sa_sigaction = skip_fault;
    segv.sa_flags = SA_SIGINFO | SA_ONSTACK;
    CHECK(sigaction(SIGSEGV, &segv, NULL) == 0);
    hits = 0;
    __asm__ volatile("movl $42, (%0)" : : "r"(nowhere) : "memory");   /* 6 bytes: c7 00 2a 00 00 00 */
    CHECK(hits == 1 && on_altstack);
    stack_t cur;
    CHECK(sigaltstack(NULL, &cur) == 0 && cur.ss_sp == altstack && !(cur.ss_flags & SS_ONSTACK));

    /* a pending blocked signal survives sigprocmask queries; SIG_IGN discards it */
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0 && raise(SIGUSR2) == 0);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR2));
    CHECK(signal(SIGUSR2, SIG_IGN) != SIG_ERR);
    CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGUSR2));
    /* a blocked signal is never ignored: it stays pending, and is discarded when unblocked */
    CHECK(raise(SIGUSR2) == 0);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR2));
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGUSR2));
    /* unblocked and ignored by default: SIGCHLD, SIGWINCH do nothing */
    CHECK(raise(SIGCHLD) == 0 && raise(SIGWINCH) == 0);
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    files(argv[1]);
    clocks();
    signals();
    printf("PASS edges\n");
    return 0;
}
