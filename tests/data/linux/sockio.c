/* read and write on sockets along every path: the native hook (vmm/linux/fastsys.py)
 * moves the bytes when the host socket has data or room now; Python does the rest
 * (nothing there yet, the end, a closed peer, more than 64 KiB, a bad buffer). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>
#include "check.h"

static uint32_t sum(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void *echo(void *arg)
{
    int fd = *(int *)arg;
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)            /* blocks: Python, then native */
        CHECK(write(fd, buf, (size_t)n) == n);
    CHECK(n == 0);
    return NULL;
}

int main(void)
{
    int sv[2];
    char buf[64];
    signal(SIGPIPE, SIG_IGN);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[0], "hello", 5) == 5);
    CHECK(read(sv[1], buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == -1 && errno == EAGAIN);

    /* A buffer across a page boundary, both ways. */
    unsigned char *pages = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(pages != MAP_FAILED);
    unsigned char *across = pages + 4096 - 10;
    for (int i = 0; i < 40; i++)
        across[i] = (unsigned char)(i * 7);
    CHECK(write(sv[0], across, 40) == 40);
    memset(across, 0, 40);
    CHECK(read(sv[1], across, 40) == 40);
    for (int i = 0; i < 40; i++)
        CHECK(across[i] == (unsigned char)(i * 7));

    /* More than 64 KiB at once, until the socket is full, then all of it back. */
    size_t big = 300000, sent = 0, got = 0;
    unsigned char *out = malloc(big), *in = malloc(big);
    for (size_t i = 0; i < big; i++)
        out[i] = (unsigned char)(i * 2654435761u >> 13);
    CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
    while (sent < big || got < big) {
        if (sent < big) {
            ssize_t n = write(sv[0], out + sent, big - sent);
            CHECK(n > 0 || errno == EAGAIN);
            if (n > 0)
                sent += (size_t)n;
        }
        ssize_t n = read(sv[1], in + got, got < big ? (big - got < 5000 ? big - got : 5000) : 1);
        CHECK(n > 0 || errno == EAGAIN);
        if (n > 0)
            got += (size_t)n;
    }
    CHECK(sum(in, big) == sum(out, big));

    /* The end: a shut-down writer reads as 0, a closed peer as EPIPE. */
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    CHECK(close(sv[1]) == 0);
    CHECK(write(sv[0], "x", 1) == -1 && errno == EPIPE);
    CHECK(close(sv[0]) == 0);

    /* TCP over loopback with an echo thread: a thousand round trips. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(lfd, 4) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&addr, &len) == 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&addr, sizeof addr) == 0);
    int s = accept(lfd, NULL, NULL);
    CHECK(s >= 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, echo, &s) == 0);
    uint32_t h = 0;
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(buf, sizeof buf, "message %d", i);
        CHECK(write(c, buf, (size_t)n) == n);
        int have = 0;
        while (have < n) {
            ssize_t r = read(c, buf + 32 + have, (size_t)(n - have));
            CHECK(r > 0);
            have += (int)r;
        }
        CHECK(memcmp(buf, buf + 32, (size_t)n) == 0);
        h = h * 31 + sum((unsigned char *)buf, (size_t)n);
    }
    CHECK(shutdown(c, SHUT_WR) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("round trips %u\n", h);
    printf("PASS sockio\n");
    return 0;
}
