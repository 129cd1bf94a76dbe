#include "pic.h"
#include "cpu.h"
#include "machine.h"

void pic_eoi(void)
{
    outl(PORT_PIC_EOI, 0);
}

void pic_set_mask(uint32_t mask)
{
    outl(PORT_PIC_MASK, mask);
}

uint32_t pic_mask(void)
{
    return inl(PORT_PIC_MASK);
}

/* Read-modify-write of the mask must not interleave with a handler doing the same. */
void pic_mask_line(int line)
{
    uint64_t flags = irq_save();
    pic_set_mask(pic_mask() | (1u << line));
    irq_restore(flags);
}

void pic_unmask_line(int line)
{
    uint64_t flags = irq_save();
    pic_set_mask(pic_mask() & ~(1u << line));
    irq_restore(flags);
}

uint32_t pic_pending(void)
{
    return inl(PORT_PIC_PENDING);
}

uint32_t pic_in_service(void)
{
    return inl(PORT_PIC_INSERVICE);
}
