#include "power.h"
#include "cpu.h"
#include "machine.h"

void poweroff(int status)
{
    outl(PORT_POWER, (uint32_t)status);
    /* Not reached on the vmrr machine; a HLT with IF = 0 powers off too. */
    for (;;) {
        cli();
        hlt();
    }
}
