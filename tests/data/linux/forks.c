/* Processes: fork and copy-on-write, pipes and descriptors shared across fork, wait
 * statuses, vfork + exec, a child that crashes, process groups and kill, MAP_SHARED memory,
 * signals between processes and the masks of sigsuspend/ppoll/pselect/epoll_pwait,
 * credentials. Prints only what is the same on every run (no pids): the test compares
 * its output with the native run's, byte for byte. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

static char data[64] = "original";
static volatile int got;

static void on_usr1(int s) {
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    got = s + 100 * sigismember(&now, SIGUSR1);
}

static void copy_on_write(void) {
    char *buf = malloc(1 << 20);
    memset(buf, 'a', 1 << 20);
    int fds[2];
    pipe(fds);
    pid_t p = fork();
    if (p == 0) {
        close(fds[0]);
        buf[0] = 'b';
        data[0] = 'C';
        char msg[64];
        int n = snprintf(msg, sizeof msg, "child sees %c%c %s ppid-ok=%d", buf[0], buf[1], data, getppid() > 1);
        write(fds[1], msg, n);
        _exit(7);
    }
    close(fds[1]);
    char in[128];
    int n = read(fds[0], in, sizeof in - 1);
    in[n > 0 ? n : 0] = 0;
    int st;
    pid_t w = waitpid(p, &st, 0);
    printf("parent got '%s'; parent sees %c %s; wait ok=%d exited=%d code=%d\n", in, buf[0], data, w == p,
           WIFEXITED(st), WEXITSTATUS(st));
    close(fds[0]);
    free(buf);
}

static void sequential_children(void) {
    printf("buffered before the forks\n");
    fflush(stdout);
    for (int i = 0; i < 5; i++) {
        pid_t c = fork();
        if (c == 0) {
            printf("kid %d\n", i);
            exit(i);                      /* flushes the kid's stdio */
        }
        int s;
        waitpid(c, &s, 0);
        printf("reaped %d status %d\n", i, WEXITSTATUS(s));
    }
}

