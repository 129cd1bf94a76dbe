/* Clock reads on every path the recorder may take for them (vmm/linux/fastsys.py answers
 * the plain ones natively, Python the rest), and SIGALRM from alarm and setitimer
 * arriving while the program reads clocks, sleeps or waits in pause(). */
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

static volatile sig_atomic_t alarms;

static void on_alarm(int signo)
{
    (void)signo;
    alarms++;
}

static int64_t ns_of(struct timespec ts) { return ts.tv_sec * 1000000000LL + ts.tv_nsec; }

int main(void)
{
    struct timeval tv, prev = {0, 0};
    struct timezone tz = {77, 77};
    struct timespec ts, last = {0, 0};

    for (int i = 0; i < 2000; i++) {                 /* the native path */
        CHECK(gettimeofday(&tv, NULL) == 0);
        CHECK(tv.tv_usec >= 0 && tv.tv_usec < 1000000);
        CHECK(tv.tv_sec > prev.tv_sec || (tv.tv_sec == prev.tv_sec && tv.tv_usec >= prev.tv_usec));
        prev = tv;
        CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
        CHECK(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000 && ns_of(ts) >= ns_of(last));
        last = ts;
    }
    CHECK(gettimeofday(&tv, &tz) == 0 && tz.tz_minuteswest == 0 && tz.tz_dsttime == 0);
    CHECK(syscall(SYS_gettimeofday, NULL, NULL) == 0);
    static const clockid_t clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID,
                                       CLOCK_THREAD_CPUTIME_ID, CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE,
                                       CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME};
    for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++)
        CHECK(clock_gettime(clocks[i], &ts) == 0 && ts.tv_nsec < 1000000000);
    CHECK(syscall(SYS_clock_gettime, 10, &ts) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_clock_gettime, -1, &ts) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)8) == -1 && errno == EFAULT);
    CHECK(syscall(SYS_gettimeofday, (void *)8, NULL) == -1 && errno == EFAULT);

    char *pages = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(pages != MAP_FAILED);
    struct timespec *fresh = (struct timespec *)(pages + 4096);     /* never touched yet */
    CHECK(clock_gettime(CLOCK_REALTIME, fresh) == 0 && fresh->tv_sec > 0);
    struct timespec *straddling = (struct timespec *)(pages + 3 * 4096 - 4096 - 8);
    CHECK(clock_gettime(CLOCK_MONOTONIC, straddling) == 0 && straddling->tv_nsec < 1000000000);
    CHECK(mprotect(pages, 4096, PROT_READ) == 0);
    CHECK(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (struct timespec *)pages) == -1 && errno == EFAULT);

    /* SIGALRM: a periodic itimer while the program reads clocks (delivered between
       instructions or on the way out of a call), then alarm() and pause(). */
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    struct itimerval it = {{0, 2000}, {0, 2000}}, old, now;
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    CHECK(getitimer(ITIMER_REAL, &now) == 0 && now.it_interval.tv_usec == 2000);
    CHECK(now.it_value.tv_sec == 0 && now.it_value.tv_usec <= 2000);
    while (alarms < 5)
        CHECK(gettimeofday(&tv, NULL) == 0);
    struct itimerval off = {{0, 0}, {0, 0}};
    CHECK(setitimer(ITIMER_REAL, &off, &old) == 0 && old.it_interval.tv_usec == 2000);
    int seen = alarms;
    struct timespec nap = {0, 10000000};
    CHECK(nanosleep(&nap, NULL) == 0);
    CHECK(alarms == seen);                             /* the timer is off */

    CHECK(alarm(5) == 0);
    CHECK(alarm(1) >= 4);                              /* the seconds left of the previous one */
    CHECK(pause() == -1 && errno == EINTR);            /* SIGALRM ends it */
    CHECK(alarms == seen + 1);
    CHECK(alarm(0) == 0);
    printf("alarms %d\n", (int)alarms);
    printf("PASS clocks\n");
    return 0;
}
