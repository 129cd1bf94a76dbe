/*
 * RESP2, the Redis protocol: parsing requests (arrays of bulk strings, or
 * inline text lines) and building replies.
 */
#ifndef KV_RESP_H
#define KV_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One request argument: points into the client's input buffer. */
struct arg {
    const char *ptr;
    size_t len;
};

/* Limits, like Redis's: larger requests are protocol errors. */
#define RESP_MAX_ARGS (1024 * 1024)
#define RESP_MAX_INLINE (64 * 1024)
#define RESP_MAX_BULK (32 * 1024 * 1024)

enum parse_status {
    PARSE_INCOMPLETE, /* need more bytes */
    PARSE_OK,         /* a request (possibly with zero arguments: skip it) */
    PARSE_ERROR,      /* protocol error: reply and close */
};

struct request {
    struct arg *argv;     /* grown by the parser as needed */
    size_t argc;
    size_t argv_cap;
    size_t consumed;      /* bytes the request occupied */
    const char *error;    /* for PARSE_ERROR */
};

/* Parse one request from buf[0..len). */
enum parse_status resp_parse(const char *buf, size_t len, struct request *req);
void request_free(struct request *req);

/* A growable output buffer. Appends that run out of memory set failed. */
struct reply_buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

void reply_append(struct reply_buf *out, const void *data, size_t len);
void reply_simple(struct reply_buf *out, const char *status);          /* +status */
void reply_error(struct reply_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void reply_int(struct reply_buf *out, int64_t value);                  /* :value */
void reply_bulk(struct reply_buf *out, const char *data, size_t len);  /* $len data */
void reply_null(struct reply_buf *out);                                /* $-1 */
void reply_null_array(struct reply_buf *out);                          /* *-1 */
void reply_array(struct reply_buf *out, int64_t count);                /* *count */
void reply_buf_reset(struct reply_buf *out, size_t keep_cap);

#endif
