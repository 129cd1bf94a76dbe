#include "value.h"
#include "sdk.h"

struct bstr *bstr_new(const char *data, size_t len)
{
    if (len > BSTR_MAX_LEN)
        return NULL;
    struct bstr *s = malloc(sizeof(*s) + len + 1);
    if (!s)
        return NULL;
    s->type = TYPE_STRING;
    s->len = (uint32_t)len;
    memcpy(s->data, data, len);
    s->data[len] = '\0';
    return s;
}

void bstr_free(struct bstr *s)
{
    free(s);
}

struct kv_list *list_new(void)
{
    struct kv_list *list = calloc(1, sizeof(struct kv_list));
    if (list)
        list->type = TYPE_LIST;
    return list;
}

void list_free(struct kv_list *list)
{
    if (!list)
        return;
    while (list->count)
        bstr_free(list_pop_front(list));
    free(list->items);
    free(list);
}

static uint32_t slot(const struct kv_list *list, uint32_t index)
{
    return (list->head + index) & (list->cap - 1);
}

/* Double the ring, unwrapping it so the elements start at index 0. */
static bool list_grow(struct kv_list *list)
{
    uint32_t cap = list->cap ? list->cap * 2 : 8;
    if (cap == 0)
        return false;
    struct bstr **items = malloc(sizeof(*items) * cap);
    if (!items)
        return false;
    for (uint32_t i = 0; i < list->count; i++)
        items[i] = list->items[slot(list, i)];
    free(list->items);
    list->items = items;
    list->head = 0;
    list->cap = cap;
    return true;
}

bool list_push_front(struct kv_list *list, struct bstr *item)
{
    if (list->count == list->cap && !list_grow(list))
        return false;
    list->head = (list->head - 1) & (list->cap - 1);
    list->items[list->head] = item;
    list->count++;
    return true;
}

bool list_push_back(struct kv_list *list, struct bstr *item)
{
    if (list->count == list->cap && !list_grow(list))
        return false;
    list->items[slot(list, list->count)] = item;
    list->count++;
    return true;
}

struct bstr *list_pop_front(struct kv_list *list)
{
    if (!list->count)
        return NULL;
    struct bstr *item = list->items[list->head];
    list->head = (list->head + 1) & (list->cap - 1);
    list->count--;
    return item;
}

struct bstr *list_pop_back(struct kv_list *list)
{
    if (!list->count)
        return NULL;
    list->count--;
    return list->items[slot(list, list->count)];
}

struct bstr *list_at(const struct kv_list *list, uint32_t index)
{
    return index < list->count ? list->items[slot(list, index)] : NULL;
}

void value_free(union kv_value value)
{
    if (!value.any)
        return;
    if (value_type(value) == TYPE_STRING)
        bstr_free(value.str);
    else
        collection_free(value);
}
