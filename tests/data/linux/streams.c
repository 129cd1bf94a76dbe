/* Writes to stdout and stderr in turn, and reads stdin to its end. Prints "PASS streams". */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    char buf[256];
    ssize_t n, total = 0;
    fprintf(stderr, "first to stderr\n");
    printf("first to stdout\n");
    fflush(stdout);
    while ((n = read(0, buf, sizeof buf)) > 0) total += n;
    fprintf(stderr, "second to stderr\n");
    printf("read %zd bytes from stdin\nPASS streams\n", total);
    return 0;
}
