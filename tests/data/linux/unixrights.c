/* Descriptors passed with SCM_RIGHTS over a named AF_UNIX socket (a server that accepted a
 * child's connection, not a socketpair): a pipe's write end (the reader sees EOF only when
 * every holder closed it), a file whose offset the two processes share, an eventfd; a
 * control buffer too small (MSG_CTRUNC); plain messages in between. Prints the same
 * natively and under vmrr. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

static void send_fds(int sock, const char *text, const int *fds, int n) {
    char control[CMSG_SPACE(4 * sizeof(int))] = {0};
    struct iovec iov = {(void *)text, strlen(text)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    }
    CHECK(sendmsg(sock, &msg, 0) == (ssize_t)strlen(text));
}

/* One message: its text, and up to 4 descriptors into fds; returns how many, or -1 if cut. */
static int recv_fds(int sock, char *text, size_t size, int *fds, size_t room) {
    char control[CMSG_SPACE(4 * sizeof(int))] = {0};
    struct iovec iov = {text, size - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = room};
    ssize_t got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    CHECK(got > 0);
    text[got] = 0;
    if (msg.msg_flags & MSG_CTRUNC)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL)
        return 0;
    CHECK(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS);
    int n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    memcpy(fds, CMSG_DATA(c), n * sizeof(int));
    for (int i = 0; i < n; i++)
        CHECK(fcntl(fds[i], F_GETFD) == FD_CLOEXEC);
    return n;
}

static void ack(int sock) { CHECK(write(sock, "k", 1) == 1); }
static void wait_ack(int sock) { char c; CHECK(read(sock, &c, 1) == 1 && c == 'k'); }

static int child(const char *path, const char *file) {
    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, path);
    CHECK(connect(sock, (struct sockaddr *)&addr, sizeof addr) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    send_fds(sock, "a pipe", &p[1], 1);
    close(p[1]);
    char buf[128] = {0};
    ssize_t n, total = 0;
    while ((n = read(p[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    printf("child read through the pipe until EOF: %s", buf);
    wait_ack(sock);
    send_fds(sock, "plain", NULL, 0);
    wait_ack(sock);
    int f = open(file, O_RDONLY);
    int e = eventfd(5, 0);
    CHECK(f >= 0 && e >= 0);
    int two[2] = {f, e};
    send_fds(sock, "a file and an eventfd", two, 2);
    wait_ack(sock);
    printf("child's offset after the server read: %ld\n", (long)lseek(f, 0, SEEK_CUR));
    send_fds(sock, "too many for the buffer", two, 2);
    wait_ack(sock);
    int q[2];
    CHECK(pipe(q) == 0);
    send_fds(sock, "read, not recvmsg", &q[1], 1);
    close(q[1]);
    wait_ack(sock);
    printf("child: the pipe's reader sees EOF after the server's read(): %zd\n", read(q[0], buf, 1));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "child") == 0)
        return child(argv[2], argv[3]);
    setvbuf(stdout, NULL, _IONBF, 0);
    char path[108], file[108];
    snprintf(path, sizeof path, "/tmp/vmrr-rights-%d.sock", getpid());
    snprintf(file, sizeof file, "/tmp/vmrr-rights-%d.txt", getpid());
    int w = open(file, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    CHECK(w >= 0 && write(w, "0123456789", 10) == 10);
    close(w);
    unlink(path);
    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, path);
    CHECK(bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(listener, 1) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        execl(argv[0], argv[0], "child", path, file, (char *)NULL);
        _exit(99);
    }
    int sock = accept(listener, NULL, NULL);
    CHECK(sock >= 0);
    char text[64];
    int fds[4];
    int n = recv_fds(sock, text, sizeof text, fds, CMSG_SPACE(4 * sizeof(int)));
    printf("server got \"%s\" with %d descriptor\n", text, n);
    CHECK(n == 1);
    CHECK(write(fds[0], "hello from the server\n", 22) == 22);
    close(fds[0]);
    ack(sock);
    n = recv_fds(sock, text, sizeof text, fds, CMSG_SPACE(4 * sizeof(int)));
    printf("server got \"%s\" with %d descriptors\n", text, n);
    ack(sock);
    n = recv_fds(sock, text, sizeof text, fds, CMSG_SPACE(4 * sizeof(int)));
    printf("server got \"%s\" with %d descriptors\n", text, n);
    CHECK(n == 2);
    char four[5] = {0};
    CHECK(read(fds[0], four, 4) == 4);
    uint64_t counter;
    CHECK(read(fds[1], &counter, 8) == 8);
    printf("server read %s from the file, %lu from the eventfd\n", four, (unsigned long)counter);
    close(fds[0]);
    close(fds[1]);
    ack(sock);
    n = recv_fds(sock, text, sizeof text, fds, CMSG_SPACE(sizeof(int)) - 8);
    printf("server got \"%s\": %s\n", text, n < 0 ? "MSG_CTRUNC" : "descriptors");
    ack(sock);
    ssize_t got = read(sock, text, 17);
    CHECK(got == 17);
    text[got] = 0;
    printf("server read() \"%s\", which closes what came with it\n", text);
    ack(sock);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink(path);
    unlink(file);
    printf("PASS unixrights\n");
    return 0;
}
