/* Crash test: jump to 0x7fff0000, far beyond the end of RAM. */
#include "sdk.h"

int kmain(struct vmrr_boot_info *bi)
{
    puts("t_crash_fetch: jumping to 0x7fff0000");
    if (bi->mem_size > 0x7fff0000UL)
        puts("t_crash_fetch: warning: RAM covers the target, pass a smaller --mem");
    __asm__ volatile("movl $0x7fff0000, %%eax\n\t"
                     "jmp *%%rax"
                     : : : "rax", "memory");
    return 1;
}
