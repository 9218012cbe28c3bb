/* test_progress.c — the status line (base/progress.h) on a clock the test
 * moves: off a terminal one plain line per period however often it is fed,
 * on a terminal redrawn in place and wiped before other output; ETA and
 * durations; `nas search --json` keeps stdout for its JSON while its
 * progress lines go to stderr; `nas calibrate` says network k of N. */
#include "tests/testutil.h"

#include <math.h>

#include "base/nas.h"
#include "base/progress.h"

static double fake_t;
static double fake_now(void) { return fake_t; }

static FILE *memfile(char **buf, size_t *len)
{
    FILE *f = open_memstream(buf, len);
    assert_non_null(f);
    return f;
}

static void start(nas_progress *p, FILE *f, int tty, double every)
{
    nas_progress_init(p, f, tty, every);
    p->now = fake_now;
    fake_t = 100;
    p->t0 = fake_t;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *q = s; (q = strstr(q, what)); q += strlen(what))
        n++;
    return n;
}

static void plain_lines_once_per_period(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = memfile(&buf, &len);
    nas_progress p;
    start(&p, f, 0, 5.0);
    /* 30 simulated seconds, fed every 0.25 s: the first at once, then one per 5 s */
    for (int k = 0; k <= 120; k++) {
        fake_t = 100 + 0.25 * k;
        nas_progress_show(&p, "step %d", k);
    }
    fclose(f);
    assert_int_equal(count(buf, "\n"), 7);
    assert_int_equal(count(buf, "\r"), 0);
    assert_non_null(strstr(buf, "step 0\n"));
    assert_non_null(strstr(buf, "step 20\n"));
    assert_null(strstr(buf, "step 19\n"));
    free(buf);
}

static void terminal_line_redrawn_and_cleared(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = memfile(&buf, &len);
    nas_progress p;
    start(&p, f, 1, 5.0);
    nas_progress_show(&p, "a");
    fake_t += 0.0625;
    nas_progress_show(&p, "b");   /* too soon: not drawn */
    fake_t += 0.25;
    nas_progress_show(&p, "c");
    nas_progress_clear(&p);
    nas_progress_clear(&p);       /* nothing shown: nothing to wipe */
    fclose(f);
    assert_string_equal(buf, "\r\033[Ka\r\033[Kc\r\033[K");
    free(buf);
}

static void eta_and_durations(void **state)
{
    (void)state;
    nas_progress p;
    start(&p, stderr, 0, 5.0);
    fake_t = 160;   /* 60 s in, a quarter done: 180 s left */
    assert_true(fabs(nas_progress_eta(&p, 0.25) - 180) < 1e-9);
    assert_true(isnan(nas_progress_eta(&p, 0)));
    char b[32];
    nas_progress_duration(42.4, b, sizeof b);
    assert_string_equal(b, "42s");
    nas_progress_duration(185, b, sizeof b);
    assert_string_equal(b, "3m05s");
    nas_progress_duration(3725, b, sizeof b);
    assert_string_equal(b, "1h02m");
    nas_progress_duration(NAN, b, sizeof b);
    assert_string_equal(b, "?");
}

/* A real search with --json, off a terminal: stdout is the JSON object alone,
 * stderr carries plain progress lines naming the candidate, its step and the
 * meter (known before the first result). */
static void search_json_progress_on_stderr(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], cmd[1024], *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(cmd, sizeof cmd, "search --data mnist --subset 64 --epochs 1 --stages 1 --max-width 0.25 "
             "--threads 1 --bench-seconds 0.02 --budget-evals 2 --no-db --final-top 0 --json 2>%s/err.txt", dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    assert_true(out[0] == '{');
    assert_int_equal(count(out, "\n"), 1);
    free(out);
    snprintf(cmd, sizeof cmd, "cat %s/err.txt", dir);
    FILE *pf = popen(cmd, "r");
    assert_non_null(pf);
    char line[2048];
    int progress = 0, no_meter = 0;
    while (fgets(line, sizeof line, pf)) {
        progress += strstr(line, "candidate #0") && strstr(line, "step ") && !strchr(line, '\r');
        no_meter += strstr(line, "no meter") != NULL;   /* the first candidate's lines said so */
    }
    pclose(pf);
    assert_true(progress >= 1);
    assert_int_equal(no_meter, 0);
    tu_rmtree(dir);
}

/* `nas calibrate` off a terminal: plain lines with network k of N and an ETA. */
static void calibrate_shows_network_k_of_n(void **state)
{
    (void)state;
    char dir[64], cmd[1024], *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(cmd, sizeof cmd, "calibrate --samples 20 --max-samples 20 --adaptive-rounds 0 --folds 3 --passes 1 "
             "--max-width 0.25 --min-seconds 0.02 --repeats 2 --no-reference --out %s/p.json 2>&1 >/dev/null", dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    assert_non_null(strstr(out, "calibrate: measure 0 of 20 networks"));
    assert_non_null(strstr(out, "ETA"));
    assert_null(strchr(out, '\r'));
    free(out);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_lines_once_per_period),
        cmocka_unit_test(terminal_line_redrawn_and_cleared),
        cmocka_unit_test(eta_and_durations),
        cmocka_unit_test(search_json_progress_on_stderr),
        cmocka_unit_test(calibrate_shows_network_k_of_n),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
