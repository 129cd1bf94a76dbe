/*
 * Everything a guest needs: include this one header.
 *
 * A guest defines  int kmain(struct vmrr_boot_info *boot_info);
 * boot.S calls it with the IDT loaded, the heap ready and interrupts off,
 * and powers the VM off with its return value as the exit status.
 */
#ifndef VMRR_SDK_H
#define VMRR_SDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "console.h"
#include "cpu.h"
#include "entropy.h"
#include "interrupts.h"
#include "libc.h"
#include "machine.h"
#include "pic.h"
#include "power.h"
#include "rdtsc.h"
#include "sock.h"
#include "timer.h"

int kmain(struct vmrr_boot_info *boot_info);

/* The boot information page, as passed to kmain. */
extern struct vmrr_boot_info *boot_info;

/* The boot argument string ("" when none). */
const char *boot_args(void);

/*
 * Look up "name=value" among the space-separated boot arguments and copy
 * value into buf (NUL-terminated, truncated to size). A bare "name" has the
 * value "1". Returns false when name is absent.
 */
bool boot_arg(const char *name, char *buf, size_t size);
/* The numeric value of name=N, or fallback when absent or not a number. */
uint64_t boot_arg_u64(const char *name, uint64_t fallback);

/* Print a message and crash the VM on purpose (the VMM reports the crash). */
__attribute__((noreturn)) void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bytes at the top of RAM kept out of the heap (the VMM's boot stack). */
#define TOP_OF_RAM_RESERVE (64 * 1024)

#endif
