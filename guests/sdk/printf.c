/*
 * printf family. One formatter writes through a small sink so snprintf and
 * the console share all the conversion code.
 */
#include "libc.h"
#include "console.h"

struct sink {
    char *buf;      /* NULL: write to the console */
    size_t size;    /* capacity of buf */
    size_t length;  /* characters produced so far (may exceed size) */
    char staging[128];
    size_t staged;
};

static void sink_flush(struct sink *out)
{
    console_write(out->staging, out->staged);
    out->staged = 0;
}

static void sink_putc(struct sink *out, char c)
{
    if (out->buf) {
        if (out->length + 1 < out->size)
            out->buf[out->length] = c;
    } else {
        if (out->staged == sizeof(out->staging))
            sink_flush(out);
        out->staging[out->staged++] = c;
    }
    out->length++;
}

static void sink_pad(struct sink *out, char c, int count)
{
    while (count-- > 0)
        sink_putc(out, c);
}

struct spec {
    bool left;        /* '-' */
    bool zero;        /* '0' */
    int width;
    int precision;    /* -1 = none */
    int length;       /* 0 int, 1 long, 2 long long, 3 size_t */
};

/* Emits digits of value in base with the sign, honouring width and zero padding. */
static void format_number(struct sink *out, const struct spec *spec, uint64_t value,
                          bool negative, unsigned base, bool upper, const char *prefix)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = digits[value % base];
        value /= base;
    } while (value);
    int prefix_len = (int)strlen(prefix) + (negative ? 1 : 0);
    int pad = spec->width - n - prefix_len;
    if (!spec->left && !spec->zero)
        sink_pad(out, ' ', pad);
    if (negative)
        sink_putc(out, '-');
    for (const char *p = prefix; *p; p++)
        sink_putc(out, *p);
    if (!spec->left && spec->zero)
        sink_pad(out, '0', pad);
    while (n)
        sink_putc(out, tmp[--n]);
    if (spec->left)
        sink_pad(out, ' ', pad);
}

static void format_string(struct sink *out, const struct spec *spec, const char *s)
{
    if (!s)
        s = "(null)";
    int len = 0;
    while (s[len] && (spec->precision < 0 || len < spec->precision))
        len++;
    if (!spec->left)
        sink_pad(out, ' ', spec->width - len);
    for (int i = 0; i < len; i++)
        sink_putc(out, s[i]);
    if (spec->left)
        sink_pad(out, ' ', spec->width - len);
}

static const char *parse_spec(const char *fmt, struct spec *spec, va_list *ap)
{
    *spec = (struct spec){.precision = -1};
    for (;; fmt++) {
        if (*fmt == '-')
            spec->left = true;
        else if (*fmt == '0')
            spec->zero = true;
        else
            break;
    }
    if (*fmt == '*') {
        spec->width = va_arg(*ap, int);
        fmt++;
    }
    while (isdigit((unsigned char)*fmt))
        spec->width = spec->width * 10 + (*fmt++ - '0');
    if (*fmt == '.') {
        fmt++;
        spec->precision = 0;
        if (*fmt == '*') {
            spec->precision = va_arg(*ap, int);
            fmt++;
        }
        while (isdigit((unsigned char)*fmt))
            spec->precision = spec->precision * 10 + (*fmt++ - '0');
    }
    for (; *fmt == 'l'; fmt++)
        spec->length++;
    if (*fmt == 'z') {
        spec->length = 3;
        fmt++;
    }
    return fmt;
}

static int64_t signed_arg(const struct spec *spec, va_list *ap)
{
    switch (spec->length) {
    case 0: return va_arg(*ap, int);
    case 1: return va_arg(*ap, long);
    case 2: return va_arg(*ap, long long);
    default: return (int64_t)va_arg(*ap, size_t);
    }
}

static uint64_t unsigned_arg(const struct spec *spec, va_list *ap)
{
    switch (spec->length) {
    case 0: return va_arg(*ap, unsigned int);
    case 1: return va_arg(*ap, unsigned long);
    case 2: return va_arg(*ap, unsigned long long);
    default: return va_arg(*ap, size_t);
    }
}

static void format(struct sink *out, const char *fmt, va_list ap_in)
{
    va_list ap;
    va_copy(ap, ap_in);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            sink_putc(out, *fmt);
            continue;
        }
        struct spec spec;
        fmt = parse_spec(fmt + 1, &spec, &ap);
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = signed_arg(&spec, &ap);
            format_number(out, &spec, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0, 10, false, "");
            break;
        }
        case 'u':
            format_number(out, &spec, unsigned_arg(&spec, &ap), false, 10, false, "");
            break;
        case 'x':
        case 'X':
            format_number(out, &spec, unsigned_arg(&spec, &ap), false, 16, *fmt == 'X', "");
            break;
        case 'p':
            format_number(out, &spec, (uint64_t)va_arg(ap, void *), false, 16, false, "0x");
            break;
        case 's':
            format_string(out, &spec, va_arg(ap, const char *));
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            if (!spec.left)
                sink_pad(out, ' ', spec.width - 1);
            sink_putc(out, c);
            if (spec.left)
                sink_pad(out, ' ', spec.width - 1);
            break;
        }
        case '%':
            sink_putc(out, '%');
            break;
        case '\0':
            fmt--; /* a lone '%' at the end */
            break;
        default:
            sink_putc(out, '%');
            sink_putc(out, *fmt);
            break;
        }
    }
    va_end(ap);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct sink out = {.buf = buf, .size = size};
    format(&out, fmt, ap);
    if (size > 0)
        buf[out.length < size ? out.length : size - 1] = '\0';
    return (int)out.length;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int vprintf(const char *fmt, va_list ap)
{
    struct sink out = {0};
    format(&out, fmt, ap);
    sink_flush(&out);
    return (int)out.length;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int puts(const char *s)
{
    console_puts(s);
    console_putc('\n');
    return 0;
}
