/*
 * The commands: a table of name, arity and handler, and the handlers.
 *
 * Every handler runs with db_lock() held (in the race build: interrupts
 * off, so the expiry reaper in the timer interrupt cannot run meanwhile),
 * except those flagged CMD_OWN_LOCKING, which lock around table accesses
 * themselves so a long copy does not hold off the timer.
 */
#include "kvstore.h"
#include "collections.h"
#include "db.h"
#include "sdk.h"

#define CMD_OWN_LOCKING 1u

struct command {
    const char *name;
    size_t name_len;
    void (*run)(struct client *c, const struct arg *argv, size_t argc);
    int arity; /* > 0: exactly this many words with the name; < 0: at least -arity */
    unsigned flags;
};

static const char WRONGTYPE[] = "WRONGTYPE Operation against a key holding the wrong kind of value";
static const char NOT_INTEGER[] = "ERR value is not an integer or out of range";
static const char OOM[] = "OOM command not allowed when used memory > 'maxmemory'.";

static bool arg_is(const struct arg *a, const char *word)
{
    size_t len = strlen(word);
    return a->len == len && strncasecmp(a->ptr, word, len) == 0;
}

static bool arg_int(const struct arg *a, int64_t *value)
{
    return parse_i64(a->ptr, a->len, value);
}

/* The live entry for a key (lazy expiry applied), or NULL. */
static struct entry *lookup(const struct arg *key)
{
    return db_lookup(key->ptr, key->len, now_ms());
}

static void reply_entry_string(struct reply_buf *out, const struct entry *e)
{
    reply_bulk(out, e->value.str->data, e->value.str->len);
}

/* ---- connection and server ---- */

static void cmd_ping(struct client *c, const struct arg *argv, size_t argc)
{
    if (argc > 2) {
        reply_error(&c->out, "ERR wrong number of arguments for 'ping' command");
        return;
    }
    if (argc == 2)
        reply_bulk(&c->out, argv[1].ptr, argv[1].len);
    else
        reply_simple(&c->out, "PONG");
}

static void cmd_echo(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    reply_bulk(&c->out, argv[1].ptr, argv[1].len);
}

static void cmd_quit(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    reply_simple(&c->out, "OK");
    c->close_after_reply = true;
}

static void cmd_select(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    int64_t db;
    if (!arg_int(&argv[1], &db))
        reply_error(&c->out, "%s", NOT_INTEGER);
    else if (db != 0)
        reply_error(&c->out, "ERR DB index is out of range");
    else
        reply_simple(&c->out, "OK");
}

/* redis-cli asks for command docs on start-up; an empty answer is allowed. */
static void cmd_command(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    reply_array(&c->out, 0);
}

static void cmd_client(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    if (arg_is(&argv[1], "id"))
        reply_int(&c->out, c->chan);
    else
        reply_simple(&c->out, "OK");
}

static void cmd_dbsize(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    struct db_stats db;
    db_get_stats(&db);
    reply_int(&c->out, (int64_t)db.keys);
}

static void cmd_flushall(struct client *c, const struct arg *argv, size_t argc)
{
    if (argc > 2 || (argc == 2 && !arg_is(&argv[1], "async") && !arg_is(&argv[1], "sync"))) {
        reply_error(&c->out, "ERR syntax error");
        return;
    }
    db_flush();
    reply_simple(&c->out, "OK");
}

/* redis-benchmark reads "save" and "appendonly" at start: nothing is persisted here. */
static void cmd_config(struct client *c, const struct arg *argv, size_t argc)
{
    if (arg_is(&argv[1], "get") && argc == 3) {
        const char *value = NULL;
        if (arg_is(&argv[2], "save"))
            value = "";
        else if (arg_is(&argv[2], "appendonly"))
            value = "no";
        if (!value) {
            reply_array(&c->out, 0);
            return;
        }
        reply_array(&c->out, 2);
        reply_bulk(&c->out, argv[2].ptr, argv[2].len);
        reply_bulk(&c->out, value, strlen(value));
    } else if (arg_is(&argv[1], "resetstat") && argc == 2) {
        stats.commands_processed = 0;
        stats.timed_commands = 0;
        stats.timed_cycles = 0;
        reply_simple(&c->out, "OK");
    } else if (arg_is(&argv[1], "set")) {
        reply_error(&c->out, "ERR CONFIG SET is not supported by %s", KV_APPLIANCE);
    } else {
        reply_error(&c->out, "ERR unknown subcommand or wrong number of arguments for 'CONFIG'");
    }
}

