/* testutil.h — shared by the cmocka suites: the includes cmocka needs, in order,
 * and helpers for temporary folders and running the nas binary. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>

/* The suites never read or write the user's predictor cache, and a search in
 * them does not calibrate one first (--predictor auto, the default, goes
 * without): every process a suite starts inherits this. The suite that tests
 * the cache names its own folder. */
__attribute__((constructor)) static void tu_no_predictor_cache(void)
{
    setenv("NAS_CACHE_DIR", "off", 1);
}

/* A fresh folder under /tmp, removed by tu_rmtree. */
static inline char *tu_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/nas-test-XXXXXX");
    return mkdtemp(buf);
}

static inline void tu_rmtree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* Tests of a real search need the MNIST sample (`make data`); without it they
 * are skipped, saying why. */
#define tu_need_mnist()                                                   \
    do {                                                                  \
        if (access("data/mnist", F_OK) != 0) {                            \
            print_message("no data/mnist ('make data'): skipping\n");     \
            skip();                                                       \
        }                                                                 \
    } while (0)

/* The nas binary under test: $NAS_BIN (set by make test), else ./build/nas. */
/* The start of an mpirun command line as every test runs it: a time limit
 * (killed 5 s after), as root when the tests run as root, ranks placed freely
 * on a machine with fewer cores than ranks. */
static inline const char *tu_mpirun(int timeout_s, int np)
{
    static char buf[192];
    snprintf(buf, sizeof buf, "timeout -k 5 %d mpirun %s --oversubscribe --bind-to none -np %d", timeout_s,
             geteuid() == 0 ? "--allow-run-as-root" : "", np);
    return buf;
}

static inline const char *tu_nas_bin(void)
{
    const char *b = getenv("NAS_BIN");
    return b && *b ? b : "./build/nas";
}

/* A fresh folder for a test that runs `nas` and compares with a reference
 * run: DIR/ref.db, DIR/<db_name> and DIR/stderr.txt. */
typedef struct {
    char dir[64], ref_db[128], db[128], err[128];
} tu_run_paths;

static inline void tu_run_paths_make(tu_run_paths *p, const char *db_name)
{
    if (!tu_tmpdir(p->dir, sizeof p->dir))
        fail_msg("no temporary folder");
    snprintf(p->ref_db, sizeof p->ref_db, "%s/ref.db", p->dir);
    snprintf(p->db, sizeof p->db, "%s/%s", p->dir, db_name);
    snprintf(p->err, sizeof p->err, "%s/stderr.txt", p->dir);
}

/* Starts argv[0] with argv in a child: stdout to /dev/null, stderr to
 * err_path (NULL: /dev/null), the variable env set to value (NULL: unset) when
 * env is given. */
static inline pid_t tu_spawn(char *const argv[], const char *err_path, const char *env, const char *value)
{
    pid_t p = fork();
    if (p == 0) {
        if (env && value)
            setenv(env, value, 1);
        else if (env)
            unsetenv(env);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        int ef = err_path ? open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : fd;
        dup2(ef, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return p;
}

/* Waits for a child: its exit code, or 128 + the signal that ended it. */
static inline int tu_wait(pid_t p)
{
    int st;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs `nas ARGS` through the shell, stdout into *out (malloc'd, may be NULL).
 * Returns the exit code. */
static inline int tu_run_nas(const char *args, char **out)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", tu_nas_bin(), args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf)
        buf[len] = '\0';
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
