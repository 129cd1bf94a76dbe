/* Threads (pthread_create) and a spawned child (posix_spawnp): glibc makes both with clone3. */
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
extern char **environ;
static void *run(void *a) { return (void *)((long)a * 2); }
int main(void) {
    pthread_t t[4]; void *r; long sum = 0;
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, run, (void *)i);
    for (int i = 0; i < 4; i++) { pthread_join(t[i], &r); sum += (long)r; }
    printf("threads sum %ld\n", sum); fflush(stdout);
    pid_t pid; char *argv[] = {"echo", "spawned", NULL};
    int rc = posix_spawnp(&pid, "echo", NULL, NULL, argv, environ);
    int st; waitpid(pid, &st, 0);
    printf("spawn rc %d status %d\n", rc, st);
    return 0;
}