static void cmd_info(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argv;
    (void)argc;
    struct db_stats db;
    struct heap_stats heap;
    db_get_stats(&db);
    heap_get_stats(&heap);
    uint64_t uptime = (clock_monotonic_ns() - stats.boot_ns) / NS_PER_SEC;
    uint64_t avg_cycles = stats.timed_commands ? stats.timed_cycles / stats.timed_commands : 0;
    char text[1536];
    int n = snprintf(text, sizeof(text),
                     "# Server\r\n"
                     "redis_version:7.0.0\r\n"
                     "redis_mode:standalone\r\n"
                     "vmrr_appliance:%s\r\n"
                     "uptime_in_seconds:%lu\r\n"
                     "uptime_in_days:%lu\r\n"
                     "hz:%lu\r\n"
                     "\r\n# Clients\r\n"
                     "connected_clients:%lu\r\n"
                     "\r\n# Memory\r\n"
                     "used_memory:%lu\r\n"
                     "heap_bytes:%lu\r\n"
                     "heap_allocations:%lu\r\n"
                     "heap_failed_allocations:%lu\r\n"
                     "\r\n# Stats\r\n"
                     "total_connections_received:%lu\r\n"
                     "rejected_connections:%lu\r\n"
                     "total_commands_processed:%lu\r\n"
                     "expired_keys:%lu\r\n"
                     "keyspace_hits:%lu\r\n"
                     "keyspace_misses:%lu\r\n"
                     "avg_request_cycles:%lu\r\n"
                     "timed_requests:%lu\r\n"
                     "\r\n# Keyspace\r\n"
                     "keys:%lu\r\n"
                     "expires:%lu\r\n"
                     "buckets:%lu\r\n"
                     "db0:keys=%lu,expires=%lu,avg_ttl=0\r\n",
                     KV_APPLIANCE, uptime, uptime / 86400, config.hz, stats.connected_clients,
                     heap.used_bytes, heap.heap_bytes, heap.allocations, heap.failed,
                     stats.connections_received, stats.rejected_connections,
                     stats.commands_processed, db.expired_keys, db.hits, db.misses, avg_cycles,
                     stats.timed_commands, db.keys, db.expires, db.buckets, db.keys, db.expires);
    reply_bulk(&c->out, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

/* ---- strings ---- */

struct set_options {
    bool nx, xx, keep_ttl;
    int64_t ttl_ms; /* 0 = none */
};

static bool parse_set_options(struct client *c, const struct arg *opt, size_t count,
                              struct set_options *out)
{
    *out = (struct set_options){0};
    for (size_t i = 0; i < count; i++) {
        bool ex = arg_is(&opt[i], "ex"), px = arg_is(&opt[i], "px");
        if ((ex || px) && i + 1 < count && !out->ttl_ms && !out->keep_ttl) {
            int64_t amount;
            if (!arg_int(&opt[++i], &amount)) {
                reply_error(&c->out, "%s", NOT_INTEGER);
                return false;
            }
            if (amount <= 0 || amount > INT64_MAX / 1000 / 2) {
                reply_error(&c->out, "ERR invalid expire time in 'set' command");
                return false;
            }
            out->ttl_ms = ex ? amount * 1000 : amount;
        } else if (arg_is(&opt[i], "nx") && !out->xx) {
            out->nx = true;
        } else if (arg_is(&opt[i], "xx") && !out->nx) {
            out->xx = true;
        } else if (arg_is(&opt[i], "keepttl") && !out->ttl_ms) {
            out->keep_ttl = true;
        } else {
            reply_error(&c->out, "ERR syntax error");
            return false;
        }
    }
    return true;
}

/*
 * SET copies the value, which may be large, so it does not hold the lock
 * for the whole command: it looks the key up, copies the value unlocked,
 * then locks again to install it.
 *
 * THE RACE (kvstore-race): `existing` is used after the unlocked copy as if
 * it were still in the table. In kvstore-race the timer interrupt's reaper
 * can unlink and free that entry, expired or expiring, while the copy runs;
 * entry_set_value() then frees the old value through the freed entry, whose
 * poisoned value pointer (0x10) points into the unmapped first page: the VM
 * stops with an unmapped access. In kvstore the reaper runs in the main
 * loop, never inside this window, so the same code is safe.
 */
static void cmd_set(struct client *c, const struct arg *argv, size_t argc)
{
    struct set_options opt;
    if (!parse_set_options(c, argv + 3, argc - 3, &opt))
        return;
    const struct arg *key = &argv[1];

    /* SET replaces value and expiry anyway, so an expired entry is reused as it is. */
    db_lock_t lock = db_lock();
    struct entry *existing = db_find(key->ptr, key->len);
    bool live = existing && !entry_expired(existing, now_ms());
    int64_t old_expire = live ? existing->expire_at_ms : 0;
    db_unlock(lock);
    if ((opt.nx && live) || (opt.xx && !live)) {
        reply_null(&c->out);
        return;
    }
    int64_t expire_at = opt.ttl_ms ? now_ms() + opt.ttl_ms : (opt.keep_ttl ? old_expire : 0);

    struct bstr *value = bstr_new(argv[2].ptr, argv[2].len); /* unlocked: the window */
    if (!value) {
        reply_error(&c->out, "%s", OOM);
        return;
    }

    lock = db_lock();
    union kv_value v = {.str = value};
    if (existing) {
        entry_set_value(existing, v);
        entry_set_expire(existing, expire_at);
    } else {
        existing = db_add(key->ptr, key->len, v);
        if (existing)
            entry_set_expire(existing, expire_at);
    }
    db_unlock(lock);
    if (existing) {
        reply_simple(&c->out, "OK");
    } else {
        bstr_free(value);
        reply_error(&c->out, "%s", OOM);
    }
}

static void cmd_get(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    struct entry *e = lookup(&argv[1]);
    if (!e)
        reply_null(&c->out);
    else if (entry_type(e) != TYPE_STRING)
        reply_error(&c->out, "%s", WRONGTYPE);
    else
        reply_entry_string(&c->out, e);
}

static void cmd_mget(struct client *c, const struct arg *argv, size_t argc)
{
    reply_array(&c->out, (int64_t)argc - 1);
    for (size_t i = 1; i < argc; i++) {
        struct entry *e = lookup(&argv[i]);
        if (e && entry_type(e) == TYPE_STRING)
            reply_entry_string(&c->out, e);
        else
            reply_null(&c->out);
    }
}

/* Store a copy of value under key, replacing anything there and clearing its expiry. */
static bool store_string(const struct arg *key, const char *data, size_t len)
{
    struct bstr *value = bstr_new(data, len);
    if (!value)
        return false;
    union kv_value v = {.str = value};
    struct entry *e = db_find(key->ptr, key->len);
    if (e) {
        entry_set_value(e, v);
        entry_set_expire(e, 0);
        return true;
    }
    if (db_add(key->ptr, key->len, v))
        return true;
    bstr_free(value);
    return false;
}

static void cmd_mset(struct client *c, const struct arg *argv, size_t argc)
{
    if (argc % 2 != 1) {
        reply_error(&c->out, "ERR wrong number of arguments for 'mset' command");
        return;
    }
    for (size_t i = 1; i < argc; i += 2) {
        if (!store_string(&argv[i], argv[i + 1].ptr, argv[i + 1].len)) {
            reply_error(&c->out, "%s", OOM);
            return;
        }
    }
    reply_simple(&c->out, "OK");
}

static void cmd_strlen(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    struct entry *e = lookup(&argv[1]);
    if (e && entry_type(e) != TYPE_STRING)
        reply_error(&c->out, "%s", WRONGTYPE);
    else
        reply_int(&c->out, e ? e->value.str->len : 0);
}

static void cmd_append(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    struct entry *e = lookup(&argv[1]);
    if (!e) {
        if (!store_string(&argv[1], argv[2].ptr, argv[2].len))
            reply_error(&c->out, "%s", OOM);
        else
            reply_int(&c->out, (int64_t)argv[2].len);
        return;
    }
    if (entry_type(e) != TYPE_STRING) {
        reply_error(&c->out, "%s", WRONGTYPE);
        return;
    }
    struct bstr *old = e->value.str;
    size_t len = (size_t)old->len + argv[2].len;
    struct bstr *joined = len <= BSTR_MAX_LEN ? malloc(sizeof(*joined) + len + 1) : NULL;
    if (!joined) {
        reply_error(&c->out, "%s", OOM);
        return;
    }
    joined->type = TYPE_STRING;
    joined->len = (uint32_t)len;
    memcpy(joined->data, old->data, old->len);
    memcpy(joined->data + old->len, argv[2].ptr, argv[2].len);
    joined->data[len] = '\0';
    entry_set_value(e, (union kv_value){.str = joined});
    reply_int(&c->out, (int64_t)len);
}

/* INCR, DECR, INCRBY, DECRBY. */
static void increment(struct client *c, const struct arg *key, int64_t delta)
{
    struct entry *e = lookup(key);
    int64_t value = 0;
    if (e && entry_type(e) != TYPE_STRING) {
        reply_error(&c->out, "%s", WRONGTYPE);
        return;
    }
    if (e && !parse_i64(e->value.str->data, e->value.str->len, &value)) {
        reply_error(&c->out, "%s", NOT_INTEGER);
        return;
    }
    if ((delta > 0 && value > INT64_MAX - delta) || (delta < 0 && value < INT64_MIN - delta)) {
        reply_error(&c->out, "ERR increment or decrement would overflow");
        return;
    }
    value += delta;
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%ld", (long)value);
    struct bstr *s = bstr_new(digits, (size_t)n);
    if (!s) {
        reply_error(&c->out, "%s", OOM);
        return;
    }
    if (e) {
        entry_set_value(e, (union kv_value){.str = s}); /* INCR keeps the expiry */
    } else if (!db_add(key->ptr, key->len, (union kv_value){.str = s})) {
        bstr_free(s);
        reply_error(&c->out, "%s", OOM);
        return;
    }
    reply_int(&c->out, value);
}

static void cmd_incr(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    increment(c, &argv[1], 1);
}

static void cmd_decr(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    increment(c, &argv[1], -1);
}

static void cmd_incrby(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    int64_t delta;
    if (!arg_int(&argv[2], &delta))
        reply_error(&c->out, "%s", NOT_INTEGER);
    else
        increment(c, &argv[1], delta);
}

static void cmd_decrby(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    int64_t delta;
    if (!arg_int(&argv[2], &delta) || delta == INT64_MIN)
        reply_error(&c->out, "%s", NOT_INTEGER);
    else
        increment(c, &argv[1], -delta);
}

/* ---- keys ---- */

static void cmd_del(struct client *c, const struct arg *argv, size_t argc)
{
    int64_t deleted = 0;
    for (size_t i = 1; i < argc; i++) {
        if (lookup(&argv[i]) && db_delete(argv[i].ptr, argv[i].len))
            deleted++;
    }
    reply_int(&c->out, deleted);
}

static void cmd_exists(struct client *c, const struct arg *argv, size_t argc)
{
    int64_t found = 0;
    for (size_t i = 1; i < argc; i++)
        found += lookup(&argv[i]) != NULL;
    reply_int(&c->out, found);
}

static const char *const type_names[] = {
    [TYPE_STRING] = "string", [TYPE_LIST] = "list", [TYPE_HASH] = "hash",
    [TYPE_SET] = "set",       [TYPE_ZSET] = "zset",
};

static void cmd_type(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    struct entry *e = lookup(&argv[1]);
    if (!e)
        reply_simple(&c->out, "none");
    else
        reply_simple(&c->out, type_names[entry_type(e)]);
}

/* EXPIRE and PEXPIRE: a time in the past deletes the key, as in Redis. */
static void set_expiry(struct client *c, const struct arg *argv, int64_t unit_ms)
{
    int64_t amount;
    if (!arg_int(&argv[2], &amount)) {
        reply_error(&c->out, "%s", NOT_INTEGER);
        return;
    }
    if (amount > INT64_MAX / 1000 / 2 || amount < -(INT64_MAX / 1000 / 2)) {
        reply_error(&c->out, "ERR invalid expire time in 'expire' command");
        return;
    }
    struct entry *e = lookup(&argv[1]);
    if (!e) {
        reply_int(&c->out, 0);
        return;
    }
    if (amount <= 0)
        db_delete_entry(e);
    else
        entry_set_expire(e, now_ms() + amount * unit_ms);
    reply_int(&c->out, 1);
}

static void cmd_expire(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    set_expiry(c, argv, 1000);
}

static void cmd_pexpire(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    set_expiry(c, argv, 1);
}

/* TTL and PTTL: -2 no such key, -1 no expiry. */
static void report_ttl(struct client *c, const struct arg *key, bool in_ms)
{
    struct entry *e = lookup(key);
    if (!e) {
        reply_int(&c->out, -2);
    } else if (!e->expire_at_ms) {
        reply_int(&c->out, -1);
    } else {
        int64_t left = e->expire_at_ms - now_ms();
        reply_int(&c->out, in_ms ? left : (left + 500) / 1000);
    }
}

static void cmd_ttl(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    report_ttl(c, &argv[1], false);
}

static void cmd_pttl(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    report_ttl(c, &argv[1], true);
}

static void cmd_persist(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    struct entry *e = lookup(&argv[1]);
    bool had = e && e->expire_at_ms;
    if (had)
        entry_set_expire(e, 0);
    reply_int(&c->out, had);
}

/* ---- lists ---- */

/* The list under key for a write, created if absent; NULL after replying an error. */
static struct kv_list *list_for_write(struct client *c, const struct arg *key)
{
    struct entry *e = lookup(key);
    if (e) {
        if (entry_type(e) == TYPE_LIST)
            return e->value.list;
        reply_error(&c->out, "%s", WRONGTYPE);
        return NULL;
    }
    struct kv_list *list = list_new();
    if (list && db_add(key->ptr, key->len, (union kv_value){.list = list}))
        return list;
    list_free(list);
    reply_error(&c->out, "%s", OOM);
    return NULL;
}

static void push(struct client *c, const struct arg *argv, size_t argc, bool front)
{
    struct kv_list *list = list_for_write(c, &argv[1]);
    if (!list)
        return;
    bool out_of_memory = false;
    for (size_t i = 2; i < argc && !out_of_memory; i++) {
        struct bstr *item = bstr_new(argv[i].ptr, argv[i].len);
        out_of_memory = !item || !(front ? list_push_front(list, item) : list_push_back(list, item));
        if (out_of_memory)
            bstr_free(item);
    }
    int64_t length = list->count;
    if (length == 0) /* a new list nothing could be pushed into */
        db_delete(argv[1].ptr, argv[1].len);
    if (out_of_memory)
        reply_error(&c->out, "%s", OOM);
    else
        reply_int(&c->out, length);
}

static void cmd_lpush(struct client *c, const struct arg *argv, size_t argc)
{
    push(c, argv, argc, true);
}

static void cmd_rpush(struct client *c, const struct arg *argv, size_t argc)
{
    push(c, argv, argc, false);
}

/* The list under key for reading: NULL if absent (after no reply) or the wrong type (after an error). */
static struct entry *list_entry(struct client *c, const struct arg *key, bool *wrong_type)
{
    struct entry *e = lookup(key);
    *wrong_type = e && entry_type(e) != TYPE_LIST;
    if (*wrong_type) {
        reply_error(&c->out, "%s", WRONGTYPE);
        return NULL;
    }
    return e;
}

/* LPOP and RPOP, with the optional count of Redis 6.2. */
static void pop(struct client *c, const struct arg *argv, size_t argc, bool front)
{
    int64_t count = 1;
    if (argc > 3 || (argc == 3 && (!arg_int(&argv[2], &count) || count < 0))) {
        reply_error(&c->out, argc > 3 ? "ERR syntax error" : "ERR value is out of range, must be positive");
        return;
    }
    bool wrong_type;
    struct entry *e = list_entry(c, &argv[1], &wrong_type);
    if (wrong_type)
        return;
    if (!e) {
        if (argc == 3)
            reply_null_array(&c->out);
        else
            reply_null(&c->out);
        return;
    }
    struct kv_list *list = e->value.list;
    if (argc == 3)
        reply_array(&c->out, count < list->count ? count : list->count);
    for (int64_t i = 0; i < count && list->count; i++) {
        struct bstr *item = front ? list_pop_front(list) : list_pop_back(list);
        reply_bulk(&c->out, item->data, item->len);
        bstr_free(item);
    }
    if (!list->count)
        db_delete_entry(e);
}

static void cmd_lpop(struct client *c, const struct arg *argv, size_t argc)
{
    pop(c, argv, argc, true);
}

static void cmd_rpop(struct client *c, const struct arg *argv, size_t argc)
{
    pop(c, argv, argc, false);
}

static void cmd_llen(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = list_entry(c, &argv[1], &wrong_type);
    if (!wrong_type)
        reply_int(&c->out, e ? e->value.list->count : 0);
}

static void cmd_lrange(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    int64_t start, stop;
    if (!arg_int(&argv[2], &start) || !arg_int(&argv[3], &stop)) {
        reply_error(&c->out, "%s", NOT_INTEGER);
        return;
    }
    bool wrong_type;
    struct entry *e = list_entry(c, &argv[1], &wrong_type);
    if (wrong_type)
        return;
    int64_t len = e ? e->value.list->count : 0;
    if (start < 0)
        start = start + len < 0 ? 0 : start + len;
    if (stop < 0)
        stop += len;
    if (stop >= len)
        stop = len - 1;
    if (!e || start > stop) {
        reply_array(&c->out, 0);
        return;
    }
    reply_array(&c->out, stop - start + 1);
    for (int64_t i = start; i <= stop; i++) {
        const struct bstr *item = list_at(e->value.list, (uint32_t)i);
        reply_bulk(&c->out, item->data, item->len);
    }
}

/* ---- hashes, sets, sorted sets ---- */

static uint64_t random_state = 0x9e3779b97f4a7c15ULL;

void commands_seed(uint64_t seed)
{
    random_state = seed | 1;
}

/* xorshift64, seeded from the entropy device at boot: SPOP's choice. */
static uint64_t random_next(void)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

/*
 * The value of the given type under key, created empty by make() if the key
 * is absent; NULL after replying an error.
 */
static void *collection_for_write(struct client *c, const struct arg *key, uint32_t type,
                                  void *(*make)(void))
{
    struct entry *e = lookup(key);
    if (e) {
        if (entry_type(e) == type)
            return e->value.any;
        reply_error(&c->out, "%s", WRONGTYPE);
        return NULL;
    }
    union kv_value v = {.any = make()};
    if (v.any && db_add(key->ptr, key->len, v))
        return v.any;
    if (v.any)
        value_free(v);
    reply_error(&c->out, "%s", OOM);
    return NULL;
}

/* The entry under key if it holds type; NULL if absent, or after a WRONGTYPE error. */
static struct entry *collection_entry(struct client *c, const struct arg *key, uint32_t type,
                                      bool *wrong_type)
{
    struct entry *e = lookup(key);
    *wrong_type = e && entry_type(e) != type;
    if (*wrong_type) {
        reply_error(&c->out, "%s", WRONGTYPE);
        return NULL;
    }
    return e;
}

static void *make_hash(void) { return hash_new(); }
static void *make_set(void) { return set_new(); }
static void *make_zset(void) { return zset_new(); }

static void cmd_hset(struct client *c, const struct arg *argv, size_t argc)
{
    if (argc % 2 != 0) {
        reply_error(&c->out, "ERR wrong number of arguments for 'hset' command");
        return;
    }
    struct kv_hash *hash = collection_for_write(c, &argv[1], TYPE_HASH, make_hash);
    if (!hash)
        return;
    int64_t added = 0;
    for (size_t i = 2; i < argc; i += 2) {
        int result = hash_set(hash, argv[i].ptr, argv[i].len, argv[i + 1].ptr, argv[i + 1].len);
        if (result < 0) {
            reply_error(&c->out, "%s", OOM);
            return;
        }
        added += result;
    }
    reply_int(&c->out, added);
}

static void cmd_hget(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_HASH, &wrong_type);
    if (wrong_type)
        return;
    struct bstr *value = e ? hash_get(e->value.hash, argv[2].ptr, argv[2].len) : NULL;
    if (value)
        reply_bulk(&c->out, value->data, value->len);
    else
        reply_null(&c->out);
}

static void cmd_hdel(struct client *c, const struct arg *argv, size_t argc)
{
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_HASH, &wrong_type);
    if (wrong_type)
        return;
    int64_t deleted = 0;
    for (size_t i = 2; e && i < argc; i++)
        deleted += hash_delete(e->value.hash, argv[i].ptr, argv[i].len);
    if (e && e->value.hash->count == 0)
        db_delete_entry(e);
    reply_int(&c->out, deleted);
}

