#include "sock.h"
#include "cpu.h"

/*
 * A command is several port writes then a result read; an interrupt handler
 * using the device in between would clobber the arguments, so each command
 * runs with interrupts disabled.
 */
static int sock_command(uint32_t cmd, int chan, const void *buf, size_t len)
{
    uint64_t addr = (uint64_t)buf;
    uint64_t flags = irq_save();
    outl(PORT_SOCK_CHAN, (uint32_t)chan);
    outl(PORT_SOCK_ADDR_LO, (uint32_t)addr);
    outl(PORT_SOCK_ADDR_HI, (uint32_t)(addr >> 32));
    outl(PORT_SOCK_LEN, (uint32_t)len);
    outl(PORT_SOCK_CMD, cmd);
    int result = (int)inl(PORT_SOCK_RESULT);
    irq_restore(flags);
    return result;
}

int sock_accept(void)
{
    uint64_t flags = irq_save();
    outl(PORT_SOCK_CMD, SOCK_CMD_ACCEPT);
    int result = (int)inl(PORT_SOCK_RESULT);
    irq_restore(flags);
    return result;
}

int sock_recv(int chan, void *buf, size_t len)
{
    return sock_command(SOCK_CMD_RECV, chan, buf, len);
}

/* The VMM refuses one SEND above 1 MiB (-22), so large buffers go in pieces. */
#define SEND_CHUNK (256 * 1024)

int sock_send(int chan, const void *buf, size_t len)
{
    const char *p = buf;
    size_t left = len;
    do {
        size_t piece = left < SEND_CHUNK ? left : SEND_CHUNK;
        int result = sock_command(SOCK_CMD_SEND, chan, p, piece);
        if (result < 0)
            return result;
        p += piece;
        left -= piece;
    } while (left > 0);
    return (int)len;
}

int sock_close(int chan)
{
    uint64_t flags = irq_save();
    outl(PORT_SOCK_CHAN, (uint32_t)chan);
    outl(PORT_SOCK_CMD, SOCK_CMD_CLOSE);
    int result = (int)inl(PORT_SOCK_RESULT);
    irq_restore(flags);
    return result;
}

uint64_t sock_ready(void)
{
    uint64_t lo = inl(PORT_SOCK_READY_LO);
    uint64_t hi = inl(PORT_SOCK_READY_HI);
    return (hi << 32) | lo;
}

uint32_t sock_accept_queue(void)
{
    return inl(PORT_SOCK_ACCEPTQ);
}
