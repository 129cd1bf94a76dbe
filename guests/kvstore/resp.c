#include "resp.h"
#include "sdk.h"

/* Position of "\r\n" (or a bare "\n") in buf[0..len), or -1. Sets *eol_len. */
static long find_line_end(const char *buf, size_t len, size_t *eol_len)
{
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return -1;
    size_t pos = (size_t)(nl - buf);
    *eol_len = (pos > 0 && buf[pos - 1] == '\r') ? 2 : 1;
    return (long)(pos + 1 - *eol_len);
}

static bool push_arg(struct request *req, const char *ptr, size_t len)
{
    if (req->argc == req->argv_cap) {
        size_t cap = req->argv_cap ? req->argv_cap * 2 : 16;
        struct arg *argv = realloc(req->argv, cap * sizeof(*argv));
        if (!argv)
            return false;
        req->argv = argv;
        req->argv_cap = cap;
    }
    req->argv[req->argc++] = (struct arg){ptr, len};
    return true;
}

static enum parse_status fail(struct request *req, const char *why)
{
    req->error = why;
    return PARSE_ERROR;
}

/*
 * "<prefix><integer>\r\n" at buf, as in "*3\r\n" or "$5\r\n": returns the
 * bytes used, 0 if incomplete, -1 if malformed. Parses while it scans:
 * this runs for every argument of every request.
 */
static long parse_count_line(const char *buf, size_t len, int64_t *value)
{
    size_t pos = 1;
    bool negative = pos < len && buf[pos] == '-';
    pos += negative;
    size_t first_digit = pos;
    int64_t n = 0;
    for (; pos < len; pos++) {
        unsigned digit = (unsigned)(buf[pos] - '0');
        if (digit > 9)
            break;
        if (pos - first_digit >= 18)
            return -1; /* larger than any count we accept */
        n = n * 10 + digit;
    }
    if (pos + 2 > len)
        return len > 32 ? -1 : 0;
    if (pos == first_digit || buf[pos] != '\r' || buf[pos + 1] != '\n')
        return -1;
    *value = negative ? -n : n;
    return (long)(pos + 2);
}

static enum parse_status parse_multibulk(const char *buf, size_t len, struct request *req)
{
    int64_t count;
    long used = parse_count_line(buf, len, &count);
    if (used < 0)
        return fail(req, "invalid multibulk length");
    if (used == 0)
        return PARSE_INCOMPLETE;
    if (count > RESP_MAX_ARGS)
        return fail(req, "invalid multibulk length");
    size_t pos = (size_t)used;
    for (int64_t i = 0; i < count; i++) {
        if (pos >= len)
            return PARSE_INCOMPLETE;
        if (buf[pos] != '$')
            return fail(req, "expected '$'");
        int64_t bulk_len;
        used = parse_count_line(buf + pos, len - pos, &bulk_len);
        if (used < 0 || (used > 0 && (bulk_len < 0 || bulk_len > RESP_MAX_BULK)))
            return fail(req, "invalid bulk length");
        if (used == 0)
            return PARSE_INCOMPLETE;
        pos += (size_t)used;
        if (len - pos < (size_t)bulk_len + 2)
            return PARSE_INCOMPLETE;
        if (buf[pos + bulk_len] != '\r' || buf[pos + bulk_len + 1] != '\n')
            return fail(req, "bulk string not followed by CRLF");
        if (!push_arg(req, buf + pos, (size_t)bulk_len))
            return fail(req, "out of memory");
        pos += (size_t)bulk_len + 2;
    }
    req->consumed = pos;
    return PARSE_OK;
}

/* A plain text line split at spaces, as telnet or nc send. */
static enum parse_status parse_inline(const char *buf, size_t len, struct request *req)
{
    size_t eol;
    long end = find_line_end(buf, len, &eol);
    if (end < 0)
        return len > RESP_MAX_INLINE ? fail(req, "too big inline request") : PARSE_INCOMPLETE;
    for (size_t pos = 0; pos < (size_t)end;) {
        while (pos < (size_t)end && (buf[pos] == ' ' || buf[pos] == '\t'))
            pos++;
        size_t start = pos;
        while (pos < (size_t)end && buf[pos] != ' ' && buf[pos] != '\t')
            pos++;
        if (pos > start && !push_arg(req, buf + start, pos - start))
            return fail(req, "out of memory");
    }
    req->consumed = (size_t)end + eol;
    return PARSE_OK;
}