static void cmd_hlen(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_HASH, &wrong_type);
    if (!wrong_type)
        reply_int(&c->out, e ? e->value.hash->count : 0);
}

static void cmd_hgetall(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_HASH, &wrong_type);
    if (wrong_type)
        return;
    uint32_t count = e ? e->value.hash->count : 0;
    reply_array(&c->out, 2 * (int64_t)count);
    for (uint32_t i = 0; i < 2 * count; i++) {
        const struct bstr *s = e->value.hash->items[i];
        reply_bulk(&c->out, s->data, s->len);
    }
}

static void cmd_sadd(struct client *c, const struct arg *argv, size_t argc)
{
    struct kv_set *set = collection_for_write(c, &argv[1], TYPE_SET, make_set);
    if (!set)
        return;
    int64_t added = 0;
    for (size_t i = 2; i < argc; i++) {
        int result = set_add(set, argv[i].ptr, argv[i].len);
        if (result < 0) {
            reply_error(&c->out, "%s", OOM);
            return;
        }
        added += result;
    }
    reply_int(&c->out, added);
}

static void cmd_srem(struct client *c, const struct arg *argv, size_t argc)
{
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_SET, &wrong_type);
    if (wrong_type)
        return;
    int64_t removed = 0;
    for (size_t i = 2; e && i < argc; i++)
        removed += set_remove(e->value.set, argv[i].ptr, argv[i].len);
    if (e && e->value.set->count == 0)
        db_delete_entry(e);
    reply_int(&c->out, removed);
}

