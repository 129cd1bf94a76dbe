/* Processes for the gdb tests (tests/functional/test_gdb_processes.py).
 *
 * No argument: the parent forks; the child computes, writes a global (copy-on-write: the
 * parent's copy keeps its value) and exits 7; the parent waits. Prints "PASS gdbforks".
 * "exec": the parent vforks; the child execs this program again with "execd", which
 * computes and exits 9; the parent waits. Prints "PASS gdbforks exec". */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

int shared = 1;                 /* after the fork: 1 in the parent, 42 in the child */
volatile int reported;

__attribute__((noinline)) int child_sum(int n)
{
    int sum = 0;
    for (int i = 1; i <= n; i++)
        sum += i;
    return sum;
}

__attribute__((noinline)) void child_report(int sum)
{
    reported = sum;             /* the child stops here with shared == 42 */
}

__attribute__((noinline)) void parent_done(int status)
{
    reported = status;
}

__attribute__((noinline)) int execd_work(int n)
{
    shared = n * 3;             /* only the exec'd program runs this */
    return shared;
}

static int wait_for(pid_t pid)
{
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "execd") == 0)
        return execd_work(7) == 21 ? 9 : 1;
    if (argc > 1 && strcmp(argv[1], "exec") == 0) {
        pid_t pid = vfork();
        CHECK(pid >= 0);
        if (pid == 0) {
            execl(argv[0], argv[0], "execd", (char *)NULL);
            _exit(2);
        }
        CHECK(wait_for(pid) == 9);
        printf("PASS gdbforks exec\n");
        return 0;
    }
    shared = 1;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        shared = 42;
        int sum = child_sum(10);
        child_report(sum);
        _exit(sum == 55 && shared == 42 ? 7 : 1);
    }
    int status = wait_for(pid);
    CHECK(status == 7);
    CHECK(shared == 1);
    parent_done(status);
    printf("PASS gdbforks\n");
    return 0;
}
