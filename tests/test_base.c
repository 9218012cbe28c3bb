/* test_base.c — PCG32 against the published vector, its GSL face, the debug
 * allocator, errors and atomic file writes. */
#include "tests/testutil.h"
#include "base/nas.h"

#include <gsl/gsl_rng.h>
#include <gsl/gsl_randist.h>
#include <math.h>

static void pcg32_matches_reference_vector(void **state)
{
    (void)state;
    /* pcg32-demo from pcg-random.org: pcg32_srandom_r(&rng, 42, 54). */
    static const uint32_t want[6] = {0xa15c02b7, 0x7b47f409, 0xba1d3330,
                                     0x83d2f293, 0xbfa4784b, 0xcbed606e};
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 42, 54);
    for (int i = 0; i < 6; i++)
        assert_int_equal(nas_pcg32_next(&rng), want[i]);
}

static void pcg32_bounded_is_uniform_and_in_range(void **state)
{
    (void)state;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 1, 2);
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint32_t v = nas_pcg32_bounded(&rng, 7);
        assert_true(v < 7);
        counts[v]++;
    }
    for (int i = 0; i < 7; i++)   /* 10000 expected; 5 sigma is about 470 */
        assert_true(abs(counts[i] - 10000) < 500);
    for (int i = 0; i < 1000; i++) {
        double d = nas_pcg32_double(&rng);
        assert_true(d >= 0.0 && d < 1.0);
    }
}

/* A permutation, the same for a seed, and uniform: each of 4 elements lands
 * in each place about a quarter of the time. */
static void pcg32_shuffle_is_a_uniform_permutation(void **state)
{
    (void)state;
    nas_pcg32 r1, r2;
    nas_pcg32_seed(&r1, 5, 1);
    nas_pcg32_seed(&r2, 5, 1);
    int a[50], b[50], seen[50] = {0};
    for (int i = 0; i < 50; i++)
        a[i] = b[i] = i;
    nas_pcg32_shuffle(&r1, a, 50);
    nas_pcg32_shuffle(&r2, b, 50);
    assert_memory_equal(a, b, sizeof a);
    int moved = 0;
    for (int i = 0; i < 50; i++) {
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < 50; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 40);
    int count[4][4] = {{0}};
    for (int t = 0; t < 40000; t++) {
        int p[4] = {0, 1, 2, 3};
        nas_pcg32_shuffle(&r1, p, 4);
        for (int i = 0; i < 4; i++)
            count[p[i]][i]++;
    }
    for (int v = 0; v < 4; v++)
        for (int i = 0; i < 4; i++)
            assert_true(abs(count[v][i] - 10000) < 400);   /* ~4.6 sigma */
    nas_pcg32_shuffle(&r1, a, 0);   /* empty and single arrays are left alone */
    nas_pcg32_shuffle(&r1, a, 1);
}

static void gsl_face_draws_from_pcg(void **state)
{
    (void)state;
    gsl_rng *r = nas_gsl_rng_alloc(42, 54);
    assert_non_null(r);
    assert_int_equal(gsl_rng_get(r), 0xa15c02b7);
    assert_string_equal(gsl_rng_name(r), "nas-pcg32");
    /* GSL's own seeding goes through the type's set(): stream 54. */
    gsl_rng_set(r, 42);
    assert_int_equal(gsl_rng_get(r), 0xa15c02b7);
    /* A GSL distribution works on it: mean of 20000 gaussians near 0. */
    double sum = 0;
    for (int i = 0; i < 20000; i++)
        sum += gsl_ran_gaussian(r, 1.0);
    assert_true(fabs(sum / 20000) < 0.05);
    int a[10];
    for (int i = 0; i < 10; i++)
        a[i] = i;
    gsl_ran_shuffle(r, a, 10, sizeof(int));
    int seen = 0;
    for (int i = 0; i < 10; i++)
        seen |= 1 << a[i];
    assert_int_equal(seen, 0x3ff);
    nas_gsl_rng_free(r);
}

static void split_streams_differ_and_repeat(void **state)
{
    (void)state;
    nas_pcg32 a, b, c1, c2;
    nas_pcg32_seed(&a, 7, 1);
    nas_pcg32_seed(&b, 7, 1);
    nas_pcg32_split(&a, &c1, 3);
    nas_pcg32_split(&b, &c2, 3);
    assert_int_equal(nas_pcg32_next(&c1), nas_pcg32_next(&c2));
    assert_int_not_equal(nas_pcg32_next(&c1), nas_pcg32_next(&a));
}