static void cmd_spop(struct client *c, const struct arg *argv, size_t argc)
{
    int64_t count = 1;
    if (argc > 3 || (argc == 3 && (!arg_int(&argv[2], &count) || count < 0))) {
        reply_error(&c->out, argc > 3 ? "ERR syntax error" : "ERR value is out of range, must be positive");
        return;
    }
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_SET, &wrong_type);
    if (wrong_type)
        return;
    if (!e) {
        if (argc == 3)
            reply_array(&c->out, 0);
        else
            reply_null(&c->out);
        return;
    }
    struct kv_set *set = e->value.set;
    if (argc == 3)
        reply_array(&c->out, count < set->count ? count : set->count);
    for (int64_t i = 0; i < count && set->count; i++) {
        struct bstr *member = set_take(set, (uint32_t)(random_next() % set->count));
        reply_bulk(&c->out, member->data, member->len);
        bstr_free(member);
    }
    if (set->count == 0)
        db_delete_entry(e);
}

static void cmd_scard(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_SET, &wrong_type);
    if (!wrong_type)
        reply_int(&c->out, e ? e->value.set->count : 0);
}

static void cmd_sismember(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_SET, &wrong_type);
    if (!wrong_type)
        reply_int(&c->out, e && set_contains(e->value.set, argv[2].ptr, argv[2].len));
}

