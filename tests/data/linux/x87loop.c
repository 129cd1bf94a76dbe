/* Long double arithmetic whose running values live in x87 registers for millions of
 * instructions (gcc keeps s, t and u on the x87 stack through the loop): a checkpoint or
 * a time-travel position inside the loop must carry the x87 registers, or the sums come
 * out different. argv[1]: iterations (default 3,000,000, about 30M instructions). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 3000000;
    long double s = 0.0L, t = 1.0L, u = 0.5L;
    for (long i = 1; i <= n; i++) {
        t *= 1.0000001L;
        s += t / (long double)i;
        u = u * 0.999999L + 1e-7L;
    }
    printf("PASS x87loop %La %La %La\n", s, t, u);
    return 0;
}
