/* The flight recorder's crashing program: works for argv[1] seconds, then crashes.
 * It reads argv[2] once at the start and again every half second (the same content: the
 * recorder captured it once, before a window that ends at the crash began), prints a
 * progress line with a checksum each time, and finally writes through a NULL pointer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned long checksum(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) { perror(path); exit(1); }
    unsigned long sum = 0;
    int c;
    while ((c = getc(f)) != EOF) sum = sum * 31 + (unsigned char)c;
    fclose(f);
    return sum;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: ringcrash SECONDS FILE\n"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = atof(argv[1]), start = now(), next = start;
    unsigned long first = checksum(argv[2]), work = 0;
    int round = 0;
    while (now() - start < seconds) {
        for (int i = 0; i < 20000; i++) work = work * 6364136223846793005UL + i;
        if (now() >= next) {
            unsigned long again = checksum(argv[2]);
            printf("round %d checksum %lx %s\n", round++, again, again == first ? "same" : "DIFFERENT");
            next += 0.5;
        }
    }
    printf("crashing after %d rounds (work %lx)\n", round, work);
    volatile int *null = NULL;
    *null = 1;
    return 0;
}
