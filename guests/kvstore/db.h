/*
 * The keyspace: a chained hash table of entries, keyed with SipHash, that
 * doubles as keys are added, plus key expiry.
 *
 * Locking: in the race build (KV_RACE) the expiry reaper runs inside the
 * timer interrupt and unlinks and frees entries, so code that touches the
 * table or an entry holds db_lock() (interrupts off) while it does. In the
 * normal build nothing touches the table from interrupt context and the
 * lock costs nothing.
 */
#ifndef KV_DB_H
#define KV_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cpu.h"
#include "value.h"

struct entry {
    /*
     * A freed block's first 16 bytes hold the allocator's free-list links;
     * hash and expire_at go there so the pointer fields after them keep the
     * poison the race build's free() writes.
     */
    uint64_t hash;
    int64_t expire_at_ms;     /* monotonic ms; 0 = never expires */
    struct entry *next;       /* bucket chain */
    union kv_value value;     /* never NULL while the entry is in the table */
    uint64_t key_len;
    char key[];               /* key_len bytes, then a NUL */
};

struct db_stats {
    uint64_t keys;
    uint64_t expires;         /* keys with an expiry set */
    uint64_t expired_keys;    /* deleted because their time ran out */
    uint64_t buckets;
    uint64_t hits;
    uint64_t misses;
};

#ifdef KV_RACE
typedef uint64_t db_lock_t;
static inline db_lock_t db_lock(void) { return irq_save(); }
static inline void db_unlock(db_lock_t saved) { irq_restore(saved); }
#else
typedef int db_lock_t;
static inline db_lock_t db_lock(void) { return 0; }
static inline void db_unlock(db_lock_t saved) { (void)saved; }
#endif

void db_init(uint64_t hash_key0, uint64_t hash_key1);

/* The entry for key, expired or not. */
struct entry *db_find(const char *key, size_t len);
/* The entry for key, deleting it first if its time ran out (lazy expiry); counts hits/misses. */
struct entry *db_lookup(const char *key, size_t len, int64_t now_ms);
/*
 * Insert a new key (the caller checked it is absent) holding value, which
 * the table then owns. NULL when out of memory (value is not taken).
 */
struct entry *db_add(const char *key, size_t len, union kv_value value);
/* Unlink and free the entry for key; false when absent. */
bool db_delete(const char *key, size_t len);
void db_delete_entry(struct entry *entry);
void db_flush(void);

/* Replace an entry's value, freeing the old one. */
void entry_set_value(struct entry *entry, union kv_value value);
static inline uint32_t entry_type(const struct entry *entry)
{
    return value_type(entry->value);
}
void entry_set_expire(struct entry *entry, int64_t expire_at_ms);
bool entry_expired(const struct entry *entry, int64_t now_ms);

/*
 * Active expiry: visit up to max_buckets buckets from a rotating cursor and
 * delete expired entries, at most max_deletes of them. Returns how many.
 */
unsigned db_reap_expired(int64_t now_ms, unsigned max_buckets, unsigned max_deletes);

void db_get_stats(struct db_stats *stats);
uint64_t db_expires_count(void);

#endif
