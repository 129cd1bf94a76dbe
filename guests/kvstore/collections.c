#include "collections.h"
#include "sdk.h"

static bool bstr_equals(const struct bstr *s, const char *data, size_t len)
{
    return s->len == len && memcmp(s->data, data, len) == 0;
}

/* Make room for one more element of elem_size in *array; false when out of memory. */
static bool reserve_one(void **array, uint32_t count, uint32_t *cap, size_t elem_size)
{
    if (count < *cap)
        return true;
    uint32_t new_cap = *cap ? *cap * 2 : 4;
    void *grown = realloc(*array, (size_t)new_cap * elem_size);
    if (!grown)
        return false;
    *array = grown;
    *cap = new_cap;
    return true;
}

/* ---- hash ---- */

struct kv_hash *hash_new(void)
{
    struct kv_hash *hash = calloc(1, sizeof(*hash));
    if (hash)
        hash->type = TYPE_HASH;
    return hash;
}

void hash_free(struct kv_hash *hash)
{
    for (uint32_t i = 0; i < 2 * hash->count; i++)
        bstr_free(hash->items[i]);
    free(hash->items);
    free(hash);
}

static long hash_find(const struct kv_hash *hash, const char *field, size_t len)
{
    for (uint32_t i = 0; i < hash->count; i++) {
        if (bstr_equals(hash->items[2 * i], field, len))
            return i;
    }
    return -1;
}

struct bstr *hash_get(const struct kv_hash *hash, const char *field, size_t len)
{
    long i = hash_find(hash, field, len);
    return i < 0 ? NULL : hash->items[2 * i + 1];
}

int hash_set(struct kv_hash *hash, const char *field, size_t field_len, const char *value,
             size_t value_len)
{
    struct bstr *copy = bstr_new(value, value_len);
    if (!copy)
        return -1;
    long i = hash_find(hash, field, field_len);
    if (i >= 0) {
        bstr_free(hash->items[2 * i + 1]);
        hash->items[2 * i + 1] = copy;
        return 0;
    }
    struct bstr *key = bstr_new(field, field_len);
    if (!key || !reserve_one((void **)&hash->items, hash->count, &hash->cap, 2 * sizeof(struct bstr *))) {
        bstr_free(key);
        bstr_free(copy);
        return -1;
    }
    hash->items[2 * hash->count] = key;
    hash->items[2 * hash->count + 1] = copy;
    hash->count++;
    return 1;
}

bool hash_delete(struct kv_hash *hash, const char *field, size_t len)
{
    long i = hash_find(hash, field, len);
    if (i < 0)
        return false;
    bstr_free(hash->items[2 * i]);
    bstr_free(hash->items[2 * i + 1]);
    hash->count--;
    hash->items[2 * i] = hash->items[2 * hash->count];
    hash->items[2 * i + 1] = hash->items[2 * hash->count + 1];
    return true;
}

/* ---- set ---- */

struct kv_set *set_new(void)
{
    struct kv_set *set = calloc(1, sizeof(*set));
    if (set)
        set->type = TYPE_SET;
    return set;
}

void set_free(struct kv_set *set)
{
    for (uint32_t i = 0; i < set->count; i++)
        bstr_free(set->members[i]);
    free(set->members);
    free(set);
}

static long set_find(const struct kv_set *set, const char *member, size_t len)
{
    for (uint32_t i = 0; i < set->count; i++) {
        if (bstr_equals(set->members[i], member, len))
            return i;
    }
    return -1;
}

bool set_contains(const struct kv_set *set, const char *member, size_t len)
{
    return set_find(set, member, len) >= 0;
}

int set_add(struct kv_set *set, const char *member, size_t len)
{
    if (set_find(set, member, len) >= 0)
        return 0;
    struct bstr *copy = bstr_new(member, len);
    if (!copy || !reserve_one((void **)&set->members, set->count, &set->cap, sizeof(struct bstr *))) {
        bstr_free(copy);
        return -1;
    }
    set->members[set->count++] = copy;
    return 1;
}

struct bstr *set_take(struct kv_set *set, uint32_t index)
{
    struct bstr *member = set->members[index];
    set->members[index] = set->members[--set->count];
    return member;
}

bool set_remove(struct kv_set *set, const char *member, size_t len)
{
    long i = set_find(set, member, len);
    if (i < 0)
        return false;
    bstr_free(set_take(set, (uint32_t)i));
    return true;
}

/* ---- sorted set ---- */

struct kv_zset *zset_new(void)
{
    struct kv_zset *zset = calloc(1, sizeof(*zset));
    if (zset)
        zset->type = TYPE_ZSET;
    return zset;
}

void zset_free(struct kv_zset *zset)
{
    for (uint32_t i = 0; i < zset->count; i++)
        bstr_free(zset->items[i].member);
    free(zset->items);
    free(zset);
}

static long zset_find(const struct kv_zset *zset, const char *member, size_t len)
{
    for (uint32_t i = 0; i < zset->count; i++) {
        if (bstr_equals(zset->items[i].member, member, len))
            return i;
    }
    return -1;
}

static int item_compare(int64_t score, const struct bstr *member, const struct zset_item *item)
{
    if (score != item->score)
        return score < item->score ? -1 : 1;
    size_t common = member->len < item->member->len ? member->len : item->member->len;
    int order = memcmp(member->data, item->member->data, common);
    return order ? order : (int)member->len - (int)item->member->len;
}

static void zset_remove_at(struct kv_zset *zset, uint32_t index)
{
    memmove(&zset->items[index], &zset->items[index + 1],
            (zset->count - index - 1) * sizeof(struct zset_item));
    zset->count--;
}

/* Insert keeping the order; the array has room. */
static void zset_insert(struct kv_zset *zset, int64_t score, struct bstr *member)
{
    uint32_t at = 0;
    while (at < zset->count && item_compare(score, member, &zset->items[at]) > 0)
        at++;
    memmove(&zset->items[at + 1], &zset->items[at], (zset->count - at) * sizeof(struct zset_item));
    zset->items[at] = (struct zset_item){score, member};
    zset->count++;
}

int zset_add(struct kv_zset *zset, int64_t score, const char *member, size_t len)
{
    long i = zset_find(zset, member, len);
    if (i >= 0) {
        struct bstr *existing = zset->items[i].member;
        zset_remove_at(zset, (uint32_t)i);
        zset_insert(zset, score, existing);
        return 0;
    }
    struct bstr *copy = bstr_new(member, len);
    if (!copy || !reserve_one((void **)&zset->items, zset->count, &zset->cap, sizeof(struct zset_item))) {
        bstr_free(copy);
        return -1;
    }
    zset_insert(zset, score, copy);
    return 1;
}

struct zset_item zset_pop_min(struct kv_zset *zset)
{
    struct zset_item first = zset->items[0];
    zset_remove_at(zset, 0);
    return first;
}

bool zset_score(const struct kv_zset *zset, const char *member, size_t len, int64_t *score)
{
    long i = zset_find(zset, member, len);
    if (i >= 0)
        *score = zset->items[i].score;
    return i >= 0;
}

void collection_free(union kv_value value)
{
    switch (value_type(value)) {
    case TYPE_LIST:
        list_free(value.list);
        break;
    case TYPE_HASH:
        hash_free(value.hash);
        break;
    case TYPE_SET:
        set_free(value.set);
        break;
    case TYPE_ZSET:
        zset_free(value.zset);
        break;
    }
}
