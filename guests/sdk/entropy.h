/* Host entropy (port 0x90). The CPU has no RDRAND: use this instead. */
#ifndef VMRR_ENTROPY_H
#define VMRR_ENTROPY_H
#include <stddef.h>
#include <stdint.h>
uint32_t entropy_u32(void);
uint64_t entropy_u64(void);
void entropy_fill(void *buf, size_t len);
#endif