static void cmd_smembers(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_SET, &wrong_type);
    if (wrong_type)
        return;
    uint32_t count = e ? e->value.set->count : 0;
    reply_array(&c->out, count);
    for (uint32_t i = 0; i < count; i++) {
        const struct bstr *s = e->value.set->members[i];
        reply_bulk(&c->out, s->data, s->len);
    }
}

static void reply_score(struct reply_buf *out, int64_t score)
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%ld", (long)score);
    reply_bulk(out, digits, (size_t)n);
}

static void cmd_zadd(struct client *c, const struct arg *argv, size_t argc)
{
    if (argc % 2 != 0) {
        reply_error(&c->out, "ERR syntax error");
        return;
    }
    for (size_t i = 2; i < argc; i += 2) {
        int64_t score;
        if (!arg_int(&argv[i], &score)) {
            reply_error(&c->out, "ERR value is not a valid float (kvstore: integer scores only)");
            return;
        }
    }
    struct kv_zset *zset = collection_for_write(c, &argv[1], TYPE_ZSET, make_zset);
    if (!zset)
        return;
    int64_t added = 0;
    for (size_t i = 2; i < argc; i += 2) {
        int64_t score;
        arg_int(&argv[i], &score);
        int result = zset_add(zset, score, argv[i + 1].ptr, argv[i + 1].len);
        if (result < 0) {
            reply_error(&c->out, "%s", OOM);
            return;
        }
        added += result;
    }
    reply_int(&c->out, added);
}

