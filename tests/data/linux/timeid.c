/* Time, randomness and identity: clocks, sleeps, getrandom, uname, ids, sysinfo, limits,
 * affinity, /proc/self and /dev. Prints host-dependent values (they must replay identically)
 * and "PASS timeid". argv[1] is the program's own absolute path. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static void hex(const char *what, const unsigned char *p, int n) {
    printf("%s ", what);
    for (int i = 0; i < n; i++) printf("%02x", p[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    const clockid_t clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID,
                                CLOCK_THREAD_CPUTIME_ID, CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE,
                                CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME};
    for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        struct timespec t, res;
        CHECK(clock_gettime(clocks[i], &t) == 0);
        CHECK(t.tv_nsec >= 0 && t.tv_nsec < 1000000000);
        CHECK(clock_getres(clocks[i], &res) == 0);
        printf("clock %d %lld\n", (int)clocks[i], ns(t));
    }
    struct timespec bad;
    CHECK(clock_gettime(12345, &bad) == -1 && errno == EINVAL);

    struct timespec rt;
    CHECK(clock_gettime(CLOCK_REALTIME, &rt) == 0);
    CHECK(rt.tv_sec > 1600000000);                         /* a real wall clock */
    struct timeval tv;
    CHECK(gettimeofday(&tv, NULL) == 0 && tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    CHECK(tv.tv_sec >= rt.tv_sec && tv.tv_sec - rt.tv_sec < 60);
    time_t now = time(NULL);
    CHECK(now >= tv.tv_sec && now - tv.tv_sec < 60);
    printf("gettimeofday %ld.%06ld time %ld\n", (long)tv.tv_sec, (long)tv.tv_usec, (long)now);

    /* nanosleep 50 ms: the monotonic clock moves at least that far */
    struct timespec m0, m1, req = {0, 50 * 1000000};
    CHECK(clock_gettime(CLOCK_MONOTONIC, &m0) == 0);
    CHECK(nanosleep(&req, NULL) == 0);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &m1) == 0);
    CHECK(ns(m1) - ns(m0) >= 50 * 1000000LL);
    printf("slept %lld ms\n", (ns(m1) - ns(m0)) / 1000000);

    /* randomness: getrandom and /dev/urandom */
    unsigned char rnd[16], rnd2[16];
    CHECK(getrandom(rnd, sizeof rnd, 0) == sizeof rnd);
    hex("getrandom", rnd, sizeof rnd);
    int fd = open("/dev/urandom", O_RDONLY);
    CHECK(fd >= 0 && read(fd, rnd2, sizeof rnd2) == sizeof rnd2 && close(fd) == 0);
    CHECK(memcmp(rnd, rnd2, sizeof rnd) != 0);
    hex("urandom", rnd2, sizeof rnd2);
    srand((unsigned)(ns(rt) ^ rnd[0]));
    printf("rand %d\n", rand());

    /* /dev/null reads nothing and swallows writes */
    fd = open("/dev/null", O_RDWR);
    char buf[4096];
    CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 0 && write(fd, "gone", 4) == 4 && close(fd) == 0);

    /* identity */
    struct utsname u;
    CHECK(uname(&u) == 0 && strcmp(u.sysname, "Linux") == 0 && strcmp(u.machine, "x86_64") == 0);
    printf("uname %s %s %s\n", u.sysname, u.release, u.machine);
    CHECK(getpid() > 0 && getppid() >= 0 && getpid() == gettid());
    printf("pid %d uid %d gid %d euid %d\n", getpid(), getuid(), getgid(), geteuid());

    struct sysinfo si;
    CHECK(sysinfo(&si) == 0 && si.totalram > 0 && si.mem_unit > 0 && si.procs >= 1);
    CHECK((unsigned long long)si.freeram * si.mem_unit <= (unsigned long long)si.totalram * si.mem_unit);

    struct rlimit rl, rl2;
    CHECK(getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur > 0);
    CHECK(prlimit(0, RLIMIT_NOFILE, NULL, &rl2) == 0 && rl2.rlim_cur > 3 && rl2.rlim_cur <= rl2.rlim_max);
    struct rlimit lower = {64, rl2.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &lower) == 0);
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur == 64);
    CHECK(getrlimit(1000, &rl) == -1 && errno == EINVAL);

    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(CPU_COUNT(&set) == 1);
    CHECK(sysconf(_SC_NPROCESSORS_ONLN) >= 1);

    /* /proc/self */
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    CHECK(n > 0);
    buf[n] = 0;
    CHECK(strcmp(buf, argv[1]) == 0);
    FILE *maps = fopen("/proc/self/maps", "r");
    CHECK(maps != NULL);
    int found = 0, lines = 0;
    char line[1024];
    while (fgets(line, sizeof line, maps)) {
        lines++;
        if (strstr(line, argv[1])) found = 1;
    }
    CHECK(fclose(maps) == 0);
    CHECK(found && lines > 3);
    CHECK(strstr(buf, "timeid") != NULL);

    printf("PASS timeid\n");
    return 0;
}
