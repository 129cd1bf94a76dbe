/* Uses AVX2 unconditionally, as a binary built for x86-64-v3 does: on vmrr's CPU model (no
 * AVX) it must die of SIGILL, as on a real CPU without AVX. Prints "PASS avx" only if it runs. */
#include <immintrin.h>
#include <stdio.h>

__attribute__((target("avx2"), noinline)) int add_vectors(int x) {
    __m256i a = _mm256_set1_epi32(x), b = _mm256_set1_epi32(2);
    __m256i sum = _mm256_add_epi32(a, b);
    int out[8];
    _mm256_storeu_si256((__m256i *)out, sum);
    return out[3];
}

int main(int argc, char **argv) {
    (void)argv;
    printf("before avx\n");
    fflush(stdout);
    printf("sum %d\n", add_vectors(argc));
    printf("PASS avx\n");
    return 0;
}
