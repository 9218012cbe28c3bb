/* data.c — the data sets the evaluator trains on: IDX files (MNIST and
 * Fashion-MNIST layout, raw or gzip) and CIFAR-10 binary batches, split into
 * train / validation / test and normalised per channel.
 *
 * Promises: nothing read from a file is trusted before it is checked against
 * the file's size, so a truncated or malformed file gets an error that names
 * the file and says what is wrong (magic, dimensions, length, label range,
 * image/label counts). The validation split comes from the training file by a
 * seeded shuffle, so the same seed gives the same split. Mean and std are those
 * of the training split only (the validation and test images never leak into
 * them). Each split owns its images (one 64-byte aligned block, nas_malloc'd)
 * and its labels, so a caller may replace one split's images (padding them to
 * another size, say) with a block of its own and ev_data_free still frees it.
 * No file makes it allocate more than its capped size (EV_DATA_MAX_FILE_BYTES,
 * or for a gzip IDX file the length its header declares), however small the
 * .gz. Files are read whole, then parsed from memory: ev_data_from_buffers is
 * the same parser over bytes a caller holds.
 */
#include "evaluator/ev.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DATA_CLASSES 10
#define CIFAR_SIDE 32
#define CIFAR_PIX (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_REC (1 + CIFAR_PIX)
#define CIFAR_TRAIN_BATCHES 5

/* Images and labels as stored: n x h x w x c bytes, NHWC. */
typedef struct {
    int n, h, w, c;
    uint8_t *pix;
    uint8_t *lab;
} raw_set;

static void raw_free(raw_set *r)
{
    nas_free(r->pix);
    nas_free(r->lab);
    memset(r, 0, sizeof *r);
}

void ev_data_opts_default(ev_data_opts *o)
{
    memset(o, 0, sizeof *o);
    o->val_count = -1;   /* 10% of the training file */
    o->seed = 1;
}

/* snprintf for paths and labels: cuts at the buffer's end (folders are
 * checked for length up front, so only labels are ever cut). */
