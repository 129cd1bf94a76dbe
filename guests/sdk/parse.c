/* Number parsing. */
#include "libc.h"

static int digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return 99;
}

/* Skips spaces, an optional sign and, for base 0 or 16, a 0x prefix. */
static const char *parse_prefix(const char *s, int *base, bool *negative)
{
    while (isspace((unsigned char)*s))
        s++;
    *negative = false;
    if (*s == '-' || *s == '+')
        *negative = (*s++ == '-');
    if ((*base == 0 || *base == 16) && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        *base = 16;
    } else if (*base == 0) {
        *base = (s[0] == '0') ? 8 : 10;
    }
    return s;
}

unsigned long long strtoull(const char *s, char **end, int base)
{
    bool negative;
    s = parse_prefix(s, &base, &negative);
    unsigned long long value = 0;
    for (; digit_value(*s) < base; s++)
        value = value * (unsigned)base + (unsigned)digit_value(*s);
    if (end)
        *end = (char *)s;
    return negative ? -value : value;
}

long long strtoll(const char *s, char **end, int base)
{
    return (long long)strtoull(s, end, base);
}

int atoi(const char *s)
{
    return (int)strtoll(s, NULL, 10);
}

bool parse_i64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool negative = false;
    if (len > 0 && s[0] == '-') {
        negative = true;
        i = 1;
    }
    if (i == len)
        return false;
    /* Accumulate as a negative number: its range includes INT64_MIN. */
    int64_t value = 0;
    for (; i < len; i++) {
        unsigned digit = (unsigned)(s[i] - '0');
        if (digit > 9)
            return false;
        if (value < (INT64_MIN + (int64_t)digit) / 10)
            return false;
        value = value * 10 - (int64_t)digit;
    }
    if (!negative) {
        if (value == INT64_MIN)
            return false;
        value = -value;
    }
    *out = value;
    return true;
}
