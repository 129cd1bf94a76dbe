/* A work queue with a real data race that crashes only on a rare interleaving: the
 * multi-threaded heisenbug of docs/heisenbug.md. Build with -pthread.
 * Usage: race [JOBS]   (default 1000)
 *
 * The producer thread makes JOBS jobs and hands each to the consumer thread through a
 * bounded queue (at most CAPACITY jobs; the producer waits while it is full, the consumer
 * while it is empty). Both sides take the queue's mutex, except for one "fast path" in
 * consumer(): when it sees exactly one job queued, it reasons that the producer only ever
 * touches the tail, reads the head job where it is without the lock (so the producer is
 * not held up while it works) and locks only to unlink it afterwards.
 *
 * The bug: the producer appends in two steps under the lock. reserve() links a new,
 * zeroed node into the queue and counts it; then the producer makes the job (make_job:
 * a malloc and two stores, about 70 instructions) and stores its pointer in the node.
 * Readers that take the lock never see the gap; the fast path can. If the producer is
 * interrupted inside make_job, on a queue that was empty, while the consumer is still
 * busy with the previous job, the consumer comes round, sees count == 1, takes the
 * half-made node at the head and reads through its NULL job pointer: SIGSEGV in
 * consumer(). Run natively on a two-core machine it survived 300 runs out of 300.
 *
 * Both threads block often (the queue holds 4 jobs), so neither ever runs the 200,000
 * instructions after which vmrr's default scheduler preempts a thread: that scheduler
 * switches only where a thread blocks, never in the gap, and the program always
 * completes. `vmrr record --chaos SEED` preempts after short random quanta and crashes
 * it for about half of all seeds.
 *
 * Prints "PASS race: JOBS jobs, checksum N" when the run survives.
 */
#include <pthread.h>
#include "check.h"

#define JOBS 1000
#define CAPACITY 4
#define WORK_ROUNDS 40           /* the consumer's work per job: a few hundred instructions */

struct job {
    long id;
    long value;
};

struct node {
    struct node *next;
    struct job *job;             /* NULL until the producer fills the reserved node in */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct node *head, *tail;
    int count;                   /* nodes linked in, filled in or not */
    int closed;                  /* the producer has made its last job */
} queue = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};

static long checksum;

/* Link a new, empty node at the tail and count it. The caller holds the lock and fills
 * the node in next. */
__attribute__((noinline)) static struct node *reserve(void) {
    struct node *n = calloc(1, sizeof *n);
    CHECK(n != NULL);
    if (queue.tail)
        queue.tail->next = n;
    else
        queue.head = n;
    queue.tail = n;
    queue.count++;
    return n;
}

/* Unlink the head node (the caller holds the lock and knows there is one). */
static struct node *unlink_head(void) {
    struct node *n = queue.head;
    queue.head = n->next;
    if (queue.head == NULL)
        queue.tail = NULL;
    queue.count--;
    pthread_cond_signal(&queue.not_full);
    return n;
}

__attribute__((noinline)) static struct job *make_job(long id) {
    struct job *job = malloc(sizeof *job);
    CHECK(job != NULL);
    job->id = id;
    job->value = id * 2654435761L % 1000003;
    return job;
}

__attribute__((noinline)) static void *producer(void *arg) {
    long jobs = *(long *)arg;
    for (long id = 1; id <= jobs; id++) {
        pthread_mutex_lock(&queue.lock);
        while (queue.count == CAPACITY)
            pthread_cond_wait(&queue.not_full, &queue.lock);
        struct node *n = reserve();
        n->job = make_job(id);   /* the racing write: the node was visible before this */
        pthread_cond_signal(&queue.not_empty);
        pthread_mutex_unlock(&queue.lock);
    }
    pthread_mutex_lock(&queue.lock);
    queue.closed = 1;
    pthread_cond_signal(&queue.not_empty);
    pthread_mutex_unlock(&queue.lock);
    return NULL;
}

/* What the consumer does with a job's value: some arithmetic, a few hundred instructions. */
__attribute__((noinline)) static long work(long value) {
    long h = value;
    for (int i = 0; i < WORK_ROUNDS; i++)
        h = (h * 31 + i) % 1000000007;
    return h;
}

__attribute__((noinline)) static void *consumer(void *arg) {
    long *done = arg;
    for (;;) {
        if (queue.count == 1) {
            /* The fast path, without the lock: "with one job queued the producer only
             * touches the tail, so the head is ours". */
            struct node *n = queue.head;
            long value = n->job->value;      /* SIGSEGV here when n->job is still NULL */
            checksum += work(value);
            pthread_mutex_lock(&queue.lock);
            unlink_head();
            pthread_mutex_unlock(&queue.lock);
            free(n->job);
            free(n);
            ++*done;
            continue;
        }
        pthread_mutex_lock(&queue.lock);
        while (queue.count == 0 && !queue.closed)
            pthread_cond_wait(&queue.not_empty, &queue.lock);
        if (queue.count == 0) {
            pthread_mutex_unlock(&queue.lock);
            return NULL;
        }
        struct node *n = unlink_head();
        pthread_mutex_unlock(&queue.lock);
        checksum += work(n->job->value);
        free(n->job);
        free(n);
        ++*done;
    }
}

int main(int argc, char **argv) {
    pthread_t prod, cons;
    long jobs = argc > 1 ? atol(argv[1]) : JOBS, done = 0;
    CHECK(jobs > 0);
    CHECK(pthread_create(&cons, NULL, consumer, &done) == 0);
    CHECK(pthread_create(&prod, NULL, producer, &jobs) == 0);
    CHECK(pthread_join(prod, NULL) == 0);
    CHECK(pthread_join(cons, NULL) == 0);
    CHECK(done == jobs);
    printf("PASS race: %ld jobs, checksum %ld\n", jobs, checksum);
    return 0;
}
