/* common.c — what every command shares: error printing, strict option parsing. */
#include "cli/cli.h"

#include <jansson.h>

#include <stddef.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_print_json(json_t *root, size_t flags)
{
    char *s = root ? json_dumps(root, flags) : NULL;
    json_decref(root);
    if (!s)
        return -1;
    int bad = printf("%s\n", s) < 0;
    nas_free(s);
    return bad ? -1 : 0;
}

int cli_fail(const char *cmd, nas_status st, const nas_err *err)
{
    fprintf(stderr, "nas %s: %s\n", cmd, err && err->msg[0] ? err->msg : nas_status_name(st));
    return nas_exit_code(st);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "nas %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'nas %s --help')\n", cmd);
    return 2;
}

int cli_parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_progress_enabled(void)
{
    const char *nc = getenv("NO_COLOR");
    return isatty(2) && !(nc && *nc);
}

/* Centre pad (zeros: the mean after normalisation) or crop a split to R x R. */
int cli_train_flag(const char *cmd, const char *a, const char *v, cli_train_flags *f)
{
    static const struct {
        const char *flag;
        long lo, hi;   /* lo -1: epochs_min */
        size_t off;
    } ints[] = {
        {"--epochs", -1, 1000, offsetof(cli_train_flags, epochs)},
        {"--batch", 1, 4096, offsetof(cli_train_flags, batch)},
        {"--threads", 0, 256, offsetof(cli_train_flags, threads)},
        {"--seed", 0, 0x7fffffffL, offsetof(cli_train_flags, seed)},
        {"--subset", 2, 100000000, offsetof(cli_train_flags, subset)},
    };
    if (!strcmp(a, "--lr")) {
        if (cli_parse_double(v, 1e-8, 100, &f->lr))
            return cli_usage_error(cmd, "--lr: '%s' is not a number in (0, 100]", v);
        return 0;
    }
    if (!strcmp(a, "--kd-alpha") || !strcmp(a, "--kd-temp")) {
        int al = a[5] == 'a';
        if (cli_parse_double(v, al ? 0 : 1, al ? 1 : 100, al ? &f->kd_alpha : &f->kd_temp))
            return cli_usage_error(cmd, "%s: '%s' is not a number in %s", a, v, al ? "[0, 1]" : "[1, 100]");
        return 0;
    }
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strcmp(a, ints[i].flag) != 0)
            continue;
        long lo = ints[i].lo < 0 ? f->epochs_min : ints[i].lo;
        if (cli_parse_int(v, lo, ints[i].hi, (long *)(void *)((char *)f + ints[i].off)))
            return cli_usage_error(cmd, "%s: '%s' is not an integer in %ld..%ld", a, v, lo, ints[i].hi);
        return 0;
    }
    return -1;
}
