/*
 * Values stored under keys: binary-safe strings and lists of strings.
 */
#ifndef KV_VALUE_H
#define KV_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum value_type { TYPE_STRING = 1, TYPE_LIST = 2, TYPE_HASH = 3, TYPE_SET = 4, TYPE_ZSET = 5 };

/* Every value starts with its type, so code learns the type through the value pointer. */
struct value_header {
    uint32_t type;
};

/* A binary-safe string; data is also NUL-terminated for convenience. */
struct bstr {
    uint32_t type; /* TYPE_STRING */
    uint32_t len;
    char data[];
};

/* Longest string value accepted, like Redis's proto-max-bulk-len but smaller. */
#define BSTR_MAX_LEN (32u * 1024 * 1024)

struct bstr *bstr_new(const char *data, size_t len);
void bstr_free(struct bstr *s);

/* A double-ended queue of strings in a ring buffer: O(1) push, pop and index. */
struct kv_list {
    uint32_t type;  /* TYPE_LIST */
    struct bstr **items;
    uint32_t head;  /* index of the first element in items */
    uint32_t count;
    uint32_t cap;   /* a power of two, or 0 */
};

struct kv_list *list_new(void);
void list_free(struct kv_list *list);
/* Takes ownership of item. Returns false when out of memory. */
bool list_push_front(struct kv_list *list, struct bstr *item);
bool list_push_back(struct kv_list *list, struct bstr *item);
/* Caller owns the returned string; NULL when empty. */
struct bstr *list_pop_front(struct kv_list *list);
struct bstr *list_pop_back(struct kv_list *list);
struct bstr *list_at(const struct kv_list *list, uint32_t index);

struct kv_hash;
struct kv_set;
struct kv_zset;

union kv_value {
    struct value_header *any;
    struct bstr *str;
    struct kv_list *list;
    struct kv_hash *hash;
    struct kv_set *set;
    struct kv_zset *zset;
};

static inline uint32_t value_type(union kv_value value)
{
    return value.any->type;
}

void value_free(union kv_value value);
/* Free a list, hash, set or sorted set: value_free's non-string half (collections.c). */
void collection_free(union kv_value value);

#endif
