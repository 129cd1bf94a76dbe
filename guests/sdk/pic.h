/* Priority interrupt controller (ports 0x20-0x23). Line 0 has the highest priority. */
#ifndef VMRR_PIC_H
#define VMRR_PIC_H
#include <stdint.h>

/* End the highest-priority line in service. Call once per handled IRQ. */
void pic_eoi(void);
void pic_set_mask(uint32_t mask);
uint32_t pic_mask(void);
void pic_mask_line(int line);
void pic_unmask_line(int line);
uint32_t pic_pending(void);
uint32_t pic_in_service(void);
#endif
