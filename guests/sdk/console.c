#include "console.h"
#include "cpu.h"
#include "machine.h"

void console_putc(char c)
{
    outb(PORT_CON_DATA, (uint8_t)c);
}

void console_write(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        outb(PORT_CON_DATA, (uint8_t)buf[i]);
}

void console_puts(const char *s)
{
    while (*s)
        console_putc(*s++);
}

int console_has_input(void)
{
    return (inl(PORT_CON_STATUS) & CON_STATUS_RX_READY) != 0;
}

int console_getc(void)
{
    if (!console_has_input())
        return -1;
    return inb(PORT_CON_DATA);
}

void console_rx_irq_enable(int enable)
{
    outl(PORT_CON_CTRL, enable ? CON_CTRL_RX_IRQ : 0);
}
