/* The flight recorder's crashing program: works for argv[1] seconds, then crashes.
 * It reads argv[2] once at the start and again every half second (the same content: the
 * recorder captured it once, before a window that ends at the crash began), prints a
 * progress line with a checksum each time, and finally writes through a NULL pointer.
 * With argv[3] = N it also reads N bytes of /dev/urandom per round of work: input the
 * trace must log, and that does not compress (a ring bounded by size fills with it). */
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
    if (argc != 3 && argc != 4) { fprintf(stderr, "usage: ringcrash SECONDS FILE [NOISE]\n"); return 2; }
    size_t noise = argc == 4 ? (size_t)atol(argv[3]) : 0;
    static unsigned char scratch[1 << 20];
    FILE *urandom = noise ? fopen("/dev/urandom", "rb") : NULL;
    if (noise > sizeof scratch || (noise && urandom == NULL)) { perror("/dev/urandom"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = atof(argv[1]), start = now(), next = start;
    unsigned long first = checksum(argv[2]), work = 0;
    int round = 0;
    while (now() - start < seconds) {
        for (int i = 0; i < 20000; i++) work = work * 6364136223846793005UL + i;
        if (noise && fread(scratch, 1, noise, urandom) == noise) work ^= scratch[noise - 1];
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
