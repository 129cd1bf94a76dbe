/* Files: every file system call glibc programs make, checked against what Linux does.
 * argv[1] is a scratch directory prepared by the test: it holds "input.txt" (known content)
 * and "link" (a symlink to input.txt). Prints "PASS files". */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>
#include "check.h"

static const char INPUT[] = "line one\nline two\nline three\n";

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    char buf[256], cwd[4096];
    CHECK(argc == 2);
    CHECK(chdir(argv[1]) == 0);
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(strcmp(cwd, argv[1]) == 0);

    /* read, pread, readv, lseek on the prepared input */
    int fd = open("input.txt", O_RDONLY);
    CHECK(fd >= 3);
    CHECK(read(fd, buf, 9) == 9 && memcmp(buf, "line one\n", 9) == 0);
    CHECK(pread(fd, buf, 8, 9) == 8 && memcmp(buf, "line two", 8) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 9);               /* pread leaves the offset alone */
    char a[5], b[4];
    struct iovec iov[2] = {{a, 5}, {b, 4}};
    CHECK(readv(fd, iov, 2) == 9 && memcmp(a, "line ", 5) == 0 && memcmp(b, "two\n", 4) == 0);
    CHECK(lseek(fd, -6, SEEK_END) == (off_t)sizeof INPUT - 1 - 6);
    CHECK(read(fd, buf, sizeof buf) == 6 && memcmp(buf, "three\n", 6) == 0);
    CHECK(read(fd, buf, sizeof buf) == 0);

    /* fstat, stat, newfstatat, statx agree */
    struct stat st, st2;
    CHECK(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == (off_t)sizeof INPUT - 1);
    CHECK(stat("input.txt", &st2) == 0 && st2.st_ino == st.st_ino && st2.st_size == st.st_size);
    int dirfd = open(".", O_RDONLY | O_DIRECTORY);
    CHECK(dirfd >= 0);
    CHECK(fstatat(dirfd, "input.txt", &st2, 0) == 0 && st2.st_ino == st.st_ino);
    struct statx stx;
    CHECK(statx(dirfd, "input.txt", 0, STATX_BASIC_STATS, &stx) == 0);
    CHECK(stx.stx_size == (unsigned long long)st.st_size && stx.stx_ino == st.st_ino);
    CHECK(S_ISREG(stx.stx_mode));
    CHECK(stat("missing", &st2) == -1 && errno == ENOENT);
    CHECK(lstat("link", &st2) == 0 && S_ISLNK(st2.st_mode));
    CHECK(stat("link", &st2) == 0 && S_ISREG(st2.st_mode) && st2.st_ino == st.st_ino);

    /* dup, dup2, dup3, fcntl */
    int d1 = dup(fd);
    CHECK(d1 > fd);
    CHECK(lseek(d1, 0, SEEK_SET) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 0);                /* duplicates share the offset */
    CHECK(dup2(fd, 20) == 20);
    CHECK(dup3(fd, 21, O_CLOEXEC) == 21);
    CHECK(fcntl(21, F_GETFD) == FD_CLOEXEC);
    CHECK(fcntl(20, F_GETFD) == 0);
    CHECK(fcntl(20, F_SETFD, FD_CLOEXEC) == 0 && fcntl(20, F_GETFD) == FD_CLOEXEC);
    CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
    int d2 = fcntl(fd, F_DUPFD, 30);
    CHECK(d2 == 30);
    CHECK(dup3(fd, fd, 0) == -1 && errno == EINVAL);
    CHECK(close(20) == 0 && close(21) == 0 && close(d2) == 0 && close(d1) == 0);
    CHECK(close(20) == -1 && errno == EBADF);
    CHECK(read(99, buf, 1) == -1 && errno == EBADF);

    /* ioctl TCGETS on a regular file: not a terminal */
    struct termios tio;
    CHECK(ioctl(fd, TCGETS, &tio) == -1 && errno == ENOTTY);
    CHECK(isatty(fd) == 0);
    CHECK(close(fd) == 0);

    /* write, pwrite, writev, then read back */
    int out = open("out.txt", O_CREAT | O_TRUNC | O_RDWR, 0644);
    CHECK(out >= 0);
    CHECK(write(out, "hello world\n", 12) == 12);
    CHECK(pwrite(out, "HELLO", 5, 0) == 5);
    struct iovec wv[2] = {{"abc", 3}, {"def\n", 4}};
    CHECK(writev(out, wv, 2) == 7);
    CHECK(lseek(out, 0, SEEK_SET) == 0);
    CHECK(read(out, buf, sizeof buf) == 19 && memcmp(buf, "HELLO world\nabcdef\n", 19) == 0);
    CHECK(fstat(out, &st) == 0 && st.st_size == 19);
    CHECK((fcntl(out, F_GETFL) & O_ACCMODE) == O_RDWR);
    CHECK(close(out) == 0);
    CHECK(open("missing", O_RDONLY) == -1 && errno == ENOENT);
    CHECK(open("out.txt", O_CREAT | O_EXCL | O_WRONLY, 0644) == -1 && errno == EEXIST);

    /* mkdir, openat relative to a directory fd, rename, unlink */
    CHECK(mkdir("sub", 0755) == 0);
    CHECK(mkdir("sub", 0755) == -1 && errno == EEXIST);
    int sub = open("sub", O_RDONLY | O_DIRECTORY);
    CHECK(sub >= 0);
    int inner = openat(sub, "inner.txt", O_CREAT | O_WRONLY, 0600);
    CHECK(inner >= 0 && write(inner, "x", 1) == 1 && close(inner) == 0);
    CHECK(access("sub/inner.txt", F_OK) == 0);
    CHECK(access("sub/nope", F_OK) == -1 && errno == ENOENT);
    CHECK(access("input.txt", R_OK) == 0);
    CHECK(rename("sub/inner.txt", "sub/moved.txt") == 0);
    CHECK(access("sub/inner.txt", F_OK) == -1 && access("sub/moved.txt", F_OK) == 0);
    CHECK(close(sub) == 0);

    /* readlink */
    ssize_t n = readlink("link", buf, sizeof buf);
    CHECK(n == 9 && memcmp(buf, "input.txt", 9) == 0);
    CHECK(readlink("input.txt", buf, sizeof buf) == -1 && errno == EINVAL);

    /* getdents64 through opendir/readdir */
    DIR *dir = opendir(".");
    CHECK(dir != NULL);
    char *names[16];
    int count = 0;
    struct dirent *ent;
    while ((ent = readdir(dir)) != NULL) {
        CHECK(count < 16);
        names[count++] = strdup(ent->d_name);
    }
    CHECK(closedir(dir) == 0);
    qsort(names, count, sizeof names[0], cmp);
    printf("entries:");
    for (int i = 0; i < count; i++) printf(" %s", names[i]);
    printf("\n");
    CHECK(count == 6);   /* . .. input.txt link out.txt sub */

    /* chdir into the subdirectory and back */
    CHECK(chdir("sub") == 0);
    CHECK(getcwd(buf, sizeof buf) != NULL && strlen(buf) > 4 && strcmp(buf + strlen(buf) - 4, "/sub") == 0);
    CHECK(unlink("moved.txt") == 0);
    CHECK(unlink("moved.txt") == -1 && errno == ENOENT);
    CHECK(chdir("..") == 0);
    CHECK(rmdir("sub") == 0);
    CHECK(unlink("out.txt") == 0);

    /* a pipe within the program */
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    CHECK(fcntl(p[0], F_GETFD) == FD_CLOEXEC);
    CHECK(write(p[1], "through the pipe", 16) == 16);
    CHECK(read(p[0], buf, sizeof buf) == 16 && memcmp(buf, "through the pipe", 16) == 0);
    CHECK(close(p[1]) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 0);              /* end of file once the writer is gone */
    CHECK(close(p[0]) == 0);

    printf("PASS files\n");
    return 0;
}
