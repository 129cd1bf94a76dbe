/* Memory several processes share: System V segments and semaphores, POSIX shared memory
 * (shm_open) and a memfd mapped by unrelated processes (the child execs first), anonymous
 * MAP_SHARED memory touched first after the fork. Prints the same natively and under vmrr. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

union semun { int val; struct semid_ds *buf; unsigned short *array; };

static int sem(int id, int num, int op, int flags) {
    struct sembuf b = {(unsigned short)num, (short)op, (short)flags};
    return semop(id, &b, 1);
}

static int child_status(pid_t pid) {
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void sysv_shm(void) {
    int id = shmget(IPC_PRIVATE, 3 * 4096 + 100, IPC_CREAT | 0600);
    CHECK(id >= 0);
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    strcpy(p, "before fork");
    pid_t pid = fork();
    if (pid == 0) {
        char *q = shmat(id, NULL, 0);              /* a second attachment, elsewhere */
        CHECK(q != (void *)-1 && q != p);
        CHECK(strcmp(q, "before fork") == 0);
        strcpy(q + 2 * 4096, "child wrote page 2");  /* a page nobody touched before the fork */
        strcpy(p + 4096, "through the inherited attachment");
        struct shmid_ds ds;
        CHECK(shmctl(id, IPC_STAT, &ds) == 0);
        printf("child: segsz %zu nattch %lu\n", (size_t)ds.shm_segsz, (unsigned long)ds.shm_nattch);
        CHECK(shmdt(q) == 0);
        CHECK(shmdt(q) == -1 && errno == EINVAL);
        fflush(stdout);
        _exit(0);
    }
    CHECK(child_status(pid) == 0);
    printf("parent sees: %s / %s\n", p + 2 * 4096, p + 4096);
    struct shmid_ds ds;
    CHECK(shmctl(id, IPC_STAT, &ds) == 0);
    printf("after the child: nattch %lu, cpid is me %d, lpid is the child %d\n", (unsigned long)ds.shm_nattch,
           ds.shm_cpid == getpid(), ds.shm_lpid == pid);
    CHECK(shmctl(id, IPC_RMID, NULL) == 0);
    strcpy(p, "still mapped after IPC_RMID");
    printf("%s\n", p);
    CHECK(shmctl(id, IPC_STAT, &ds) == 0);
    printf("removed: mode has SHM_DEST %d\n", (ds.shm_perm.mode & SHM_DEST) != 0);
    CHECK(shmdt(p) == 0);
    CHECK(shmat(id, NULL, 0) == (void *)-1 && errno == EINVAL);

    key_t key = 0x5600000 + getpid();                 /* unique on this host: keys are global natively */
    int a = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(a >= 0);
    CHECK(shmget(key, 4096, 0600) == a);
    CHECK(shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600) == -1 && errno == EEXIST);
    CHECK(shmget(key, 8192, 0600) == -1 && errno == EINVAL);
    CHECK(shmget(key + 1, 4096, 0600) == -1 && errno == ENOENT);
    char *r = shmat(a, NULL, SHM_RDONLY);
    CHECK(r != (void *)-1 && r[0] == 0);
    CHECK(shmctl(a, IPC_RMID, NULL) == 0);
    CHECK(shmget(key, 4096, 0600) == -1 && errno == ENOENT);
    CHECK(shmdt(r) == 0);
    printf("keyed segment: found again, EEXIST, EINVAL, ENOENT after removal\n");
}

