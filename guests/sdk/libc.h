/*
 * The SDK's small libc: strings, number parsing, printf to the console and
 * a heap allocator. Freestanding: nothing here touches the host.
 */
#ifndef VMRR_LIBC_H
#define VMRR_LIBC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Strings and memory (gcc may emit calls to the mem* ones itself). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memchr(const void *s, int c, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
char *strncpy(char *dst, const char *src, size_t n);
int tolower(int c);
int toupper(int c);
int isdigit(int c);
int isspace(int c);
/* Case-insensitive compare of n bytes. */
int strncasecmp(const char *a, const char *b, size_t n);

/* Number parsing, C style: skips leading spaces, sets *end past the digits. */
long long strtoll(const char *s, char **end, int base);
unsigned long long strtoull(const char *s, char **end, int base);
int atoi(const char *s);
/*
 * Strict parse of exactly len bytes as a signed decimal: optional '-',
 * digits, no spaces, no overflow. Returns false on anything else.
 */
bool parse_i64(const char *s, size_t len, int64_t *out);

/* Formatted output: %d %i %u %x %X %p %s %c %% with l/ll/z, flags '-' '0', width, .precision. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int puts(const char *s); /* adds a newline */

/*
 * Heap over [image_end, mem_size - stack reserve). Safe to call from
 * interrupt handlers (each call runs with interrupts disabled).
 */
void *malloc(size_t size);
void free(void *ptr);
void *realloc(void *ptr, size_t size);
void *calloc(size_t count, size_t size);
size_t malloc_usable_size(void *ptr);

struct heap_stats {
    uint64_t heap_bytes;     /* size of the whole heap region */
    uint64_t used_bytes;     /* bytes in allocated blocks, headers included */
    uint64_t free_bytes;     /* bytes in free blocks, the untouched top included */
    uint64_t allocations;    /* blocks currently allocated */
    uint64_t failed;         /* malloc calls that returned NULL */
};
void heap_get_stats(struct heap_stats *stats);
/* Walk the heap and check every block header; returns false on corruption. */
bool heap_check(void);

/*
 * When set, free() overwrites a freed block's payload (past the allocator's
 * own links) with POISON_POINTER, so a stale pointer read from freed memory
 * points into the unmapped first page and the VM stops at the first use.
 */
#define POISON_POINTER 0x10UL
extern bool malloc_poison_freed;

void heap_init(uint64_t start, uint64_t end);

#endif
