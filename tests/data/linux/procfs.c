/* /proc and /sys as this process sees them. argv[1] is "check". The test sets VMRR_PROBE=42
 * in the environment. Prints "PASS procfs". */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>
#include "check.h"

static size_t slurp(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    size_t total = 0;
    ssize_t n;
    while ((n = read(fd, buf + total, size - 1 - total)) > 0) total += n;
    CHECK(n == 0 && close(fd) == 0);
    buf[total] = 0;
    return total;
}

static int dir_has(const char *path, const char *name) {
    DIR *d = opendir(path);
    CHECK(d != NULL);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL) found |= strcmp(e->d_name, name) == 0;
    CHECK(closedir(d) == 0);
    return found;
}

int main(int argc, char **argv) {
    static char buf[65536];
    char want[256], link[4096];
    CHECK(argc == 2 && strcmp(argv[1], "check") == 0);

    /* /proc/self/stat: pid (comm) state ..., 52 fields */
    slurp("/proc/self/stat", buf, sizeof buf);
    snprintf(want, sizeof want, "%d (procfs", getpid());
    CHECK(strncmp(buf, want, strlen(want)) == 0);
    int fields = 0;
    for (char *p = strrchr(buf, ')') + 1; *p; p++) if (*p == ' ') fields++;
    CHECK(fields + 2 == 52);

    slurp("/proc/self/status", buf, sizeof buf);
    snprintf(want, sizeof want, "\nPid:\t%d\n", getpid());
    CHECK(strstr(buf, want) != NULL && strncmp(buf, "Name:\tprocfs", 12) == 0);
    CHECK(strstr(buf, "\nVmRSS:") != NULL && strstr(buf, "\nThreads:\t1\n") != NULL);

    size_t n = slurp("/proc/self/cmdline", buf, sizeof buf);
    CHECK(n == strlen(argv[0]) + 1 + strlen(argv[1]) + 1);
    CHECK(strcmp(buf, argv[0]) == 0 && strcmp(buf + strlen(argv[0]) + 1, "check") == 0);

    n = slurp("/proc/self/environ", buf, sizeof buf);
    int seen = 0;
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1) seen |= strcmp(buf + i, "VMRR_PROBE=42") == 0;
    CHECK(seen && strcmp(getenv("VMRR_PROBE"), "42") == 0);

    slurp("/proc/self/comm", buf, sizeof buf);
    const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    snprintf(want, sizeof want, "%.15s\n", base);                  /* TASK_COMM_LEN - 1 */
    CHECK(strcmp(buf, want) == 0);

    slurp("/proc/self/limits", buf, sizeof buf);
    CHECK(strstr(buf, "Max open files") != NULL && strstr(buf, "Max stack size") != NULL);

    /* memory and CPUs agree with sysinfo and sched_getaffinity */
    struct sysinfo si;
    CHECK(sysinfo(&si) == 0);
    slurp("/proc/meminfo", buf, sizeof buf);
    unsigned long total_kb = 0;
    CHECK(sscanf(buf, "MemTotal: %lu kB", &total_kb) == 1);
    CHECK(total_kb == (unsigned long)((unsigned long long)si.totalram * si.mem_unit >> 10));
    slurp("/proc/cpuinfo", buf, sizeof buf);
    int processors = 0;
    for (char *p = buf; (p = strstr(p, "processor")) != NULL; p++) processors++;
    CHECK(processors == 1);
    CHECK(strstr(buf, " avx") == NULL && strstr(buf, "sse4_2") != NULL);
    /* the flags agree with what CPUID says */
    unsigned eax, ebx, ecx, edx;
    CHECK(__get_cpuid(1, &eax, &ebx, &ecx, &edx));
    static const struct { const char *name; int bit; } ecx_flags[] = {
        {" pni", 0}, {" ssse3", 9}, {" cx16", 13}, {" sse4_1", 19}, {" sse4_2", 20}, {" popcnt", 23},
        {" aes", 25}, {" avx", 28}, {" rdrand", 30}};
    for (unsigned i = 0; i < sizeof ecx_flags / sizeof ecx_flags[0]; i++) {
        int listed = strstr(buf, ecx_flags[i].name) != NULL;
        if (listed != !!(ecx & (1u << ecx_flags[i].bit))) printf("cpuinfo and CPUID disagree on%s\n", ecx_flags[i].name);
        CHECK(listed == !!(ecx & (1u << ecx_flags[i].bit)));
    }
    CHECK(get_nprocs() == 1 && sysconf(_SC_NPROCESSORS_ONLN) == 1);

    /* links: cwd, exe, fds */
    ssize_t len = readlink("/proc/self/cwd", link, sizeof link - 1);
    CHECK(len > 0);
    link[len] = 0;
    CHECK(getcwd(buf, sizeof buf) != NULL && strcmp(buf, link) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    snprintf(want, sizeof want, "/proc/self/fd/%d", p[0]);
    len = readlink(want, link, sizeof link - 1);
    CHECK(len > 0);
    link[len] = 0;
    CHECK(strncmp(link, "pipe:[", 6) == 0);
    snprintf(want, sizeof want, "%d", p[1]);
    CHECK(dir_has("/proc/self/fd", "0") && dir_has("/proc/self/fd", want));
    CHECK(dir_has("/proc/self", "maps") && dir_has("/proc/self", "exe"));
    struct stat st;
    CHECK(stat("/proc/self/maps", &st) == 0 && S_ISREG(st.st_mode));
    CHECK(lstat("/proc/self/exe", &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(stat("/proc/self/exe", &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 1000);
    CHECK(stat("/proc/self", &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(open("/proc/self/no-such-file", O_RDONLY) == -1 && errno == ENOENT);
    CHECK(open("/proc/self/maps", O_WRONLY) == -1 && errno == EACCES);
    slurp("/sys/devices/system/cpu/online", buf, sizeof buf);
    CHECK(strcmp(buf, "0\n") == 0);
    printf("PASS procfs\n");
    return 0;
}
