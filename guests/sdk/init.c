/*
 * Runs before kmain: IDT, heap, boot arguments.
 */
#include "sdk.h"

struct vmrr_boot_info *boot_info;

void sdk_init(struct vmrr_boot_info *info);

void sdk_init(struct vmrr_boot_info *info)
{
    boot_info = info;
    idt_init();
    if (info->magic != VMRR_BOOT_MAGIC) {
        console_puts("guest: bad boot info magic\n");
        poweroff(125);
    }
    heap_init(info->image_end, info->mem_size - TOP_OF_RAM_RESERVE);
}

const char *boot_args(void)
{
    return boot_info->args_len ? (const char *)boot_info->args_ptr : "";
}

/* Length of the argument name in "name" or "name=value". */
static size_t name_length(const char *word, size_t word_len)
{
    const char *eq = memchr(word, '=', word_len);
    return eq ? (size_t)(eq - word) : word_len;
}

bool boot_arg(const char *name, char *buf, size_t size)
{
    const char *p = boot_args();
    size_t want = strlen(name);
    while (*p) {
        while (*p == ' ')
            p++;
        const char *word = p;
        while (*p && *p != ' ')
            p++;
        size_t word_len = (size_t)(p - word);
        if (word_len == 0 || name_length(word, word_len) != want || memcmp(word, name, want) != 0)
            continue;
        const char *value = (want < word_len) ? word + want + 1 : "1";
        size_t value_len = (want < word_len) ? word_len - want - 1 : 1;
        if (size > 0) {
            size_t n = value_len < size - 1 ? value_len : size - 1;
            memcpy(buf, value, n);
            buf[n] = '\0';
        }
        return true;
    }
    return false;
}

uint64_t boot_arg_u64(const char *name, uint64_t fallback)
{
    char value[32];
    if (!boot_arg(name, value, sizeof(value)))
        return fallback;
    char *end;
    uint64_t number = strtoull(value, &end, 0);
    return (end == value || *end) ? fallback : number;
}

void panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    console_puts("guest panic: ");
    vprintf(fmt, ap);
    console_puts("\n");
    va_end(ap);
    /* Crash rather than power off, so the VMM stops with a crash report here. */
    cli();
    idt_clear_gate(VEC_INVALID_OPCODE);
    __builtin_trap();
}