static void shared_offset_and_cloexec(void) {
    char path[] = "/tmp/vmrr-forks-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    write(fd, "parent1\n", 8);
    pid_t c = fork();
    if (c == 0) {
        write(fd, "child\n", 6);          /* the same description: the offset moves for both */
        _exit(0);
    }
    waitpid(c, NULL, 0);
    write(fd, "parent2\n", 8);
    char back[64] = {0};
    pread(fd, back, sizeof back - 1, 0);
    printf("file: %s", back);
    printf("offset %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    close(fd);
}

static void vfork_exec(void) {
    fflush(stdout);
    pid_t c = vfork();
    if (c == 0) {
        char *argv[] = {"/bin/echo", "echo", "ran", "after", "vfork", NULL};
        execv(argv[0], argv);
        _exit(127);
    }
    int s;
    waitpid(c, &s, 0);
    printf("vfork+exec status %d\n", WEXITSTATUS(s));
    c = fork();
    if (c == 0) {
        execl("/no/such/program", "x", (char *)NULL);
        _exit(42);                        /* exec failed: ENOENT */
    }
    waitpid(c, &s, 0);
    printf("failed exec status %d\n", WEXITSTATUS(s));
}

static void crash_and_kill(void) {
    pid_t c = fork();
    if (c == 0) {
        volatile int *null = NULL;
        *null = 1;                        /* SIGSEGV ends the child, not the run */
        _exit(0);
    }
    int s;
    waitpid(c, &s, 0);
    printf("crashed child: signaled=%d sig=%d\n", WIFSIGNALED(s), WTERMSIG(s));
    pid_t group[2];
    for (int i = 0; i < 2; i++) {
        group[i] = fork();
        if (group[i] == 0) {
            setpgid(0, 0 == i ? 0 : group[0]);
            for (;;)
                pause();
        }
        setpgid(group[i], group[0]);
    }
    kill(-group[0], SIGTERM);             /* the whole group */
    for (int i = 0; i < 2; i++) {
        waitpid(group[i], &s, 0);
        printf("group member %d: sig=%d\n", i, WTERMSIG(s));
    }
    siginfo_t info;
    memset(&info, 0, sizeof info);
    printf("waitid with no children: %d\n", waitid(P_ALL, 0, &info, WEXITED | WNOHANG));
}

static void shared_memory(void) {
    int *shared = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int *private = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    shared[0] = 1;                        /* touched before the fork; shared[4096] is not */
    pid_t c = fork();
    if (c == 0) {
        shared[0] = 2;
        shared[4096] = 3;
        private[0] = 4;
        _exit(0);
    }
    waitpid(c, NULL, 0);
    printf("MAP_SHARED: %d %d, MAP_PRIVATE: %d\n", shared[0], shared[4096], private[0]);
    int fd = memfd_create("forks", MFD_CLOEXEC);  /* an anonymous file, mapped shared across a fork */
    ftruncate(fd, 8192);
    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    c = fork();
    if (c == 0) {
        strcpy(m + 4096, "from the child");
        _exit(0);
    }
    waitpid(c, NULL, 0);
    write(fd, "written", 7);
    char back[8] = {0};
    pread(fd, back, 7, 0);
    printf("memfd: %s; file: %s; size %ld\n", m + 4096, back, (long)lseek(fd, 0, SEEK_END));
    close(fd);
}

static void signal_masks(void) {
    signal(SIGUSR1, on_usr1);
    sigset_t block, old, empty, now;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    sigemptyset(&empty);
    pid_t parent = getpid();
    pid_t c = fork();
    if (c == 0) {
        kill(parent, SIGUSR1);
        _exit(0);
    }
    got = 0;
    int r = sigsuspend(&empty);
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("sigsuspend r=%d got=%d, blocked again=%d\n", r, got, sigismember(&now, SIGUSR1));
    waitpid(c, NULL, 0);
    int p[2];
    pipe(p);
    c = fork();
    if (c == 0) {
        usleep(1000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    struct pollfd pf = {p[0], POLLIN, 0};
    got = 0;
    r = ppoll(&pf, 1, NULL, &empty);
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("ppoll r=%d got=%d, blocked again=%d\n", r, got, sigismember(&now, SIGUSR1));
    waitpid(c, NULL, 0);
    got = 0;
    kill(getpid(), SIGUSR1);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    r = epoll_pwait(ep, &ev, 1, -1, &empty);
    printf("epoll_pwait r=%d got=%d\n", r, got);
    write(p[1], "x", 1);
    kill(getpid(), SIGUSR1);
    got = 0;
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    struct timespec ts = {1, 0};
    r = pselect(p[0] + 1, &rs, NULL, NULL, &ts, &empty);
    sigset_t pend;
    sigpending(&pend);
    printf("pselect r=%d got=%d, still pending=%d\n", r, got, sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("after unblocking got=%d\n", got);
}

static void credentials(void) {
    int root = geteuid() == 0;
    printf("uid is the user's: %d\n", getuid() == (uid_t)atoi(getenv("EXPECT_UID") ? getenv("EXPECT_UID") : "0"));
    if (!root) {
        printf("not root: setuid(0)=%d\n", setuid(0));
        return;
    }
    gid_t g[2] = {5, 7};
    int r = setgroups(2, g);
    printf("setgroups=%d", r);
    r = getgroups(0, NULL);
    printf(" ngroups=%d\n", r);
    r = setgid(65534);
    printf("setgid=%d", r);
    r = setuid(65534);
    printf(" setuid=%d", r);
    printf(" uid=%d euid=%d gid=%d\n", getuid(), geteuid(), getgid());
    r = setuid(0);
    printf("back to root=%d", r);
    r = setgroups(0, NULL);
    printf(" setgroups=%d", r);
    r = setresuid(-1, -1, -1);
    printf(" setresuid(-1...)=%d\n", r);
    int d = -1;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_GET_PDEATHSIG, &d);
    printf("pdeathsig=%d\n", d);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    copy_on_write();
    sequential_children();
    shared_offset_and_cloexec();
    vfork_exec();
    crash_and_kill();
    shared_memory();
    signal_masks();
    credentials();                        /* last: it drops root */
    printf("PASS forks\n");
    return 0;
}