static void cmd_zpopmin(struct client *c, const struct arg *argv, size_t argc)
{
    int64_t count = 1;
    if (argc > 3 || (argc == 3 && (!arg_int(&argv[2], &count) || count < 0))) {
        reply_error(&c->out, argc > 3 ? "ERR syntax error" : "ERR value is out of range, must be positive");
        return;
    }
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_ZSET, &wrong_type);
    if (wrong_type)
        return;
    struct kv_zset *zset = e ? e->value.zset : NULL;
    int64_t popped = zset ? (count < zset->count ? count : zset->count) : 0;
    reply_array(&c->out, 2 * popped);
    for (int64_t i = 0; i < popped; i++) {
        struct zset_item item = zset_pop_min(zset);
        reply_bulk(&c->out, item.member->data, item.member->len);
        reply_score(&c->out, item.score);
        bstr_free(item.member);
    }
    if (zset && zset->count == 0)
        db_delete_entry(e);
}

static void cmd_zcard(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_ZSET, &wrong_type);
    if (!wrong_type)
        reply_int(&c->out, e ? e->value.zset->count : 0);
}

static void cmd_zscore(struct client *c, const struct arg *argv, size_t argc)
{
    (void)argc;
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_ZSET, &wrong_type);
    if (wrong_type)
        return;
    int64_t score;
    if (e && zset_score(e->value.zset, argv[2].ptr, argv[2].len, &score))
        reply_score(&c->out, score);
    else
        reply_null(&c->out);
}

