#ifndef KV_SIPHASH_H
#define KV_SIPHASH_H
#include <stddef.h>
#include <stdint.h>
uint64_t siphash13(const void *data, size_t len, uint64_t k0, uint64_t k1);
#endif
