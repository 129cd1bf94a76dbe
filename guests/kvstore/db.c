#include "db.h"
#include "sdk.h"
#include "siphash.h"

#define INITIAL_BUCKETS 64

static struct {
    struct entry **buckets;
    uint64_t mask;            /* bucket count - 1 */
    uint64_t count;
    uint64_t expires;
    uint64_t reap_cursor;
    uint64_t hash_key0, hash_key1;
    uint64_t expired_keys, hits, misses;
} table;

static uint64_t key_hash(const char *key, size_t len)
{
    return siphash13(key, len, table.hash_key0, table.hash_key1);
}

void db_init(uint64_t hash_key0, uint64_t hash_key1)
{
    table.hash_key0 = hash_key0;
    table.hash_key1 = hash_key1;
    table.buckets = calloc(INITIAL_BUCKETS, sizeof(struct entry *));
    if (!table.buckets)
        panic("kvstore: no memory for the hash table");
    table.mask = INITIAL_BUCKETS - 1;
}

static void free_entry(struct entry *entry)
{
    if (entry->expire_at_ms)
        table.expires--;
    value_free(entry->value);
    free(entry);
}

static struct entry **bucket_of(uint64_t hash)
{
    return &table.buckets[hash & table.mask];
}

static struct entry **find_link(const char *key, size_t len, uint64_t hash)
{
    struct entry **link = bucket_of(hash);
    for (; *link; link = &(*link)->next) {
        struct entry *e = *link;
        if (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0)
            break;
    }
    return link;
}

struct entry *db_find(const char *key, size_t len)
{
    db_lock_t lock = db_lock();
    struct entry *found = *find_link(key, len, key_hash(key, len));
    db_unlock(lock);
    return found;
}

bool entry_expired(const struct entry *entry, int64_t now_ms)
{
    return entry->expire_at_ms != 0 && entry->expire_at_ms <= now_ms;
}

struct entry *db_lookup(const char *key, size_t len, int64_t now_ms)
{
    db_lock_t lock = db_lock();
    struct entry **link = find_link(key, len, key_hash(key, len));
    struct entry *found = *link;
    if (found && entry_expired(found, now_ms)) {
        *link = found->next;
        table.count--;
        table.expired_keys++;
        free_entry(found);
        found = NULL;
    }
    if (found)
        table.hits++;
    else
        table.misses++;
    db_unlock(lock);
    return found;
}

/* Double the bucket array once the table holds more keys than buckets. */
static void grow_if_needed(void)
{
    if (table.count <= table.mask + 1)
        return;
    uint64_t new_size = (table.mask + 1) * 2;
    struct entry **buckets = calloc(new_size, sizeof(struct entry *));
    if (!buckets)
        return; /* keep going with longer chains */
    for (uint64_t i = 0; i <= table.mask; i++) {
        struct entry *e = table.buckets[i];
        while (e) {
            struct entry *next = e->next;
            struct entry **head = &buckets[e->hash & (new_size - 1)];
            e->next = *head;
            *head = e;
            e = next;
        }
    }
    free(table.buckets);
    table.buckets = buckets;
    table.mask = new_size - 1;
}

struct entry *db_add(const char *key, size_t len, union kv_value value)
{
    struct entry *entry = malloc(sizeof(*entry) + len + 1);
    if (!entry)
        return NULL;
    entry->hash = key_hash(key, len);
    entry->expire_at_ms = 0;
    entry->value = value;
    entry->key_len = len;
    memcpy(entry->key, key, len);
    entry->key[len] = '\0';
    db_lock_t lock = db_lock();
    struct entry **head = bucket_of(entry->hash);
    entry->next = *head;
    *head = entry;
    table.count++;
    grow_if_needed();
    db_unlock(lock);
    return entry;
}

bool db_delete(const char *key, size_t len)
{
    db_lock_t lock = db_lock();
    struct entry **link = find_link(key, len, key_hash(key, len));
    struct entry *found = *link;
    if (found) {
        *link = found->next;
        table.count--;
        free_entry(found);
    }
    db_unlock(lock);
    return found != NULL;
}

void db_delete_entry(struct entry *entry)
{
    db_lock_t lock = db_lock();
    struct entry **link = find_link(entry->key, entry->key_len, entry->hash);
    if (*link == entry) {
        *link = entry->next;
        table.count--;
        free_entry(entry);
    }
    db_unlock(lock);
}

void db_flush(void)
{
    db_lock_t lock = db_lock();
    for (uint64_t i = 0; i <= table.mask; i++) {
        struct entry *e = table.buckets[i];
        while (e) {
            struct entry *next = e->next;
            free_entry(e);
            e = next;
        }
        table.buckets[i] = NULL;
    }
    table.count = 0;
    db_unlock(lock);
}

void entry_set_value(struct entry *entry, union kv_value value)
{
    db_lock_t lock = db_lock();
    value_free(entry->value);
    entry->value = value;
    db_unlock(lock);
}

void entry_set_expire(struct entry *entry, int64_t expire_at_ms)
{
    db_lock_t lock = db_lock();
    if (!entry->expire_at_ms && expire_at_ms)
        table.expires++;
    else if (entry->expire_at_ms && !expire_at_ms)
        table.expires--;
    entry->expire_at_ms = expire_at_ms;
    db_unlock(lock);
}

/* The race build calls this from the timer interrupt, where db_lock only re-disables interrupts. */
unsigned db_reap_expired(int64_t now_ms, unsigned max_buckets, unsigned max_deletes)
{
    unsigned deleted = 0;
    if (!table.expires)
        return 0;
    db_lock_t lock = db_lock();
    for (unsigned visited = 0; visited < max_buckets && deleted < max_deletes; visited++) {
        struct entry **link = &table.buckets[table.reap_cursor++ & table.mask];
        while (*link) {
            struct entry *e = *link;
            if (!entry_expired(e, now_ms)) {
                link = &e->next;
                continue;
            }
            *link = e->next;
            table.count--;
            table.expired_keys++;
            free_entry(e);
            deleted++;
        }
    }
    db_unlock(lock);
    return deleted;
}

void db_get_stats(struct db_stats *stats)
{
    db_lock_t lock = db_lock();
    stats->keys = table.count;
    stats->expires = table.expires;
    stats->expired_keys = table.expired_keys;
    stats->buckets = table.mask + 1;
    stats->hits = table.hits;
    stats->misses = table.misses;
    db_unlock(lock);
}

uint64_t db_expires_count(void)
{
    return table.expires;
}
