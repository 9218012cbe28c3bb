/* weights.c — a trained network's weights as one self-describing blob, so the
 * run store can keep them per candidate and `nas export RUN` can write the very
 * network that was measured, without training it again.
 *
 * Format (little-endian), version 1:
 *   "NASW" u32 version u32 n_tensors
 *   n_tensors x { u8 name_len, name, u8 ndim, i32 shape[ndim], u8 layout_len, layout,
 *                 u64 count, f32 data[count] }
 *   u32 crc32 (zlib) of everything before it
 * Tensors are matched by name on load, and each shape and layout must agree,
 * so a blob of another architecture is refused with the tensor named rather
 * than loaded into the wrong places. Batch-norm running statistics are
 * tensors too, so inference after loading is bit for bit the original's.
 */
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"

#include <string.h>
#include <zlib.h>

#define W_MAGIC "NASW"
#define W_VERSION 1u

typedef struct {
    uint8_t *p;
    size_t len, cap;
} wbuf;

static void put(wbuf *b, const void *src, size_t n)
{
    if (b->p)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(wbuf *b, uint32_t v) { put(b, &v, 4); }

static size_t tensor_count(const ev_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    return n;
}

/* Writes the blob, or with b->p NULL only counts its bytes. */
static void write_all(wbuf *b, const ev_tensor *t, int n)
{
    put(b, W_MAGIC, 4);
    put_u32(b, W_VERSION);
    put_u32(b, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        uint8_t nl = (uint8_t)strlen(t[i].name), nd = (uint8_t)t[i].ndim;
        uint8_t ll = (uint8_t)strlen(t[i].layout ? t[i].layout : "");
        uint64_t count = tensor_count(&t[i]);
        put(b, &nl, 1);
        put(b, t[i].name, nl);
        put(b, &nd, 1);
        for (int d = 0; d < nd; d++) {
            int32_t s = t[i].shape[d];
            put(b, &s, 4);
        }
        put(b, &ll, 1);
        put(b, t[i].layout ? t[i].layout : "", ll);
        put(b, &count, 8);
        put(b, t[i].data, count * sizeof(float));
    }
    if (b->p)
        put_u32(b, (uint32_t)crc32(0L, b->p, (uInt)b->len));
    else
        b->len += 4;
}

nas_status ev_net_weights_pack(const ev_net *net, void **blob, size_t *len, nas_err *err)
{
    *blob = NULL;
    *len = 0;
    int n = ev_net_tensors(net, NULL, 0);
    ev_tensor *t = nas_malloc(sizeof(ev_tensor) * (size_t)(n > 0 ? n : 1));
    if (!t)
        return nas_errf(err, NAS_ENOMEM, "weights: out of memory listing %d tensors", n);
    ev_net_tensors(net, t, n);
    wbuf b = {0};
    write_all(&b, t, n);
    b.cap = b.len;
    b.len = 0;
    b.p = nas_malloc(b.cap);
    if (!b.p) {
        nas_free(t);
        return nas_errf(err, NAS_ENOMEM, "weights: out of memory for a %zu-byte blob", b.cap);
    }
    write_all(&b, t, n);
    nas_free(t);
    *blob = b.p;
    *len = b.len;
    return NAS_OK;
}

typedef struct {
    const uint8_t *p;
    size_t len, at;
} rbuf;

static int get(rbuf *r, void *dst, size_t n)
{
    if (r->len - r->at < n)
        return -1;
    if (dst)
        memcpy(dst, r->p + r->at, n);
    r->at += n;
    return 0;
}

nas_status ev_net_weights_unpack(ev_net *net, const void *blob, size_t len, nas_err *err)
{
    rbuf r = {blob, len, 0};
    char magic[4];
    uint32_t version, n, crc;
    if (len < 16 || get(&r, magic, 4) || memcmp(magic, W_MAGIC, 4) != 0)
        return nas_errf(err, NAS_EINVAL, "weights: not a nas weights blob (%zu bytes, no 'NASW')", len);
    memcpy(&crc, (const uint8_t *)blob + len - 4, 4);
    if (crc != (uint32_t)crc32(0L, blob, (uInt)(len - 4)))
        return nas_errf(err, NAS_EINVAL, "weights: checksum mismatch (%zu bytes): the blob is corrupt", len);
    r.len = len - 4;
    get(&r, &version, 4);
    get(&r, &n, 4);
    if (version != W_VERSION)
        return nas_errf(err, NAS_EINVAL, "weights: format version %u (this nas reads %u)", version,
                        W_VERSION);
    int nt = ev_net_tensors(net, NULL, 0);
    if ((int)n != nt)
        return nas_errf(err, NAS_EINVAL, "weights: the blob has %u tensors, the network %d", n, nt);
    ev_tensor *t = nas_malloc(sizeof(ev_tensor) * (size_t)(nt > 0 ? nt : 1));
    char *seen = nas_calloc((size_t)(nt > 0 ? nt : 1), 1);
    nas_status st = NAS_OK;
    if (!t || !seen) {
        st = nas_errf(err, NAS_ENOMEM, "weights: out of memory listing %d tensors", nt);
        goto cleanup;
    }
    ev_net_tensors(net, t, nt);
    size_t n_params;
    float *params = evn_params(net, &n_params);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t nl, nd, ll;
        char name[256], layout[256];
        int32_t shape[4] = {0};
        uint64_t count;
        if (get(&r, &nl, 1) || get(&r, name, nl) || get(&r, &nd, 1) || nd > 4 ||
            get(&r, shape, 4 * (size_t)nd) || get(&r, &ll, 1) || get(&r, layout, ll) ||
            get(&r, &count, 8)) {
            st = nas_errf(err, NAS_EINVAL, "weights: tensor %u of %u is truncated", i + 1, n);
            goto cleanup;
        }
        name[nl] = layout[ll] = '\0';
        int k = -1;
        for (int j = 0; j < nt; j++)
            if (!strcmp(t[j].name, name))
                k = j;
        if (k < 0 || seen[k]) {
            st = nas_errf(err, NAS_EINVAL, "weights: tensor '%s' %s", name,
                          k < 0 ? "is not in this network" : "appears twice");
            goto cleanup;
        }
        int same = nd == t[k].ndim && count == tensor_count(&t[k]) && !strcmp(layout, t[k].layout);
        for (int d = 0; same && d < nd; d++)
            same = shape[d] == t[k].shape[d];
        if (!same) {
            st = nas_errf(err, NAS_EINVAL, "weights: tensor '%s' has another shape or layout (%s) "
                          "than the network's (%s)", name, layout, t[k].layout);
            goto cleanup;
        }
        size_t off = (size_t)(t[k].data - params);
        if (off + count > n_params || get(&r, params + off, count * sizeof(float))) {
            st = nas_errf(err, NAS_EINVAL, "weights: tensor '%s' is truncated", name);
            goto cleanup;
        }
        seen[k] = 1;
    }
    if (r.at != r.len)
        st = nas_errf(err, NAS_EINVAL, "weights: %zu bytes after the last tensor", r.len - r.at);
cleanup:
    nas_free(t);
    nas_free(seen);
    return st;
}
