/* Power off (port 0xF4). */
#ifndef VMRR_POWER_H
#define VMRR_POWER_H
/* Stop the VM; status becomes the VMM's guest exit status. Never returns. */
__attribute__((noreturn)) void poweroff(int status);
#endif
