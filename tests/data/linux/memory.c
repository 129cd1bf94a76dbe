/* Memory: brk, anonymous and file mappings, munmap, mprotect (with a SIGSEGV handler that
 * siglongjmp's out), mremap, madvise, thousands of mappings with alternating protections,
 * and an allocation larger than the machine's RAM. argv[1] is a scratch file path.
 * Prints "PASS memory". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include "check.h"

#define PAGE 4096
#define MANY 5000
#define SEPARATE 2500

static sigjmp_buf escape;
static volatile void *fault_addr;

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    (void)sig; (void)ctx;
    fault_addr = info->si_addr;
    siglongjmp(escape, 1);
}

/* 1 when touching *p (read or write) faults. */
static int faults(volatile char *p, int write) {
    fault_addr = NULL;
    if (sigsetjmp(escape, 1) == 0) {
        if (write) *p = 1; else (void)*p;
        return 0;
    }
    CHECK(fault_addr == (void *)p);
    return 1;
}

int main(int argc, char **argv) {
    CHECK(argc >= 2);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);

    /* The call-heavy parts come first: vmrr's replay scans the syscall events ahead of it
     * at every page fault (see test_linux_memory.py), so faults are cheaper near the end. */
    /* thousands of mprotect splits of one mapping, alternating protections */
    char *many = mmap(NULL, (size_t)MANY * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(many != MAP_FAILED);
    for (int i = 0; i < MANY; i += 8) many[(size_t)i * PAGE] = (char)i;   /* some pages present */
    for (int i = 1; i < MANY; i += 2) CHECK(mprotect(many + (size_t)i * PAGE, PAGE, PROT_READ) == 0);
    for (int i = 0; i < MANY; i += 50) {
        CHECK(many[(size_t)i * PAGE] == (i % 8 ? 0 : (char)i));
        CHECK(faults(many + (size_t)i * PAGE, 1) == (i & 1));
    }
    CHECK(faults(many + 4999 * (size_t)PAGE, 1) && !faults(many + 4998 * (size_t)PAGE, 1));
    CHECK(munmap(many, (size_t)MANY * PAGE) == 0);

    /* thousands of separate one-page mappings, alternating protections (unmapped lowest
     * first: vmrr's VMA list is linear, see the test) */
    static char *pages[SEPARATE];
    for (int i = 0; i < SEPARATE; i++) {
        pages[i] = mmap(NULL, PAGE, (i & 1) ? PROT_READ : PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(pages[i] != MAP_FAILED);
    }
    for (int i = 0; i < SEPARATE; i += 100) CHECK(faults(pages[i], 1) == (i & 1));
    for (int i = SEPARATE - 1; i >= 0; i--) CHECK(munmap(pages[i], PAGE) == 0);

    /* brk through malloc, and the break itself */
    void *brk0 = sbrk(0);
    char *small = malloc(1000);
    CHECK(small != NULL);
    memset(small, 'a', 1000);
    CHECK((char *)small < (char *)sbrk(0) && sbrk(0) >= brk0);   /* on the brk heap */
    CHECK(sbrk(1 << 20) != (void *)-1);
    char *top = (char *)sbrk(0) - 1;
    *top = 7;                                         /* the grown break is usable */
    CHECK(sbrk(-(1 << 20)) != (void *)-1);
    char *big = malloc(8 << 20);                      /* glibc mmaps this one */
    CHECK(big != NULL);
    memset(big, 'b', 8 << 20);
    free(big);
    free(small);

    /* anonymous private mapping: zero-filled, writable */
    char *anon = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(anon != MAP_FAILED && ((uintptr_t)anon & (PAGE - 1)) == 0);
    for (int i = 0; i < 16 * PAGE; i++) CHECK(anon[i] == 0);
    memset(anon, 'x', 16 * PAGE);

    /* mprotect to PROT_NONE: both reads and writes fault at the touched address */
    CHECK(mprotect(anon + 4 * PAGE, PAGE, PROT_NONE) == 0);
    CHECK(faults(anon + 4 * PAGE, 1));
    if (argc > 2 && strcmp(argv[2], "protnone-read") == 0) {
        /* a page touched before mprotect(PROT_NONE) must stop being readable */
        CHECK(faults(anon + 4 * PAGE + 123, 0));
        printf("PASS protnone-read\n");
        return 0;
    }
    CHECK(!faults(anon + 3 * PAGE, 1) && !faults(anon + 5 * PAGE, 1));
    CHECK(mprotect(anon + 4 * PAGE, PAGE, PROT_READ) == 0);
    CHECK(anon[4 * PAGE] == 'x' && !faults(anon + 4 * PAGE, 0) && faults(anon + 4 * PAGE, 1));
    CHECK(mprotect(anon + 4 * PAGE, PAGE, PROT_READ | PROT_WRITE) == 0);

    /* madvise(MADV_DONTNEED) on a private anonymous mapping gives zero pages back */
    CHECK(madvise(anon + 8 * PAGE, 2 * PAGE, MADV_DONTNEED) == 0);
    CHECK(anon[8 * PAGE] == 0 && anon[10 * PAGE - 1] == 0 && anon[10 * PAGE] == 'x');

    /* mremap: grow (may move), content kept, the new tail zeroed */
    anon[0] = 'F';
    char *grown = mremap(anon, 16 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
    CHECK(grown != MAP_FAILED);
    CHECK(grown[0] == 'F' && grown[16 * PAGE - 1] == 'x' && grown[16 * PAGE] == 0 && grown[64 * PAGE - 1] == 0);
    if (grown != anon) CHECK(faults(anon, 0));        /* the old range is gone */
    CHECK(mremap(grown, 64 * PAGE, 4 * PAGE, 0) == grown);   /* shrink in place */
    CHECK(faults(grown + 4 * PAGE, 0));

    /* munmap: the range faults afterwards */
    CHECK(munmap(grown, 4 * PAGE) == 0);
    CHECK(faults(grown, 0));
    CHECK(munmap(grown, 4 * PAGE) == 0);              /* unmapping nothing is not an error */
    CHECK(munmap((void *)1, PAGE) == -1 && errno == EINVAL);

    /* file-backed mapping of a file the program writes */
    int fd = open(argv[1], O_CREAT | O_TRUNC | O_RDWR, 0644);
    CHECK(fd >= 0);
    static char content[3 * PAGE];
    for (int i = 0; i < 3 * PAGE; i++) content[i] = 'A' + i % 26;
    CHECK(write(fd, content, sizeof content) == sizeof content);
    char *file = mmap(NULL, 3 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(file != MAP_FAILED);
    CHECK(memcmp(file, content, sizeof content) == 0);
    char *second = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 2 * PAGE);
    CHECK(second != MAP_FAILED && memcmp(second, content + 2 * PAGE, PAGE) == 0);
    second[0] = '!';                                  /* a private copy: the file is unchanged */
    CHECK(file[2 * PAGE] == content[2 * PAGE]);
    CHECK(faults(file, 1));                           /* mapped read-only */
    CHECK(munmap(file, 3 * PAGE) == 0 && munmap(second, PAGE) == 0);
    CHECK(close(fd) == 0);
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, 99, 0) == MAP_FAILED && errno == EBADF);

    /* more than the machine has: malloc says so (the test runs with --mem 256M) */
    errno = 0;
    void *huge = malloc((size_t)1 << 30);
    CHECK(huge == NULL && errno == ENOMEM);
    CHECK(mmap(NULL, (size_t)1 << 30, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED);
    CHECK(errno == ENOMEM);

    printf("PASS memory\n");
    return 0;
}
