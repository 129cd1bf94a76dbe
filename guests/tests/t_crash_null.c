/* Crash test: a store to address 0x8 hits the unmapped first page. */
#include "sdk.h"

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    puts("t_crash_null: writing to 0x8");
    __asm__ volatile("movq $1, 0x8" : : : "memory");
    puts("t_crash_null: still alive (the VMM should have stopped the VM)");
    return 1;
}
