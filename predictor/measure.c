/* measure.c — measuring a network with a command the user supplies, for
 * hardware that is not this machine (a phone over adb, a board over ssh).
 *
 * Per network: the spec's JSON goes to a temporary file, "{spec}" in the
 * template becomes its path (shell-quoted), "{onnx}" the path of the ONNX
 * model the caller exported (the CLI does, with the evaluator), /bin/sh runs
 * the command, and its
 * stdout is read for "key=value" lines (format in pred.h). The command's
 * stderr passes through to ours, so its own diagnostics reach the user. A
 * command runs in a process group of its own, so one that outlives its time
 * (a board that hangs) is killed with everything it started.
 */
#include "predictor/pred.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int parse_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t' || *end == '\r')
        end++;
    if (end == s || *end || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

nas_status pred_parse_measure_output(const char *text, pred_measurement *m, nas_err *err)
{
    memset(m, 0, sizeof *m);
    snprintf(m->energy_source, sizeof m->energy_source, "cmd");
    snprintf(m->energy_quality, sizeof m->energy_quality, "measured");
    int have_lat = 0, have_en = 0;
    const char *p = text;
    int lineno = 0;
    while (*p) {
        lineno++;
        size_t len = strcspn(p, "\n");
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line - 1 ? len : sizeof line - 1), p);
        p += len + (p[len] == '\n');
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        char *eq = strchr(s, '=');
        if (!eq)
            continue;
        *eq = '\0';
        for (char *e = eq - 1; e >= s && (*e == ' ' || *e == '\t'); e--)
            *e = '\0';
        const char *key = s, *val = eq + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        double v, hi = PRED_MAX_SPREAD;
        double *dst = NULL;
        int *flag = NULL;
        if (!strcmp(key, "latency_ms")) {
            dst = &m->latency_ms;
            flag = &have_lat;
            hi = PRED_MAX_MS;
        } else if (!strcmp(key, "energy_mj")) {
            dst = &m->energy_mj;
            flag = &have_en;
            hi = PRED_MAX_MJ;
        } else if (!strcmp(key, "latency_spread")) {
            dst = &m->latency_spread;
        } else if (!strcmp(key, "energy_spread")) {
            dst = &m->energy_spread;
        } else if (!strcmp(key, "energy_source")) {
            size_t n = strcspn(val, "\r");
            for (size_t i = 0; i < n; i++)
                if (val[i] < 0x20 || val[i] > 0x7e)
                    return nas_errf(err, NAS_EINVAL, "measure output line %d: energy_source: byte %zu is not "
                                    "printable ASCII", lineno, i + 1);
            if (n == 0 || n >= sizeof m->energy_source)
                return nas_errf(err, NAS_EINVAL, "measure output line %d: energy_source: %zu characters "
                                "(1 to %zu allowed)", lineno, n, sizeof m->energy_source - 1);
            memcpy(m->energy_source, val, n);
            m->energy_source[n] = '\0';
            continue;
        } else if (!strcmp(key, "energy_quality")) {
            if (strcmp(val, "measured") && strcmp(val, "sampled") && strcmp(val, "estimated"))
                return nas_errf(err, NAS_EINVAL,
                                "measure output line %d: energy_quality: '%s' is not measured, sampled or estimated",
                                lineno, val);
            snprintf(m->energy_quality, sizeof m->energy_quality, "%s", val);
            continue;
        } else {
            continue;   /* other lines are the command's own business */
        }
        if (parse_number(val, &v) != 0)
            return nas_errf(err, NAS_EINVAL, "measure output line %d: %s: '%s' is not a number", lineno, key, val);
        if (flag && !(v > 0))
            return nas_errf(err, NAS_EINVAL, "measure output line %d: %s: %g is not positive", lineno, key, v);
        if (!flag && v < 0)
            return nas_errf(err, NAS_EINVAL, "measure output line %d: %s: %g is negative", lineno, key, v);
        if (v > hi)
            return nas_errf(err, NAS_EINVAL, "measure output line %d: %s: %g is out of range (at most %g)", lineno,
                            key, v, hi);
        *dst = v;
        if (flag)
            *flag = 1;
    }
    if (!have_lat)
        return nas_errf(err, NAS_EINVAL, "measure output has no 'latency_ms=<ms>' line");
    if (!have_en)
        return nas_errf(err, NAS_EINVAL, "measure output has no 'energy_mj=<mJ>' line");
    return NAS_OK;
}

/* Appends s to buf[*len..cap), growing it. */
static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (*len + n + 1 > nc)
            nc *= 2;
        char *b = nas_realloc(*buf, nc);
        if (!b)
            return -1;
        *buf = b;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* Runs cmd with /bin/sh in a process group of its own, collecting its stdout
 * into *out; past timeout_s (0: no limit) the group is killed and *timed_out
 * set. *status is waitpid's. */
