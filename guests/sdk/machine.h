/*
 * The vmrr machine as the guest sees it: boot information, IRQ lines and the
 * I/O port map. Every number here comes from docs/machine.md; change them
 * there first.
 */
#ifndef VMRR_MACHINE_H
#define VMRR_MACHINE_H

#include <stdint.h>

#define VMRR_BOOT_MAGIC 0x544f4f4252524d56ULL /* "VMRRBOOT" */
#define VMRR_BOOT_INFO_ADDR 0x5000

struct vmrr_boot_info {
    uint64_t magic;
    uint64_t mem_size;  /* RAM ends at this address */
    uint64_t args_ptr;  /* NUL-terminated boot argument string */
    uint64_t args_len;  /* without the NUL */
    uint64_t image_end; /* first page-aligned address after the image */
};

/* IRQ line n is delivered as vector IRQ_VECTOR_BASE + n. */
#define IRQ_VECTOR_BASE 32
#define IRQ_TIMER 0
#define IRQ_CONSOLE 1
#define IRQ_SOCK 2

/* Interrupt controller */
#define PORT_PIC_EOI 0x20
#define PORT_PIC_MASK 0x21
#define PORT_PIC_PENDING 0x22
#define PORT_PIC_INSERVICE 0x23

/* Timer */
#define PORT_TIMER_INTERVAL_LO 0x40
#define PORT_TIMER_INTERVAL_HI 0x41
#define PORT_TIMER_CTRL 0x42
#define PORT_TIMER_FIRED 0x43
#define TIMER_MODE_STOP 0
#define TIMER_MODE_ONESHOT 1
#define TIMER_MODE_PERIODIC 2

/* Clock */
#define PORT_CLOCK_LATCH 0x70
#define PORT_CLOCK_LO 0x71
#define PORT_CLOCK_HI 0x72
#define CLOCK_SELECT_WALL 0
#define CLOCK_SELECT_MONOTONIC 1

/* Entropy */
#define PORT_ENTROPY 0x90

/* Stream sockets */
#define PORT_SOCK_CMD 0xA0
#define PORT_SOCK_CHAN 0xA1
#define PORT_SOCK_ADDR_LO 0xA2
#define PORT_SOCK_ADDR_HI 0xA3
#define PORT_SOCK_LEN 0xA4
#define PORT_SOCK_RESULT 0xA5
#define PORT_SOCK_READY_LO 0xA6
#define PORT_SOCK_READY_HI 0xA7
#define PORT_SOCK_ACCEPTQ 0xA8
#define SOCK_CMD_ACCEPT 1
#define SOCK_CMD_RECV 2
#define SOCK_CMD_SEND 3
#define SOCK_CMD_CLOSE 4
#define SOCK_MAX_CHANNELS 64

/* Serial console */
#define PORT_CON_DATA 0x3F8
#define PORT_CON_STATUS 0x3F9
#define PORT_CON_CTRL 0x3FA
#define CON_STATUS_RX_READY 0x1
#define CON_CTRL_RX_IRQ 0x1

/* Power */
#define PORT_POWER 0xF4

/* Error numbers the socket device returns (negated). */
#define VMRR_EAGAIN 11
#define VMRR_EBADF 9
#define VMRR_EPIPE 32

#endif
