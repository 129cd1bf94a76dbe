/* The smallest program: prints "PASS hello". */
#include <stdio.h>

int main(void) {
    printf("PASS hello\n");
    return 0;
}
