/*
 * Stream sockets (ports 0xA0-0xA8): the VMM accepts host TCP connections
 * and hands each to the guest as a channel 0-63. IRQ 2 says "something
 * changed"; poll sock_accept_queue() and sock_ready() to see what.
 */
#ifndef VMRR_SOCK_H
#define VMRR_SOCK_H
#include <stddef.h>
#include <stdint.h>
#include "machine.h"

/* New channel, or -VMRR_EAGAIN when nobody is waiting. */
int sock_accept(void);
/* Bytes read (> 0); 0 = peer closed and all data read; -VMRR_EAGAIN; -VMRR_EBADF. */
int sock_recv(int chan, void *buf, size_t len);
/*
 * len on success (the device takes every byte; large buffers are sent in
 * several commands); -VMRR_EBADF; -VMRR_EPIPE; another negative errno.
 */
int sock_send(int chan, const void *buf, size_t len);
int sock_close(int chan);
/* Bit c set: channel c has data or a hang-up to read. */
uint64_t sock_ready(void);
/* Connections waiting to be accepted. */
uint32_t sock_accept_queue(void);
#endif