static void sysv_sem(void) {
    int id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    CHECK(id >= 0);
    union semun arg = {.val = 0};
    CHECK(semctl(id, 0, SETVAL, arg) == 0);
    CHECK(sem(id, 0, -1, IPC_NOWAIT) == -1 && errno == EAGAIN);
    struct timespec ts = {0, 20 * 1000 * 1000};
    struct sembuf down = {0, -1, 0};
    CHECK(semtimedop(id, &down, 1, &ts) == -1 && errno == EAGAIN);
    pid_t pid = fork();
    if (pid == 0) {
        CHECK(sem(id, 0, -1, 0) == 0);              /* waits for the parent's post */
        CHECK(sem(id, 1, 5, SEM_UNDO) == 0);        /* undone when this process exits */
        printf("child: got the semaphore, sem1 %d\n", semctl(id, 1, GETVAL));
        fflush(stdout);
        _exit(0);
    }
    while (semctl(id, 0, GETNCNT) != 1)
        sched_yield();
    printf("parent: one process waits (GETNCNT %d, GETZCNT %d)\n", semctl(id, 0, GETNCNT), semctl(id, 0, GETZCNT));
    CHECK(sem(id, 0, 1, 0) == 0);
    CHECK(child_status(pid) == 0);
    unsigned short values[2];
    arg.array = values;
    CHECK(semctl(id, 0, GETALL, arg) == 0);
    printf("after the child exits: sem0 %d, sem1 %d (SEM_UNDO), sempid is the child %d\n", values[0], values[1],
           semctl(id, 1, GETPID) == pid);
    pid = fork();
    if (pid == 0) {
        int r = sem(id, 1, -1, 0);                   /* waits until the set is removed */
        printf("child: semop after IPC_RMID: %d %s\n", r, r ? strerror(errno) : "");
        fflush(stdout);
        _exit(0);
    }
    while (semctl(id, 1, GETNCNT) != 1)
        sched_yield();
    CHECK(semctl(id, 0, IPC_RMID) == 0);
    CHECK(child_status(pid) == 0);
    CHECK(semctl(id, 0, GETVAL) == -1 && errno == EINVAL);
}

static void posix_shm(const char *self) {
    char name[64];
    snprintf(name, sizeof name, "/vmrr-sharedmem-%d", getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, 8192) == 0);
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    strcpy(p, "from the parent");
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "shm-child", name, (char *)NULL);
        _exit(99);
    }
    CHECK(child_status(pid) == 0);
    printf("parent sees what the exec'd child wrote: %s\n", p + 4096);
    CHECK(pwrite(fd, "written with pwrite", 20, 200) == 20);
    printf("the mapping shows a pwrite: %s\n", p + 200);
    CHECK(munmap(p, 8192) == 0);
    char *again = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(again != MAP_FAILED);
    printf("a new mapping still has: %s / %s\n", again, again + 4096);
    CHECK(munmap(again, 8192) == 0);
    close(fd);
    CHECK(shm_unlink(name) == 0);
}

static int shm_child(const char *name) {
    int fd = shm_open(name, O_RDWR, 0);
    CHECK(fd >= 0);
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    CHECK(strcmp(p, "from the parent") == 0);
    strcpy(p + 4096, "from the exec'd child");
    return 0;
}

static void memfd(const char *self) {
    int fd = memfd_create("shared", 0);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, 4096) == 0);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fd);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "memfd-child", arg, (char *)NULL);
        _exit(99);
    }
    CHECK(child_status(pid) == 0);
    char *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    printf("memfd after the child: %s\n", p);
    char buf[32] = {0};
    CHECK(pread(fd, buf, 5, 0) == 5);
    close(fd);
}

static int memfd_child(int fd) {
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    strcpy(p, "the child's memfd mapping");
    return 0;
}

static void big_anonymous(void) {
    size_t size = (size_t)256 << 20;                 /* touched in one page only: never populated whole */
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(p != MAP_FAILED);
    pid_t pid = fork();
    if (pid == 0) {
        strcpy(p + size / 2, "touched first by the child");
        _exit(0);
    }
    CHECK(child_status(pid) == 0);
    printf("256 MiB MAP_SHARED, a page the child touched first: %s\n", p + size / 2);
    CHECK(munmap(p, size) == 0);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "shm-child") == 0)
        return shm_child(argv[2]);
    if (argc == 3 && strcmp(argv[1], "memfd-child") == 0)
        return memfd_child(atoi(argv[2]));
    setvbuf(stdout, NULL, _IONBF, 0);
    sysv_shm();
    sysv_sem();
    posix_shm(argv[0]);
    memfd(argv[0]);
    big_anonymous();
    printf("PASS sharedmem\n");
    return 0;
}