__attribute__((format(printf, 3, 4)))
static void fmt(char *out, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(out, n, f, ap);
    va_end(ap);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The most bytes one file may hold, raw or once decompressed. */
static size_t file_cap(const ev_data_opts *o)
{
    return o->max_file_bytes ? o->max_file_bytes : EV_DATA_MAX_FILE_BYTES;
}

/* A file's bytes as they lie on disk (raw or gzip); one larger than the cap is
 * refused before anything is read. */
static nas_status read_file_bytes(const char *path, size_t cap, uint8_t **out, size_t *len, nas_err *err)
{
    *out = NULL;
    *len = 0;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return nas_errf(err, errno == ENOENT ? NAS_EINVAL : NAS_EIO, "%s: %s", path, strerror(errno));
    if ((uint64_t)sb.st_size > cap)
        return nas_errf(err, NAS_EINVAL, "%s: %lld bytes, more than the %zu bytes a data file may hold", path,
                        (long long)sb.st_size, cap);
    char *text = NULL;
    nas_status st = nas_read_file(path, &text, len, err);
    *out = (uint8_t *)text;
    return st;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the header of an IDX file of unsigned bytes with `ndims` dimensions;
 * fills dims and the length of the data it declares. The format (LeCun's MNIST
 * page): two zero bytes, a type byte (0x08: unsigned byte), a byte of dimension
 * count, then each dimension as a big-endian 32-bit integer, then the data. */
static nas_status idx_header(const char *path, const uint8_t *buf, size_t len, int ndims, uint32_t *dims,
                             uint64_t *body, const char *what, nas_err *err)
{
    if (len < 4)
        return nas_errf(err, NAS_EINVAL, "%s: truncated: %zu bytes, shorter than the 4-byte IDX magic",
                        path, len);
    uint32_t magic = be32(buf), want = 0x0800u | (uint32_t)ndims;
    if (magic != want)
        return nas_errf(err, NAS_EINVAL,
                        "%s: bad magic 0x%08x: expected 0x%08x (IDX %s: unsigned bytes, %d dimension%s)",
                        path, magic, want, what, ndims, ndims > 1 ? "s" : "");
    size_t hdr = 4 + 4 * (size_t)ndims;
    if (len < hdr)
        return nas_errf(err, NAS_EINVAL, "%s: truncated: %zu bytes, shorter than the %zu-byte IDX header",
                        path, len, hdr);
    *body = 1;
    for (int i = 0; i < ndims; i++) {
        dims[i] = be32(buf + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > (uint32_t)INT_MAX)
            return nas_errf(err, NAS_EINVAL, "%s: dimension %d is %u (must be 1..%d)", path, i, dims[i],
                            INT_MAX);
        *body *= dims[i];
        if (*body > (uint64_t)1 << 40)
            return nas_errf(err, NAS_EINVAL, "%s: dimensions describe more than 1 TiB of data", path);
    }
    return NAS_OK;
}

/* The header, and then that the data is as long as it declares. */
static nas_status idx_check(const char *path, const uint8_t *buf, size_t len, int ndims,
                            uint32_t *dims, const char *what, nas_err *err)
{
    uint64_t body;
    nas_status st = idx_header(path, buf, len, ndims, dims, &body, what, err);
    if (st != NAS_OK)
        return st;
    size_t hdr = 4 + 4 * (size_t)ndims;
    if (len - hdr < body)
        return nas_errf(err, NAS_EINVAL,
                        "%s: truncated: the header promises %llu bytes of data, the file has %zu",
                        path, (unsigned long long)body, len - hdr);
    if (len - hdr > body)
        return nas_errf(err, NAS_EINVAL,
                        "%s: %zu unexpected bytes after the %llu bytes of data the header describes",
                        path, len - hdr - (size_t)body, (unsigned long long)body);
    return NAS_OK;
}

/* The whole length (header included) that the first bytes of an IDX stream
 * declare; 0 while they are too few, or when they are no valid header. */
static uint64_t idx_declared(const uint8_t *buf, size_t len, int ndims)
{
    uint32_t dims[3];
    uint64_t body;
    if (idx_header("", buf, len, ndims, dims, &body, "", NULL) != NAS_OK)
        return 0;
    return 4 + 4 * (uint64_t)ndims + body;
}

/* Gzip data (one member or several back to back, as gzip allows) inflated
 * into a new block. Output stops at `limit` bytes, and for an IDX stream
 * (ndims > 0) at the length its header declares as soon as the header is
 * out (or at the header itself when it is no valid one: idx_check says why);
 * *cut is set when more would have come. */
static nas_status gunzip(const char *name, const uint8_t *in, size_t in_len, int ndims, size_t limit,
                         uint8_t **out, size_t *len, int *cut, nas_err *err)
{
    *out = NULL;
    *len = 0;
    *cut = 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)   /* 15-bit window, gzip wrapper */
        return nas_errf(err, NAS_ENOMEM, "%s: out of memory", name);
    nas_status st = NAS_OK;
    uint8_t *buf = NULL, probe;
    size_t cap = 0, n = 0, in_left = in_len;
    int header_seen = ndims == 0;
    for (;;) {
        int full = n >= limit;
        if (!full && n == cap) {
            size_t bigger = cap ? cap * 2 : (size_t)1 << 16;
            if (bigger > limit)
                bigger = limit;
            uint8_t *b = nas_realloc(buf, bigger);
            if (!b) {
                st = nas_errf(err, NAS_ENOMEM, "%s: out of memory", name);
                goto cleanup;
            }
            buf = b;
            cap = bigger;
        }
        /* At the limit, one byte more into a probe says whether the data goes on. */
        size_t room = full ? 1 : cap - n, feed = in_left;
        room = room > UINT_MAX ? UINT_MAX : room;
        feed = feed > UINT_MAX ? UINT_MAX : feed;
        z.next_in = (Bytef *)(in + (in_len - in_left));
        z.avail_in = (uInt)feed;
        z.next_out = full ? &probe : buf + n;
        z.avail_out = (uInt)room;
        int r = inflate(&z, Z_NO_FLUSH);
        size_t made = room - z.avail_out, used = feed - z.avail_in;
        in_left -= used;
        if (full && made) {
            *cut = 1;
            break;
        }
        n += made;
        if (r == Z_STREAM_END) {
            if (in_left == 0)
                break;
            const uint8_t *next = in + (in_len - in_left);
            if (in_left < 2 || next[0] != 0x1f || next[1] != 0x8b) {
                st = nas_errf(err, NAS_EINVAL, "%s: %zu unexpected bytes after the gzip data", name, in_left);
                goto cleanup;
            }
            inflateReset(&z);
        } else if (r == Z_MEM_ERROR) {
            st = nas_errf(err, NAS_ENOMEM, "%s: out of memory", name);
            goto cleanup;
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            st = nas_errf(err, NAS_EINVAL, "%s: corrupt or truncated gzip data (%s)", name,
                          z.msg ? z.msg : "invalid data");
            goto cleanup;
        } else if (made == 0 && used == 0 && in_left == 0) {
            st = nas_errf(err, NAS_EINVAL, "%s: corrupt or truncated gzip data (the stream ends early)", name);
            goto cleanup;
        }
        if (!header_seen && n >= 4 + 4 * (size_t)ndims) {
            header_seen = 1;
            uint64_t declared = idx_declared(buf, n, ndims);
            size_t at_most = declared ? (declared < limit ? (size_t)declared : limit) : 4 + 4 * (size_t)ndims;
            if (at_most < limit)
                limit = at_most;
            if (n > limit) {
                n = limit;
                *cut = 1;
                break;
            }
        }
    }
    *out = buf;
    *len = n;
    buf = NULL;
cleanup:
    inflateEnd(&z);
    nas_free(buf);
    return st;
}

/* A file's bytes as its format reads them, in a new block: gunzipped when they
 * are gzip (magic 1f 8b; an IDX file starts 00 00 and a CIFAR-10 record with
 * its label 0-9, so neither can be taken for one), else as they are. */
static nas_status decode(const ev_data_buf *b, int ndims, size_t limit, uint8_t **out, size_t *len, nas_err *err)
{
    const uint8_t *in = b->data;
    *out = NULL;
    *len = 0;
    if (b->len >= 2 && in[0] == 0x1f && in[1] == 0x8b) {
        int cut;
        nas_status st = gunzip(b->name, in, b->len, ndims, limit, out, len, &cut, err);
        if (st != NAS_OK || !cut)
            return st;
        uint64_t declared = ndims ? idx_declared(*out, *len, ndims) : 0;
        if (ndims && !declared)
            return NAS_OK;   /* no valid header: idx_check names what is wrong with it */
        nas_free(*out);
        *out = NULL;
        *len = 0;
        if (declared && declared < limit)
            return nas_errf(err, NAS_EINVAL, "%s: the gzip data expands beyond the %llu bytes its IDX header "
                            "declares", b->name, (unsigned long long)declared);
        return nas_errf(err, NAS_EINVAL, "%s: the gzip data expands beyond %zu bytes, the most a data file may "
                        "hold", b->name, limit);
    }
    if (b->len > limit)
        return nas_errf(err, NAS_EINVAL, "%s: %zu bytes, more than the %zu bytes a data file may hold", b->name,
                        b->len, limit);
    if (!(*out = nas_malloc(b->len ? b->len : 1)))
        return nas_errf(err, NAS_ENOMEM, "%s: out of memory", b->name);
    memcpy(*out, in, b->len);
    *len = b->len;
    return NAS_OK;
}

static nas_status check_labels(const char *path, const uint8_t *lab, int n, const char *unit,
                               nas_err *err)
{
    for (int i = 0; i < n; i++)
        if (lab[i] >= DATA_CLASSES)
            return nas_errf(err, NAS_EINVAL, "%s: label %d of %s %d is out of range (0..%d)", path,
                            lab[i], unit, i, DATA_CLASSES - 1);
    return NAS_OK;
}

/* Finds DIR/BASE under the names the data sets ship with: with '-' or '.'
 * before "idx", raw or gzip. */
static int idx_find(const char *dir, const char *prefix, const char *suffix, char *out, size_t n)
{
    static const char *const seps[] = {"-", "."};
    static const char *const exts[] = {"", ".gz"};
    for (int s = 0; s < 2; s++)
        for (int e = 0; e < 2; e++) {
            snprintf(out, n, "%s/%s%s%s%s", dir, prefix, seps[s], suffix, exts[e]);
            if (file_exists(out))
                return 1;
        }
    snprintf(out, n, "%s/%s-%s[.gz]", dir, prefix, suffix);
    return 0;
}

/* One IDX pair (images, labels), raw or gzip, into r. */
static nas_status idx_parse_pair(const ev_data_buf *img, const ev_data_buf *lab, size_t limit, raw_set *r,
                                 nas_err *err)
{
    uint8_t *ibuf = NULL, *lbuf = NULL;
    size_t ilen = 0, llen = 0;
    uint32_t idims[3], ldims[1];
    nas_status st;
    memset(r, 0, sizeof *r);
    if ((st = decode(img, 3, limit, &ibuf, &ilen, err)) != NAS_OK)
        goto cleanup;
    if ((st = idx_check(img->name, ibuf, ilen, 3, idims, "images", err)) != NAS_OK)
        goto cleanup;
    if (idims[1] > 4096 || idims[2] > 4096) {
        st = nas_errf(err, NAS_EINVAL, "%s: images of %ux%u pixels are larger than 4096x4096", img->name,
                      idims[1], idims[2]);
        goto cleanup;
    }
    if ((st = decode(lab, 1, limit, &lbuf, &llen, err)) != NAS_OK)
        goto cleanup;
    if ((st = idx_check(lab->name, lbuf, llen, 1, ldims, "labels", err)) != NAS_OK)
        goto cleanup;
    if (ldims[0] != idims[0]) {
        st = nas_errf(err, NAS_EINVAL, "%s has %u images but %s has %u labels", img->name, idims[0],
                      lab->name, ldims[0]);
        goto cleanup;
    }
    if ((st = check_labels(lab->name, lbuf + 8, (int)ldims[0], "item", err)) != NAS_OK)
        goto cleanup;
    /* Keep the bytes where they are: drop the header by moving the data down. */
    r->n = (int)idims[0];
    r->h = (int)idims[1];
    r->w = (int)idims[2];
    r->c = 1;
    memmove(ibuf, ibuf + 16, ilen - 16);
    memmove(lbuf, lbuf + 8, llen - 8);
    r->pix = ibuf;
    r->lab = lbuf;
    ibuf = lbuf = NULL;
cleanup:
    nas_free(ibuf);
    nas_free(lbuf);
    return st;
}

/* Reads one IDX pair of files into r. */
static nas_status idx_load_pair(const char *dir, const char *prefix, size_t limit, raw_set *r, char *img_path,
                                size_t path_n, nas_err *err)
{
    char lab_path[4096], img_pre[64], lab_pre[64];
    ev_data_buf ib = {NULL, 0, img_path}, lb = {NULL, 0, lab_path};
    uint8_t *ibytes = NULL, *lbytes = NULL;
    nas_status st;
    memset(r, 0, sizeof *r);
    snprintf(img_pre, sizeof img_pre, "%s-images", prefix);
    snprintf(lab_pre, sizeof lab_pre, "%s-labels", prefix);
    if (!idx_find(dir, img_pre, "idx3-ubyte", img_path, path_n)) {
        st = nas_errf(err, NAS_EINVAL, "%s: not found", img_path);
        goto cleanup;
    }
    if (!idx_find(dir, lab_pre, "idx1-ubyte", lab_path, sizeof lab_path)) {
        st = nas_errf(err, NAS_EINVAL, "%s: not found", lab_path);
        goto cleanup;
    }
    if ((st = read_file_bytes(img_path, limit, &ibytes, &ib.len, err)) != NAS_OK ||
        (st = read_file_bytes(lab_path, limit, &lbytes, &lb.len, err)) != NAS_OK)
        goto cleanup;
    ib.data = ibytes;
    lb.data = lbytes;
    st = idx_parse_pair(&ib, &lb, limit, r, err);
cleanup:
    nas_free(ibytes);
    nas_free(lbytes);
    return st;
}

static nas_status idx_same_size(const raw_set *tr, const char *tr_name, const raw_set *te, const char *te_name,
                                nas_err *err)
{
    if (te->h != tr->h || te->w != tr->w)
        return nas_errf(err, NAS_EINVAL, "%s: test images are %dx%d but the training images (%s) are %dx%d",
                        te_name, te->h, te->w, tr_name, tr->h, tr->w);
    return NAS_OK;
}

/* skip_test: the test files are not even opened (te stays empty). */
static nas_status idx_load(const char *dir, size_t limit, int skip_test, raw_set *tr, raw_set *te, char *source,
                           size_t source_n, nas_err *err)
{
    char tr_path[4096], te_path[4096];
    memset(te, 0, sizeof *te);
    nas_status st = idx_load_pair(dir, "train", limit, tr, tr_path, sizeof tr_path, err);
    if (st == NAS_OK && skip_test) {
        fmt(source, source_n, "%s (test split not read)", tr_path);
        return NAS_OK;
    }
    if (st == NAS_OK)
        st = idx_load_pair(dir, "t10k", limit, te, te_path, sizeof te_path, err);
    if (st == NAS_OK)
        st = idx_same_size(tr, tr_path, te, te_path, err);
    if (st != NAS_OK) {
        raw_free(tr);
        raw_free(te);
        return st;
    }
    fmt(source, source_n, "%s, %s", tr_path, te_path);
    return NAS_OK;
}

/* Appends the records of one CIFAR-10 batch, raw or gzip, to r (images
 * converted from the file's CHW planes to NHWC). */
static nas_status cifar_append(const ev_data_buf *b, size_t limit, raw_set *r, nas_err *err)
{
    const char *path = b->name;
    uint8_t *buf = NULL;
    size_t len = 0;
    nas_status st = decode(b, 0, limit, &buf, &len, err);
    if (st != NAS_OK)
        return st;
    if (len == 0) {
        st = nas_errf(err, NAS_EINVAL, "%s: empty file (a CIFAR-10 batch holds 3073-byte records)", path);
        goto cleanup;
    }
    if (len % CIFAR_REC != 0) {
        st = nas_errf(err, NAS_EINVAL,
                      "%s: truncated: %zu bytes is not a whole number of %d-byte records "
                      "(1 label byte + 3x32x32 pixels); the last record has %zu bytes",
                      path, len, CIFAR_REC, len % CIFAR_REC);
        goto cleanup;
    }
    size_t add = len / CIFAR_REC;
    if ((size_t)r->n + add > (size_t)INT_MAX / CIFAR_PIX) {
        st = nas_errf(err, NAS_EINVAL, "%s: too many records: %zu in all, at most %d", path,
                      (size_t)r->n + add, INT_MAX / CIFAR_PIX);
        goto cleanup;
    }
    uint8_t *pix = nas_realloc(r->pix, ((size_t)r->n + add) * CIFAR_PIX);
    if (!pix) {
        st = nas_errf(err, NAS_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    r->pix = pix;
    uint8_t *lab = nas_realloc(r->lab, (size_t)r->n + add);
    if (!lab) {
        st = nas_errf(err, NAS_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    r->lab = lab;
    for (size_t i = 0; i < add; i++) {
        const uint8_t *rec = buf + i * CIFAR_REC;
        if (rec[0] >= DATA_CLASSES) {
            st = nas_errf(err, NAS_EINVAL, "%s: label %d of record %zu is out of range (0..%d)", path,
                          rec[0], i, DATA_CLASSES - 1);
            goto cleanup;
        }
        uint8_t *dst = r->pix + ((size_t)r->n + i) * CIFAR_PIX;
        const uint8_t *plane = rec + 1;
        for (int p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++)
            for (int ch = 0; ch < 3; ch++)
                dst[p * 3 + ch] = plane[ch * CIFAR_SIDE * CIFAR_SIDE + p];
        r->lab[r->n + i] = rec[0];
    }
    r->n += (int)add;
    r->h = r->w = CIFAR_SIDE;
    r->c = 3;
cleanup:
    nas_free(buf);
    return st;
}

/* Reads one CIFAR-10 batch file and appends its records to r. */
static nas_status cifar_load_batch(const char *path, size_t limit, raw_set *r, nas_err *err)
{
    ev_data_buf b = {NULL, 0, path};
    uint8_t *bytes = NULL;
    nas_status st = read_file_bytes(path, limit, &bytes, &b.len, err);
    b.data = bytes;
    if (st == NAS_OK)
        st = cifar_append(&b, limit, r, err);
    nas_free(bytes);
    return st;
}

static nas_status cifar_load(const char *dir_in, size_t limit, int skip_test, raw_set *tr, raw_set *te, char *source,
                             size_t source_n, nas_err *err)
{
    char dir[4096], path[4200];
    nas_status st = NAS_OK;
    memset(tr, 0, sizeof *tr);
    memset(te, 0, sizeof *te);
    /* The archive unpacks to cifar-10-batches-bin/; accept its parent too. */
    snprintf(dir, sizeof dir, "%s", dir_in);
    snprintf(path, sizeof path, "%s/data_batch_1.bin", dir);
    if (!file_exists(path)) {
        char sub[4200];
        fmt(sub, sizeof sub, "%s/cifar-10-batches-bin", dir_in);
        if (dir_exists(sub))
            fmt(dir, sizeof dir, "%s", sub);
    }
    for (int b = 1; b <= CIFAR_TRAIN_BATCHES + !skip_test && st == NAS_OK; b++) {
        if (b <= CIFAR_TRAIN_BATCHES)
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b);
        else
            snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        if (!file_exists(path))
            st = nas_errf(err, NAS_EINVAL, "%s: not found (CIFAR-10 needs data_batch_1..%d.bin and "
                          "test_batch.bin, the binary version)", path, CIFAR_TRAIN_BATCHES);
        else
            st = cifar_load_batch(path, limit, b <= CIFAR_TRAIN_BATCHES ? tr : te, err);
    }
    if (st != NAS_OK) {
        raw_free(tr);
        raw_free(te);
        return st;
    }
    if (skip_test)
        fmt(source, source_n, "%s/data_batch_{1..%d}.bin (test split not read)", dir, CIFAR_TRAIN_BATCHES);
    else
        fmt(source, source_n, "%s/data_batch_{1..%d}.bin, %s/test_batch.bin", dir, CIFAR_TRAIN_BATCHES, dir);
    return NAS_OK;
}

/* Where "mnist" and friends live: $NAS_DATA_DIR, else data/ in the working
 * directory (the repository root), else data/ beside the executable or one
 * folder up (./nas and build/nas both live in the repository). */
static void data_home(const char *name, char *out, size_t n)
{
    const char *env = getenv("NAS_DATA_DIR");
    if (env && *env) {
        snprintf(out, n, "%s/%s", env, name);
        return;
    }
    snprintf(out, n, "data/%s", name);
    if (dir_exists(out))
        return;
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char cand[4600];
            snprintf(cand, sizeof cand, "%s/data/%s", exe, name);
            if (dir_exists(cand)) {
                fmt(out, n, "%s", cand);
                return;
            }
            snprintf(cand, sizeof cand, "%s/../data/%s", exe, name);
            if (dir_exists(cand)) {
                fmt(out, n, "%s", cand);
                return;
            }
        }
    }
    snprintf(out, n, "data/%s", name);
}

/* Debian's dataset packages install under /usr/share/datasets; NAS_DATASETS_DIR
 * moves that root (tests point it at an empty folder to see the message a
 * machine without the package gets). */
#define DATASETS_ROOT "/usr/share/datasets"
#define FASHION_PACKAGE "dataset-fashion-mnist"

/* Where "fashion-mnist" lives: a copy under $NAS_DATA_DIR or data/ (as for
 * "mnist") wins, else the Debian package's folder. 0 when none exists; out
 * then names the package's folder, for the message. */
static int fashion_home(char *out, size_t n)
{
    data_home("fashion-mnist", out, n);
    if (dir_exists(out))
        return 1;
    const char *root = getenv("NAS_DATASETS_DIR");
    snprintf(out, n, "%s/fashion-mnist", root && *root ? root : DATASETS_ROOT);
    return dir_exists(out);
}

const char *ev_data_class_name(const ev_data *d, int label)
{
    /* Zalando's names, in label order (the dataset's README) */
    static const char *const fashion[DATA_CLASSES] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    static const char *const cifar[DATA_CLASSES] = {"airplane", "automobile", "bird", "cat", "deer",
                                                    "dog", "frog", "horse", "ship", "truck"};
    static const char *const digits[DATA_CLASSES] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    if (!d || label < 0 || label >= DATA_CLASSES)
        return "?";
    if (!strcmp(d->name, "fashion-mnist"))
        return fashion[label];
    if (!strcmp(d->name, "cifar10"))
        return cifar[label];
    return digits[label];
}

/* Fills a split with the images idx[0..n) of r, through the per-channel
 * lookup table (byte -> normalised float). */
static void fill_split(ev_split *s, const raw_set *r, const int *idx, int n, float *img, uint8_t *lab,
                       const float lut[3][256])
{
    size_t hw = (size_t)r->h * r->w, per = hw * r->c;
    s->n = n;
    s->h = r->h;
    s->w = r->w;
    s->c = r->c;
    s->images = img;
    s->labels = lab;
    for (int i = 0; i < n; i++) {
        const uint8_t *src = r->pix + (size_t)idx[i] * per;
        float *dst = img + (size_t)i * per;
        for (size_t p = 0; p < hw; p++)
            for (int ch = 0; ch < r->c; ch++)
                dst[p * r->c + ch] = lut[ch][src[p * r->c + ch]];
        lab[i] = r->lab[idx[i]];
    }
}

static nas_status make_splits(const raw_set *tr, const raw_set *te, const ev_data_opts *o, ev_data *d,
                              nas_err *err)
{
    nas_status st = NAS_OK;
    int *perm = NULL, *tperm = NULL;
    int n = tr->n;
    int nval = o->val_count < 0 ? n / 10 : o->val_count;
    if (nval >= n) {
        return nas_errf(err, NAS_EINVAL, "val_count %d leaves no training images (the training file has %d)",
                        nval, n);
    }
    int ntrain = n - nval;
    if (o->train_limit > 0 && o->train_limit < ntrain)
        ntrain = o->train_limit;
    int ntest = te->n;
    if (o->test_limit > 0 && o->test_limit < ntest)
        ntest = o->test_limit;

    perm = nas_malloc((size_t)n * sizeof *perm);
    tperm = nas_malloc((size_t)te->n * sizeof *tperm);
    size_t per = (size_t)tr->h * tr->w * tr->c;
    size_t total = (size_t)ntrain + nval + ntest;
    const int counts[3] = {ntrain, nval, ntest};
    float *img[3] = {NULL, NULL, NULL};
    uint8_t *lab[3] = {NULL, NULL, NULL};
    int short_of_memory = !perm || !tperm;
    for (int k = 0; k < 3 && !short_of_memory; k++) {
        img[k] = nas_malloc_aligned((size_t)counts[k] * per * sizeof(float));
        lab[k] = nas_malloc((size_t)counts[k]);
        short_of_memory = !img[k] || !lab[k];
    }
    if (short_of_memory) {
        for (int k = 0; k < 3; k++) {
            nas_free_aligned(img[k]);
            nas_free(lab[k]);
        }
        st = nas_errf(err, NAS_ENOMEM, "data: out of memory for %zu images of %zu values", total, per);
        goto cleanup;
    }
    /* Two streams of one seed: the split of the training file and the subset
     * of the test file never depend on each other. */
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, o->seed, 0x64617461 /* "data" */);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    nas_pcg32_shuffle(&rng, perm, n);
    for (int i = 0; i < te->n; i++)
        tperm[i] = i;
    if (ntest < te->n) {
        nas_pcg32 trng;
        nas_pcg32_seed(&trng, o->seed, 0x74657374 /* "test" */);
        nas_pcg32_shuffle(&trng, tperm, te->n);
    }

    /* Mean and std of the raw [0,1] training pixels, per channel, from exact
     * byte histograms (no rounding drift however many images). */
    uint64_t hist[3][256];
    memset(hist, 0, sizeof hist);
    size_t hw = (size_t)tr->h * tr->w;
    for (int i = 0; i < ntrain; i++) {
        const uint8_t *src = tr->pix + (size_t)perm[i] * per;
        for (size_t p = 0; p < hw; p++)
            for (int ch = 0; ch < tr->c; ch++)
                hist[ch][src[p * tr->c + ch]]++;
    }
    float lut[3][256];
    for (int ch = 0; ch < 3; ch++) {
        d->mean[ch] = 0.0f;
        d->std[ch] = 1.0f;
    }
    for (int ch = 0; ch < tr->c; ch++) {
        double cnt = 0, s = 0, s2 = 0;
        for (int v = 0; v < 256; v++) {
            double x = v / 255.0;
            cnt += (double)hist[ch][v];
            s += (double)hist[ch][v] * x;
            s2 += (double)hist[ch][v] * x * x;
        }
        double mean = s / cnt, var = s2 / cnt - mean * mean;
        double sd = var > 1e-12 ? sqrt(var) : 1.0;   /* a constant channel: leave its scale alone */
        d->mean[ch] = (float)mean;
        d->std[ch] = (float)sd;
        for (int v = 0; v < 256; v++)
            lut[ch][v] = (float)((v / 255.0 - mean) / sd);
    }
    fill_split(&d->train, tr, perm, ntrain, img[0], lab[0], lut);
    fill_split(&d->val, tr, perm + (n - nval), nval, img[1], lab[1], lut);
    fill_split(&d->test, te, tperm, ntest, img[2], lab[2], lut);
cleanup:
    nas_free(perm);
    nas_free(tperm);
    return st;
}

static nas_status check_opts(const ev_data_opts *o, nas_err *err)
{
    if (o->val_count < -1 || o->train_limit < 0 || o->test_limit < 0)
        return nas_errf(err, NAS_EINVAL, "data: val_count, train_limit and test_limit must not be negative");
    return NAS_OK;
}

/* The splits of what was read, which it frees; on failure data keeps only its name. */
static nas_status finish_load(raw_set *tr, raw_set *te, const ev_data_opts *opts, ev_data *data, nas_err *err)
{
    nas_status st = make_splits(tr, te, opts, data, err);
    raw_free(tr);
    raw_free(te);
    if (st != NAS_OK) {
        char name[64];
        memcpy(name, data->name, sizeof name);
        memset(data, 0, sizeof *data);
        memcpy(data->name, name, sizeof name);
    }
    return st;
}

nas_status ev_data_load(const char *spec, const ev_data_opts *opts, ev_data *data, nas_err *err)
{
    ev_data_opts defaults;
    if (!opts) {
        ev_data_opts_default(&defaults);
        opts = &defaults;
    }
    memset(data, 0, sizeof *data);
    if (!spec || !*spec)
        return nas_errf(err, NAS_EINVAL, "data: no data set given (mnist, fashion-mnist, idx:DIR, cifar10:DIR)");
    nas_status st = check_opts(opts, err);
    if (st != NAS_OK)
        return st;

    char dir[4096];
    int cifar = 0;
    const char *env = getenv("NAS_DATA_DIR");
    if (strlen(spec) > 3000 || (env && strlen(env) > 3000))
        return nas_errf(err, NAS_EINVAL, "data: folder name longer than 3000 characters");
    const char *colon = strchr(spec, ':');
    if (strcmp(spec, "fashion-mnist") == 0) {
        snprintf(data->name, sizeof data->name, "fashion-mnist");
        data->flip_ok = 1;   /* a mirrored shoe is still a shoe */
        if (!fashion_home(dir, sizeof dir))
            return nas_errf(err, NAS_EINVAL,
                            "data 'fashion-mnist': folder %s not found: install Debian's package %s "
                            "(apt-get install %s, or scripts/setup.sh), or set NAS_DATA_DIR to a folder "
                            "that holds fashion-mnist/", dir, FASHION_PACKAGE, FASHION_PACKAGE);
    } else if (strcmp(spec, "mnist") == 0) {
        data_home(spec, dir, sizeof dir);
        snprintf(data->name, sizeof data->name, "%s", spec);
        if (!dir_exists(dir))
            return nas_errf(err, NAS_EINVAL,
                            "data '%s': folder %s not found (run scripts/fetch-mnist.sh or `make data` "
                            "for mnist; or set NAS_DATA_DIR to the folder that holds %s/)",
                            spec, dir, spec);
    } else if (strcmp(spec, "cifar10") == 0) {
        data_home("cifar10", dir, sizeof dir);
        snprintf(data->name, sizeof data->name, "cifar10");
        data->flip_ok = 1;
        cifar = 1;
    } else if (colon && (strncmp(spec, "idx:", 4) == 0 || strncmp(spec, "cifar10:", 8) == 0)) {
        cifar = spec[0] == 'c';
        snprintf(dir, sizeof dir, "%s", colon + 1);
        snprintf(data->name, sizeof data->name, "%s", cifar ? "cifar10" : "idx");
        data->flip_ok = cifar;
        if (!colon[1])
            return nas_errf(err, NAS_EINVAL, "data '%s': no folder after the colon", spec);
        if (!dir_exists(dir))
            return nas_errf(err, NAS_EINVAL, "data '%s': folder %s not found", spec, dir);
    } else {
        return nas_errf(err, NAS_EINVAL,
                        "data '%s': unknown data set (expected mnist, fashion-mnist, idx:DIR, cifar10 or "
                        "cifar10:DIR)", spec);
    }
    data->num_classes = DATA_CLASSES;

    raw_set tr, te;
    size_t limit = file_cap(opts);
    st = cifar ? cifar_load(dir, limit, opts->skip_test, &tr, &te, data->source, sizeof data->source, err)
               : idx_load(dir, limit, opts->skip_test, &tr, &te, data->source, sizeof data->source, err);
    if (st != NAS_OK)
        return st;
    return finish_load(&tr, &te, opts, data, err);
}

nas_status ev_data_from_buffers(const char *kind, const ev_data_buf *bufs, int n, const ev_data_opts *opts,
                                ev_data *data, nas_err *err)
{
    ev_data_opts defaults;
    if (!opts) {
        ev_data_opts_default(&defaults);
        opts = &defaults;
    }
    memset(data, 0, sizeof *data);
    nas_status st = check_opts(opts, err);
    if (st != NAS_OK)
        return st;
    int cifar = kind && !strcmp(kind, "cifar10");
    if (!cifar && !(kind && !strcmp(kind, "idx")))
        return nas_errf(err, NAS_EINVAL, "data: buffers of kind '%s': expected idx or cifar10", kind ? kind : "");
    if (cifar ? n < 2 || n > CIFAR_TRAIN_BATCHES + 1 : n != 4)
        return nas_errf(err, NAS_EINVAL, "data: %d %s buffers given (%s)", n, kind,
                        cifar ? "1 to 5 training batches, then the test batch" : "4: train images, train labels, "
                        "test images, test labels");
    snprintf(data->name, sizeof data->name, "%s", kind);
    data->flip_ok = cifar;
    data->num_classes = DATA_CLASSES;
    raw_set tr, te;
    memset(&tr, 0, sizeof tr);
    memset(&te, 0, sizeof te);
    size_t limit = file_cap(opts);
    if (cifar) {
        for (int i = 0; i < n && st == NAS_OK; i++)
            st = cifar_append(&bufs[i], limit, i < n - 1 ? &tr : &te, err);
    } else {
        st = idx_parse_pair(&bufs[0], &bufs[1], limit, &tr, err);
        if (st == NAS_OK)
            st = idx_parse_pair(&bufs[2], &bufs[3], limit, &te, err);
        if (st == NAS_OK)
            st = idx_same_size(&tr, bufs[0].name, &te, bufs[2].name, err);
    }
    if (st != NAS_OK) {
        raw_free(&tr);
        raw_free(&te);
        return st;
    }
    fmt(data->source, sizeof data->source, "%s, %s", bufs[0].name, bufs[cifar ? n - 1 : 2].name);
    return finish_load(&tr, &te, opts, data, err);
}

void ev_data_free(ev_data *data)
{
    if (!data)
        return;
    ev_split *splits[3] = {&data->train, &data->val, &data->test};
    for (int k = 0; k < 3; k++) {
        nas_free_aligned(splits[k]->images);
        nas_free(splits[k]->labels);
    }
    memset(data, 0, sizeof *data);
}

/* Zeros are the mean once the loader has normalised the images. */
nas_status ev_split_resize(ev_split *s, int R, nas_err *err)
{
    if (s->n == 0 || (s->h == R && s->w == R))
        return NAS_OK;
    float *out = nas_malloc(sizeof(float) * (size_t)s->n * R * R * s->c);
    if (!out)
        return nas_errf(err, NAS_ENOMEM, "out of memory resizing images to %dx%d", R, R);
    int oy = (R - s->h) / 2, ox = (R - s->w) / 2;
    for (int i = 0; i < s->n; i++)
        for (int y = 0; y < R; y++)
            for (int x = 0; x < R; x++) {
                int sy = y - oy, sx = x - ox;
                float *d = out + (((size_t)i * R + y) * R + x) * s->c;
                for (int c = 0; c < s->c; c++)
                    d[c] = (sy >= 0 && sy < s->h && sx >= 0 && sx < s->w)
                               ? s->images[(((size_t)i * s->h + sy) * s->w + sx) * s->c + c]
                               : 0.0f;
            }
    nas_free(s->images);
    s->images = out;
    s->h = s->w = R;
    return NAS_OK;
}
