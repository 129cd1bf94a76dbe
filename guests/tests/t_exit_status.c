/* Powers off with status 7 through port 0xF4. */
#include "sdk.h"

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    puts("t_exit_status: powering off with status 7");
    poweroff(7);
}
