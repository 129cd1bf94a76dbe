#include "entropy.h"
#include "cpu.h"
#include "machine.h"

uint32_t entropy_u32(void)
{
    return inl(PORT_ENTROPY);
}

uint64_t entropy_u64(void)
{
    uint64_t lo = entropy_u32();
    uint64_t hi = entropy_u32();
    return (hi << 32) | lo;
}

void entropy_fill(void *buf, size_t len)
{
    uint8_t *out = buf;
    while (len > 0) {
        uint32_t word = entropy_u32();
        for (int i = 0; i < 4 && len > 0; i++, len--) {
            *out++ = (uint8_t)word;
            word >>= 8;
        }
    }
}
