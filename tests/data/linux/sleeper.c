/* Sleeps 4 x 50 ms (nanosleep and clock_nanosleep): replay must not wait. Prints "PASS sleeper". */
#include <time.h>
#include "check.h"

int main(void) {
    struct timespec req = {0, 50 * 1000000};
    for (int i = 0; i < 2; i++) CHECK(nanosleep(&req, NULL) == 0);
    for (int i = 0; i < 2; i++) CHECK(clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL) == 0);
    printf("PASS sleeper\n");
    return 0;
}