static void cmd_zrange(struct client *c, const struct arg *argv, size_t argc)
{
    int64_t start, stop;
    bool with_scores = argc == 5 && arg_is(&argv[4], "withscores");
    if (argc > 5 || (argc == 5 && !with_scores)) {
        reply_error(&c->out, "ERR syntax error");
        return;
    }
    if (!arg_int(&argv[2], &start) || !arg_int(&argv[3], &stop)) {
        reply_error(&c->out, "%s", NOT_INTEGER);
        return;
    }
    bool wrong_type;
    struct entry *e = collection_entry(c, &argv[1], TYPE_ZSET, &wrong_type);
    if (wrong_type)
        return;
    int64_t len = e ? e->value.zset->count : 0;
    if (start < 0)
        start = start + len < 0 ? 0 : start + len;
    if (stop < 0)
        stop += len;
    if (stop >= len)
        stop = len - 1;
    if (start > stop) {
        reply_array(&c->out, 0);
        return;
    }
    reply_array(&c->out, (stop - start + 1) * (with_scores ? 2 : 1));
    for (int64_t i = start; i <= stop; i++) {
        const struct zset_item *item = &e->value.zset->items[i];
        reply_bulk(&c->out, item->member->data, item->member->len);
        if (with_scores)
            reply_score(&c->out, item->score);
    }
}

/* ---- dispatch ---- */