static void allocator_fails_on_request_and_counts(void **state)
{
    (void)state;
    size_t live = nas_alloc_live();
    void *p = nas_malloc(100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    assert_int_equal(nas_alloc_live(), live + 1);
    nas_alloc_fail_at(2);
    void *q = nas_malloc(10);   /* first: works */
    void *r = nas_malloc(10);   /* second: fails */
    void *s = nas_malloc(10);   /* then works again */
    assert_non_null(q);
    assert_null(r);
    assert_non_null(s);
    nas_free(q);
    nas_free(s);
    nas_free(p);
    assert_int_equal(nas_alloc_live(), live);
    assert_null(nas_calloc(SIZE_MAX / 2, 4));   /* overflow is refused, not wrapped */
}

static void overrun_is_caught_on_free(void **state)
{
    (void)state;
    /* A write one byte past the block must abort in nas_free: run it in a child. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *p = nas_malloc(16);
        p[16] = 'x';
        nas_free(p);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st));
}

static void errors_carry_message_and_exit_code(void **state)
{
    (void)state;
    nas_err e;
    nas_err_clear(&e);
    assert_int_equal(nas_errf(&e, NAS_EINVAL, "field '%s'", "kernel"), NAS_EINVAL);
    nas_errctx(&e, "spec.json");
    assert_string_equal(e.msg, "spec.json: field 'kernel'");
    assert_int_equal(nas_exit_code(NAS_OK), 0);
    assert_int_equal(nas_exit_code(NAS_EINVAL), 2);
    assert_int_equal(nas_exit_code(NAS_EIO), 1);
}

static void atomic_write_and_read_back(void **state)
{
    (void)state;
    char dir[64], path[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/f.txt", dir);
    nas_err e;
    assert_int_equal(nas_write_file_atomic(path, "hello", 5, &e), NAS_OK);
    char *buf;
    size_t n;
    assert_int_equal(nas_read_file(path, &buf, &n, &e), NAS_OK);
    assert_int_equal(n, 5);
    assert_string_equal(buf, "hello");
    nas_free(buf);
    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(nas_read_file(path, &buf, &n, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "missing"));
    snprintf(path, sizeof path, "%s/nodir/f", dir);
    assert_int_equal(nas_write_file_atomic(path, "x", 1, &e), NAS_EIO);
    /* mkdir -p: parents made, an existing folder is fine, a file in the way is named. */
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    assert_int_equal(nas_mkdirs(path, &e), NAS_OK);
    assert_int_equal(nas_mkdirs(path, &e), NAS_OK);
    snprintf(path, sizeof path, "%s/a/b/c/f", dir);
    assert_int_equal(nas_write_file_atomic(path, "x", 1, &e), NAS_OK);
    snprintf(path, sizeof path, "%s/a/b/c/f/g", dir);
    assert_int_equal(nas_mkdirs(path, &e), NAS_EIO);
    assert_non_null(strstr(e.msg, "c/f/g"));
    tu_rmtree(dir);
}

/* The CPU model is the cpuinfo line's value, whole and without its newline;
 * the fallback only where cpuinfo names none. */
static void cpu_model_reads_cpuinfo(void **state)
{
    (void)state;
    char got[256], want[256] = "";
    nas_cpu_model(got, sizeof got, "no model here");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (!want[0] && fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10) && strchr(line, ':'))
                sscanf(strchr(line, ':') + 1, " %255[^\n]", want);
        fclose(f);
    }
    assert_string_equal(got, want[0] ? want : "no model here");
    assert_null(strchr(got, '\n'));
    char tiny[4];
    nas_cpu_model(tiny, sizeof tiny, "fallback");   /* truncated, still terminated */
    assert_int_equal(strlen(tiny), 3);
}

/* The folder of a path, as the store and the exporter make it before writing. */
static void the_folder_of_a_path(void **state)
{
    (void)state;
    char d[64];
    const char *cases[][2] = {{"runs.db", "."}, {"/runs.db", "/"}, {"out/a/m.onnx", "out/a"}, {"/tmp/x/y", "/tmp/x"},
                              {"a/", "a"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nas_path_dir(cases[i][0], d, sizeof d);
        assert_string_equal(d, cases[i][1]);
    }
    nas_path_dir("averyveryverylongfolder/x", d, 8);   /* cut to fit, terminated */
    assert_string_equal(d, "averyve");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pcg32_matches_reference_vector),
        cmocka_unit_test(pcg32_bounded_is_uniform_and_in_range),
        cmocka_unit_test(pcg32_shuffle_is_a_uniform_permutation),
        cmocka_unit_test(gsl_face_draws_from_pcg),
        cmocka_unit_test(split_streams_differ_and_repeat),
        cmocka_unit_test(allocator_fails_on_request_and_counts),
        cmocka_unit_test(overrun_is_caught_on_free),
        cmocka_unit_test(errors_carry_message_and_exit_code),
        cmocka_unit_test(atomic_write_and_read_back),
        cmocka_unit_test(cpu_model_reads_cpuinfo),
        cmocka_unit_test(the_folder_of_a_path),
    };
    return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
