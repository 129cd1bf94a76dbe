/*
 * Hashes, sets and sorted sets: small, flat arrays searched linearly.
 * Enough for redis-benchmark's default tests and interactive use; not
 * meant for collections of many thousands of members.
 */
#ifndef KV_COLLECTIONS_H
#define KV_COLLECTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "value.h"

/* A hash: fields and values alternate in items (2 * count strings). */
struct kv_hash {
    uint32_t type; /* TYPE_HASH */
    uint32_t count;
    uint32_t cap;  /* pairs */
    struct bstr **items;
};

/* A set of distinct strings, in no particular order. */
struct kv_set {
    uint32_t type; /* TYPE_SET */
    uint32_t count;
    uint32_t cap;
    struct bstr **members;
};

/* A sorted set: members ordered by (score, member). Scores are integers: no FPU here. */
struct zset_item {
    int64_t score;
    struct bstr *member;
};

struct kv_zset {
    uint32_t type; /* TYPE_ZSET */
    uint32_t count;
    uint32_t cap;
    struct zset_item *items;
};

struct kv_hash *hash_new(void);
void hash_free(struct kv_hash *hash);
/* The value stored under field, or NULL. */
struct bstr *hash_get(const struct kv_hash *hash, const char *field, size_t len);
/* Set field to a copy of value: 1 if the field is new, 0 if replaced, -1 out of memory. */
int hash_set(struct kv_hash *hash, const char *field, size_t field_len, const char *value,
             size_t value_len);
bool hash_delete(struct kv_hash *hash, const char *field, size_t len);

struct kv_set *set_new(void);
void set_free(struct kv_set *set);
bool set_contains(const struct kv_set *set, const char *member, size_t len);
/* 1 if added, 0 if already there, -1 out of memory. */
int set_add(struct kv_set *set, const char *member, size_t len);
bool set_remove(struct kv_set *set, const char *member, size_t len);
/* Remove and return the member at index (caller owns it). */
struct bstr *set_take(struct kv_set *set, uint32_t index);

struct kv_zset *zset_new(void);
void zset_free(struct kv_zset *zset);
/* 1 if added, 0 if its score was updated, -1 out of memory. */
int zset_add(struct kv_zset *zset, int64_t score, const char *member, size_t len);
/* Remove and return the lowest item (caller owns the member). */
struct zset_item zset_pop_min(struct kv_zset *zset);
bool zset_score(const struct kv_zset *zset, const char *member, size_t len, int64_t *score);

#endif
