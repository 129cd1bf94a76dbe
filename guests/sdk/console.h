/* Serial console (ports 0x3F8-0x3FA); input raises IRQ 1 when enabled. */
#ifndef VMRR_CONSOLE_H
#define VMRR_CONSOLE_H
#include <stddef.h>

void console_putc(char c);
void console_write(const char *buf, size_t len);
void console_puts(const char *s); /* no newline added */
int console_has_input(void);
/* Next input byte, or -1 when none is waiting. */
int console_getc(void);
void console_rx_irq_enable(int enable);
#endif
