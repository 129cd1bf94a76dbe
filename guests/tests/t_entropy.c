/* The entropy device returns varying values. */
#include "sdk.h"

#define SAMPLES 64

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    uint32_t values[SAMPLES];
    int distinct_from_first = 0;
    for (int i = 0; i < SAMPLES; i++) {
        values[i] = entropy_u32();
        printf("%08x%c", values[i], (i % 8 == 7) ? '\n' : ' ');
        if (values[i] != values[0])
            distinct_from_first++;
    }
    if (distinct_from_first == 0) {
        puts("FAIL t_entropy: all values equal");
        return 1;
    }
    puts("PASS t_entropy");
    return 0;
}