static const struct command commands[] = {
    {"get", 3, cmd_get, 2, 0},
    {"set", 3, cmd_set, -3, CMD_OWN_LOCKING},
    {"incr", 4, cmd_incr, 2, 0},
    {"decr", 4, cmd_decr, 2, 0},
    {"incrby", 6, cmd_incrby, 3, 0},
    {"decrby", 6, cmd_decrby, 3, 0},
    {"lpush", 5, cmd_lpush, -3, 0},
    {"rpush", 5, cmd_rpush, -3, 0},
    {"lpop", 4, cmd_lpop, -2, 0},
    {"rpop", 4, cmd_rpop, -2, 0},
    {"lrange", 6, cmd_lrange, 4, 0},
    {"llen", 4, cmd_llen, 2, 0},
    {"del", 3, cmd_del, -2, 0},
    {"exists", 6, cmd_exists, -2, 0},
    {"expire", 6, cmd_expire, -3, 0},
    {"pexpire", 7, cmd_pexpire, -3, 0},
    {"ttl", 3, cmd_ttl, 2, 0},
    {"pttl", 4, cmd_pttl, 2, 0},
    {"persist", 7, cmd_persist, 2, 0},
    {"type", 4, cmd_type, 2, 0},
    {"mget", 4, cmd_mget, -2, 0},
    {"mset", 4, cmd_mset, -3, 0},
    {"strlen", 6, cmd_strlen, 2, 0},
    {"append", 6, cmd_append, 3, 0},
    {"ping", 4, cmd_ping, -1, 0},
    {"echo", 4, cmd_echo, 2, 0},
    {"dbsize", 6, cmd_dbsize, 1, 0},
    {"flushall", 8, cmd_flushall, -1, 0},
    {"flushdb", 7, cmd_flushall, -1, 0},
    {"info", 4, cmd_info, -1, 0},
    {"config", 6, cmd_config, -2, 0},
    {"select", 6, cmd_select, 2, 0},
    {"command", 7, cmd_command, -1, 0},
    {"client", 6, cmd_client, -2, 0},
    {"quit", 4, cmd_quit, -1, 0},
    {"hset", 4, cmd_hset, -4, 0},
    {"hget", 4, cmd_hget, 3, 0},
    {"hdel", 4, cmd_hdel, -3, 0},
    {"hlen", 4, cmd_hlen, 2, 0},
    {"hgetall", 7, cmd_hgetall, 2, 0},
    {"sadd", 4, cmd_sadd, -3, 0},
    {"srem", 4, cmd_srem, -3, 0},
    {"spop", 4, cmd_spop, -2, 0},
    {"scard", 5, cmd_scard, 2, 0},
    {"sismember", 9, cmd_sismember, 3, 0},
    {"smembers", 8, cmd_smembers, 2, 0},
    {"zadd", 4, cmd_zadd, -4, 0},
    {"zpopmin", 7, cmd_zpopmin, -2, 0},
    {"zcard", 5, cmd_zcard, 2, 0},
    {"zscore", 6, cmd_zscore, 3, 0},
    {"zrange", 6, cmd_zrange, -4, 0},
};

static const struct command *find_command(const struct arg *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct command *cmd = &commands[i];
        if (name->len == cmd->name_len && strncasecmp(name->ptr, cmd->name, name->len) == 0)
            return cmd;
    }
    return NULL;
}

static bool arity_ok(const struct command *cmd, size_t argc)
{
    return cmd->arity > 0 ? argc == (size_t)cmd->arity : argc >= (size_t)-cmd->arity;
}

/* Error text may quote client bytes: keep it short and printable. */
static void quote_arg(char *buf, size_t size, const struct arg *a)
{
    size_t n = a->len < size - 1 ? a->len : size - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (a->ptr[i] >= 0x20 && a->ptr[i] < 0x7f && a->ptr[i] != '\'') ? a->ptr[i] : '?';
    buf[n] = '\0';
}

static void reply_unknown(struct client *c, const struct arg *argv, size_t argc)
{
    char name[64], args[3][32];
    quote_arg(name, sizeof(name), &argv[0]);
    size_t shown = argc - 1 < 3 ? argc - 1 : 3;
    for (size_t i = 0; i < shown; i++)
        quote_arg(args[i], sizeof(args[i]), &argv[i + 1]);
    reply_error(&c->out, "ERR unknown command '%s', with args beginning with: %s%s%s%s%s%s%s%s%s",
                name, shown > 0 ? "'" : "", shown > 0 ? args[0] : "", shown > 0 ? "' " : "",
                shown > 1 ? "'" : "", shown > 1 ? args[1] : "", shown > 1 ? "' " : "",
                shown > 2 ? "'" : "", shown > 2 ? args[2] : "", shown > 2 ? "' " : "");
}

void command_execute(struct client *c, struct request *req)
{
    const struct arg *argv = req->argv;
    const struct command *cmd = find_command(&argv[0]);
    if (!cmd) {
        reply_unknown(c, argv, req->argc);
        return;
    }
    if (!arity_ok(cmd, req->argc)) {
        reply_error(&c->out, "ERR wrong number of arguments for '%s' command", cmd->name);
        return;
    }
    if (cmd->flags & CMD_OWN_LOCKING) {
        cmd->run(c, argv, req->argc);
        return;
    }
    db_lock_t lock = db_lock();
    cmd->run(c, argv, req->argc);
    db_unlock(lock);
}
