/*
 * Crash test: int3 with a present #BP gate but RSP pointing into the
 * unmapped first page, so delivering the exception itself faults.
 */
#include "sdk.h"

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    puts("t_crash_double: int3 with rsp=0x10");
    __asm__ volatile("movq %%rsp, %%rbx\n\t"
                     "movq $0x10, %%rsp\n\t"
                     "int3\n\t"
                     "movq %%rbx, %%rsp"
                     : : : "rbx", "memory");
    puts("t_crash_double: still alive (the VMM should have stopped the VM)");
    return 1;
}
