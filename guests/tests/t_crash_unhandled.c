/* Crash test: a divide error with the #DE gate marked not present. */
#include "sdk.h"

int kmain(struct vmrr_boot_info *bi)
{
    (void)bi;
    idt_clear_gate(VEC_DIVIDE_ERROR);
    puts("t_crash_unhandled: dividing by zero with no #DE gate");
    __asm__ volatile("xorl %%ecx, %%ecx\n\t"
                     "movl $1, %%eax\n\t"
                     "xorl %%edx, %%edx\n\t"
                     "divq %%rcx"
                     : : : "rax", "rcx", "rdx", "memory");
    puts("t_crash_unhandled: still alive (the VMM should have stopped the VM)");
    return 1;
}
