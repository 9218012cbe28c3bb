/* test_fuzz_regress.c — every fuzz target over its seed corpus
 * (fuzz/corpus/NAME) and over every input a fuzzer found a bug with
 * (fuzz/regress/NAME), without clang: in `make test` a fixed bug stays
 * fixed, and in `make test-asan` the sanitizers watch the same inputs. A
 * target aborts on a broken promise; here each input must also leave no
 * allocation behind. */
#include "tests/testutil.h"
#include "fuzz/targets.h"
#include "base/nas.h"

#include <dirent.h>
#include <sys/stat.h>

/* Runs the target over each file of dir; returns how many. */
static int replay_dir(const fuzz_target *t, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[1024];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        char *bytes;
        size_t len;
        nas_err err;
        if (nas_read_file(path, &bytes, &len, &err) != NAS_OK)
            fail_msg("%s", err.msg);
        size_t live = nas_alloc_live();
        assert_int_equal(t->run((const uint8_t *)bytes, len), 0);
        if (nas_alloc_live() != live)
            fail_msg("%s: %s left %zu allocations behind", t->name, path, nas_alloc_live() - live);
        nas_free(bytes);
        n++;
    }
    closedir(d);
    return n;
}

static void replay(void **state)
{
    const fuzz_target *t = *state;
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", t->name);
    int seeds = replay_dir(t, dir);
    snprintf(dir, sizeof dir, "fuzz/regress/%s", t->name);
    int found = replay_dir(t, dir);
    print_message("%s: %d seeds, %d regression inputs\n", t->name, seeds, found);
    assert_true(seeds > 0);   /* a target without seeds fuzzes blind */
}

int main(void)
{
    struct CMUnitTest tests[16];
    for (int i = 0; i < fuzz_n_targets && i < 16; i++)
        tests[i] = (struct CMUnitTest){fuzz_targets[i].name, replay, NULL, NULL, (void *)&fuzz_targets[i]};
    return _cmocka_run_group_tests("fuzz_regress", tests, (size_t)(fuzz_n_targets < 16 ? fuzz_n_targets : 16), NULL,
                                   NULL);
}