static nas_status run_cmd(const char *cmd, double timeout_s, char **out, size_t *out_len, size_t *out_cap,
                          int *status, int *timed_out, nas_err *err)
{
    int fds[2];
    *timed_out = 0;
    if (pipe(fds) != 0)
        return nas_errf(err, NAS_EIO, "measure command: pipe: %s", strerror(errno));
    fflush(NULL);   /* buffered output of ours must not be duplicated into the child */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return nas_errf(err, NAS_EIO, "measure command: cannot start '%s': %s", cmd, strerror(errno));
    }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);   /* also here: whichever runs first, the group exists before a kill */
    close(fds[1]);
    double deadline = timeout_s > 0 ? nas_now() + timeout_s : 0;
    nas_status st = NAS_OK;
    char buf[4096];
    for (int open_fd = 1; open_fd;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - nas_now();
            if (left <= 0) {
                *timed_out = 1;
                break;
            }
            ms = (int)ceil(left * 1e3);
        }
        struct pollfd pf = {fds[0], POLLIN, 0};
        int r = poll(&pf, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;   /* the deadline is checked above */
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            open_fd = 0;
        else if (st == NAS_OK && append(out, out_len, out_cap, buf, (size_t)n) != 0)
            st = nas_errf(err, NAS_ENOMEM, "measure command: out of memory");
    }
    close(fds[0]);
    if (*timed_out)
        kill(-pid, SIGKILL);
    /* stdout closed; the command may still be running (it backgrounded
     * something): without a limit wait for it, else poll to the deadline */
    for (;;) {
        pid_t w = waitpid(pid, status, deadline > 0 && !*timed_out ? WNOHANG : 0);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        if (w == 0 && nas_now() >= deadline) {
            *timed_out = 1;
            kill(-pid, SIGKILL);
        } else if (w == 0) {
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
        }
    }
    if (*timed_out)
        kill(-pid, SIGKILL);   /* whatever it left behind */
    return st;
}

nas_status pred_measure_cmd(const char *template, const space_spec *spec, const char *onnx_path,
                            double timeout_s, pred_measurement *m, nas_err *err)
{
    nas_status st = NAS_OK;
    /* in $TMPDIR (a user's, or a test's own folder), else /tmp */
    const char *tmp = getenv("TMPDIR");
    char path[512];
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (snprintf(path, sizeof path, "%s/nas-spec-XXXXXX.json", tmp) >= (int)sizeof path || strchr(path, '\''))
        return nas_errf(err, NAS_EINVAL, "measure command: TMPDIR %s is too long or holds a quote", tmp);
    int fd = -1, have_file = 0;
    char *json = NULL, *cmd = NULL, *out = NULL;
    size_t cmd_len = 0, cmd_cap = 0, out_len = 0, out_cap = 0;

    if (strstr(template, "{onnx}") && !onnx_path)
        return nas_errf(err, NAS_EUNSUPP, "measure command: {onnx} asked for, but no ONNX model was exported "
                        "for this network (only {spec} works here)");
    if (onnx_path && strchr(onnx_path, '\''))
        return nas_errf(err, NAS_EINVAL, "measure command: the ONNX path %s holds a quote", onnx_path);
    json = space_spec_to_json(spec, 1);
    if (!json)
        return nas_errf(err, NAS_ENOMEM, "measure command: out of memory writing the spec");
    fd = mkstemps(path, 5);
    if (fd < 0) {
        st = nas_errf(err, NAS_EIO, "measure command: cannot create %s: %s", path, strerror(errno));
        goto cleanup;
    }
    have_file = 1;
    size_t jl = strlen(json);
    if (write(fd, json, jl) != (ssize_t)jl || close(fd) != 0) {
        fd = -1;
        st = nas_errf(err, NAS_EIO, "measure command: writing %s: %s", path, strerror(errno));
        goto cleanup;
    }
    fd = -1;

    /* the template with every {spec} and {onnx} replaced by the quoted path */
    const char *t = template;
    while (*t) {
        const char *hs = strstr(t, "{spec}"), *ho = strstr(t, "{onnx}");
        const char *hit = hs && (!ho || hs < ho) ? hs : ho;
        size_t n = hit ? (size_t)(hit - t) : strlen(t);
        if (append(&cmd, &cmd_len, &cmd_cap, t, n) != 0)
            goto oom;
        if (!hit)
            break;
        const char *what = hit == hs ? path : onnx_path;   /* neither holds a quote */
        if (append(&cmd, &cmd_len, &cmd_cap, "'", 1) != 0 ||
            append(&cmd, &cmd_len, &cmd_cap, what, strlen(what)) != 0 ||
            append(&cmd, &cmd_len, &cmd_cap, "'", 1) != 0)
            goto oom;
        t = hit + 6;
    }
    if (!cmd) {
        st = nas_errf(err, NAS_EINVAL, "measure command: empty");
        goto cleanup;
    }
    int status = 0, timed_out = 0;
    st = run_cmd(cmd, timeout_s, &out, &out_len, &out_cap, &status, &timed_out, err);
    if (st != NAS_OK)
        goto cleanup;
    if (timed_out) {
        st = nas_errf(err, NAS_EIO, "measure command '%s' ran over its %g s (--measure-timeout) and was "
                      "killed", cmd, timeout_s);
        goto cleanup;
    }
    if (WIFSIGNALED(status)) {
        st = nas_errf(err, NAS_EIO, "measure command '%s' was killed by signal %d", cmd, WTERMSIG(status));
        goto cleanup;
    }
    if (WEXITSTATUS(status) != 0) {
        st = nas_errf(err, NAS_EIO, "measure command '%s' failed with exit status %d%s", cmd,
                      WEXITSTATUS(status), WEXITSTATUS(status) == 127 ? " (command not found?)" : "");
        goto cleanup;
    }
    st = pred_parse_measure_output(out ? out : "", m, err);
    if (st != NAS_OK)
        nas_errctx(err, "measure command '%s'", cmd);
    goto cleanup;
oom:
    st = nas_errf(err, NAS_ENOMEM, "measure command: out of memory");
cleanup:
    if (fd >= 0)
        close(fd);
    if (have_file)
        unlink(path);
    nas_free(json);
    nas_free(cmd);
    nas_free(out);
    return st;
}

nas_status pred_measure_cmd_fn(void *ctx, const space_spec *spec, const space_net *net,
                               pred_measurement *m, nas_err *err)
{
    (void)net;
    return pred_measure_cmd((const char *)ctx, spec, NULL, 0, m, err);
}
