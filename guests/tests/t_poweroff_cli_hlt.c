/* HLT with interrupts disabled can never wake: the VM powers off with status 0. */
#include "sdk.h"

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    puts("t_poweroff_cli_hlt: halting with interrupts off");
    for (;;) {
        cli();
        hlt();
    }
}
