/* Boots, prints a greeting and its boot arguments. */
#include "sdk.h"

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    puts("hello from the guest");
    printf("args=%s\n", boot_args());
    puts("PASS t_hello");
    return 0;
}