enum parse_status resp_parse(const char *buf, size_t len, struct request *req)
{
    req->argc = 0;
    req->consumed = 0;
    req->error = NULL;
    if (len == 0)
        return PARSE_INCOMPLETE;
    if (buf[0] == '*')
        return parse_multibulk(buf, len, req);
    return parse_inline(buf, len, req);
}

void request_free(struct request *req)
{
    free(req->argv);
    req->argv = NULL;
    req->argv_cap = 0;
    req->argc = 0;
}

static bool reserve(struct reply_buf *out, size_t extra)
{
    if (out->failed)
        return false;
    if (out->len + extra <= out->cap)
        return true;
    size_t cap = out->cap ? out->cap : 256;
    while (cap < out->len + extra)
        cap *= 2;
    char *data = realloc(out->data, cap);
    if (!data) {
        out->failed = true;
        return false;
    }
    out->data = data;
    out->cap = cap;
    return true;
}

void reply_append(struct reply_buf *out, const void *data, size_t len)
{
    if (!reserve(out, len))
        return;
    memcpy(out->data + out->len, data, len);
    out->len += len;
}

/* Decimal digits of value at buf (room for 20); returns their count. snprintf is too slow here. */
static size_t format_u64(char *buf, uint64_t value)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

/* Writes prefix, a decimal number and CRLF at p (room for 24); returns the end. */
static char *put_number_line(char *p, char prefix, int64_t value)
{
    *p++ = prefix;
    if (value < 0) {
        *p++ = '-';
        p += format_u64(p, -(uint64_t)value);
    } else {
        p += format_u64(p, (uint64_t)value);
    }
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

#define NUMBER_LINE_MAX 24

static void append_number_line(struct reply_buf *out, char prefix, int64_t value)
{
    if (!reserve(out, NUMBER_LINE_MAX))
        return;
    out->len = (size_t)(put_number_line(out->data + out->len, prefix, value) - out->data);
}

void reply_simple(struct reply_buf *out, const char *status)
{
    if (status[0] == 'O' && status[1] == 'K' && !status[2]) {
        reply_append(out, "+OK\r\n", 5);
        return;
    }
    reply_append(out, "+", 1);
    reply_append(out, status, strlen(status));
    reply_append(out, "\r\n", 2);
}

void reply_error(struct reply_buf *out, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(line))
        n = sizeof(line) - 1;
    /* A CR or LF inside would end the error line early and desynchronise the client. */
    for (int i = 0; i < n; i++) {
        if (line[i] == '\r' || line[i] == '\n')
            line[i] = ' ';
    }
    reply_append(out, "-", 1);
    reply_append(out, line, (size_t)n);
    reply_append(out, "\r\n", 2);
}

void reply_int(struct reply_buf *out, int64_t value)
{
    append_number_line(out, ':', value);
}

void reply_bulk(struct reply_buf *out, const char *data, size_t len)
{
    if (!reserve(out, NUMBER_LINE_MAX + len + 2))
        return;
    char *p = put_number_line(out->data + out->len, '$', (int64_t)len);
    memcpy(p, data, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    out->len = (size_t)(p - out->data);
}

void reply_null(struct reply_buf *out)
{
    reply_append(out, "$-1\r\n", 5);
}

void reply_null_array(struct reply_buf *out)
{
    reply_append(out, "*-1\r\n", 5);
}

void reply_array(struct reply_buf *out, int64_t count)
{
    append_number_line(out, '*', count);
}

/* Empty the buffer; give memory back if one big reply grew it past keep_cap. */
void reply_buf_reset(struct reply_buf *out, size_t keep_cap)
{
    out->len = 0;
    out->failed = false;
    if (out->cap > keep_cap) {
        free(out->data);
        out->data = NULL;
        out->cap = 0;
    }
}
