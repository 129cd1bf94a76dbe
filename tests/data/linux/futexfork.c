/* Futexes are per process unless shared memory makes them common: after a fork, parent
 * and child each wait on "the same" condition variable (same address, different memory);
 * the child's waiter started first. The parent's signal must wake the parent's waiter
 * (a futex keyed by address alone would wake the child's and leave the parent's asleep).
 * Then a process-shared semaphore in MAP_SHARED memory, posted by the child, wakes the
 * parent: shared futexes across processes. */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int flag;
static int ready[2];

static void *waiter(void *arg) {
    pthread_mutex_lock(&lock);
    write(ready[1], "w", 1);                       /* waiting (the lock is released in wait) */
    while (!flag)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return arg;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pipe(ready);
    sem_t *sem = mmap(NULL, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    sem_init(sem, 1, 0);
    pid_t child = fork();
    if (child == 0) {                              /* a waiter of its own that nobody wakes */
        pthread_t t;
        pthread_create(&t, NULL, waiter, NULL);
        char c;
        read(ready[0], &c, 1);
        sem_post(sem);                             /* tell the parent: mine waits first */
        pthread_join(t, NULL);
        _exit(0);
    }
    sem_wait(sem);                                 /* woken by the child, across processes */
    pthread_t t;
    pthread_create(&t, NULL, waiter, NULL);
    char c;
    read(ready[0], &c, 1);
    pthread_mutex_lock(&lock);
    pthread_mutex_unlock(&lock);                   /* the waiter is in pthread_cond_wait now */
    pthread_mutex_lock(&lock);
    flag = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    pthread_join(t, NULL);
    printf("the parent's waiter woke\n");
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
    printf("child killed: %d\nPASS futexfork\n", WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    return 0;
}
