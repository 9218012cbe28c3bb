/* flags.c — command-line flags read through the one table of settings
 * (app/settings.c): a flag is a row's name with "--", a boolean takes no
 * value ("--no-NAME" clears it), and every value is checked as a job file's
 * would be. */
#include "cli/cli.h"

#include <string.h>

static const app_setting *find_flag(const char *a, int which, int *clear)
{
    *clear = 0;
    const app_setting *t = app_setting_find(a, which);
    if (!t && !strncmp(a, "--no-", 5)) {   /* "--no-reference" */
        char name[80];
        snprintf(name, sizeof name, "--%s", a + 5);
        t = app_setting_find(name, which);
        *clear = t && t->type == APP_BOOL;
        if (!*clear)
            t = NULL;
    }
    return t;
}

int cli_flags_parse(const char *cmd, int which, int argc, char **argv, app_settings *s, void (*usage)(FILE *))
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-')
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        int clear;
        const app_setting *t = strncmp(a, "--", 2) ? NULL : find_flag(a, which, &clear);
        if (!t)
            return cli_usage_error(cmd, "unknown option '%s' (nas %s --help lists them)", a, cmd);
        nas_err err = {0};
        if (t->type == APP_BOOL) {
            *(long *)((char *)s + t->off) = !clear;
            continue;
        }
        if (!v)
            return cli_usage_error(cmd, "%s needs a value", a);
        i++;
        if (app_setting_parse(t, s, v, &err))
            return cli_usage_error(cmd, "%s", err.msg);
    }
    return -1;
}

int cli_settings_check(const char *cmd, int which, const app_settings *s)
{
    nas_err err = {0};
    if (app_settings_check(s, which, &err))
        return cli_usage_error(cmd, "%s", err.msg);
    return -1;
}
