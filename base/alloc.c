/* alloc.c — the one allocator of nas, with the debug features of Lua's ltests.c.
 *
 * Every block carries a 64-byte header (size, magic, front canary) and an
 * 8-byte trailing canary; user memory is 64-byte aligned, which the SIMD
 * kernels want anyway. Allocation is rare in nas (one block per kind of
 * memory, nothing inside training loops), so the header costs nothing that
 * matters, and it lets tests fail the n-th allocation, catch overruns and
 * count leaks in every build, not only in special ones.
 */
#include "base/nas.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR 64
#define MAGIC 0x6e61735f616c6c63ULL    /* "nas_allc" */
#define CANARY 0xcafef00dd15ea5e5ULL

typedef struct {
    size_t size;
    uint64_t magic;
    uint64_t front;
} hdr_t;

static long fail_countdown;   /* >0: the allocation that brings it to 0 fails */
static size_t live_blocks;

void nas_alloc_fail_at(long fail_at) { __atomic_store_n(&fail_countdown, fail_at, __ATOMIC_SEQ_CST); }
size_t nas_alloc_live(void) { return __atomic_load_n(&live_blocks, __ATOMIC_SEQ_CST); }

static int should_fail(void)
{
    long c = __atomic_load_n(&fail_countdown, __ATOMIC_SEQ_CST);
    if (c <= 0)
        return 0;
    return __atomic_sub_fetch(&fail_countdown, 1, __ATOMIC_SEQ_CST) == 0;
}

void *nas_malloc(size_t n)
{
    if (should_fail() || n > SIZE_MAX - HDR - 8)
        return NULL;
    void *base = NULL;
    if (posix_memalign(&base, 64, HDR + n + 8) != 0)
        return NULL;
    hdr_t *h = base;
    h->size = n;
    h->magic = MAGIC;
    h->front = CANARY;
    uint64_t c = CANARY;
    memcpy((char *)base + HDR + n, &c, 8);
    __atomic_add_fetch(&live_blocks, 1, __ATOMIC_SEQ_CST);
    return (char *)base + HDR;
}

static hdr_t *header_of(void *p)
{
    hdr_t *h = (hdr_t *)((char *)p - HDR);
    if (h->magic != MAGIC)
        abort();   /* not ours, or freed twice: a bug, not an input error */
    return h;
}

void nas_free(void *p)
{
    if (!p)
        return;
    hdr_t *h = header_of(p);
    uint64_t c;
    memcpy(&c, (char *)p + h->size, 8);
    if (h->front != CANARY || c != CANARY)
        abort();   /* a write past the block: stop before it spreads */
    /* Wipe so a use after free reads garbage that tests notice, not stale data. */
    memset(h, 0xdd, HDR + h->size + 8);
    free(h);
    __atomic_sub_fetch(&live_blocks, 1, __ATOMIC_SEQ_CST);
}

void *nas_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = nas_malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *nas_realloc(void *p, size_t n)
{
    if (!p)
        return nas_malloc(n);
    size_t old = header_of(p)->size;
    void *q = nas_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    nas_free(p);
    return q;
}

char *nas_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = nas_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void *nas_malloc_aligned(size_t n) { return nas_malloc(n); }
void nas_free_aligned(void *p) { nas_free(p); }

/* jansson allocates through us too, before main runs: one allocator holds, so
 * its buffers count in the leak check, fail under nas_alloc_fail_at like ours,
 * and are freed with nas_free (json_dumps's text included). */
static _Thread_local unsigned long json_failed_allocs;

static void *json_alloc(size_t n)
{
    void *p = nas_malloc(n);
    json_failed_allocs += p == NULL;
    return p;
}

__attribute__((constructor)) static void json_through_nas(void)
{
    json_set_alloc_funcs(json_alloc, nas_free);
}

/* jansson 2.14's lexer ignores a failed allocation while it copies a token: the
 * parse then fails with a syntax error, or worse succeeds with a key cut short
 * ("feature_versio"). So the allocator is the judge: a parse during which one
 * of jansson's allocations failed is out of memory, whatever jansson says. */
json_t *nas_json_load(const char *text, size_t len, size_t flags, json_error_t *je, nas_status *st)
{
    json_error_t local;
    if (!je)
        je = &local;
    unsigned long before = json_failed_allocs;
    json_t *root = text ? json_loadb(text, len, flags, je) : NULL;
    nas_status s = root ? NAS_OK : NAS_EINVAL;
    if (!text)
        snprintf(je->text, sizeof je->text, "no text");
    if (json_failed_allocs != before) {
        json_decref(root);
        root = NULL;
        s = NAS_ENOMEM;
        snprintf(je->text, sizeof je->text, "out of memory");
    }
    if (st)
        *st = s;
    return root;
}
