/* util.c — clocks and whole-file I/O, shared by every module. */
#include "base/nas.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double nas_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double nas_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

nas_status nas_read_file(const char *path, char **out, size_t *len, nas_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return nas_errf(err, errno == ENOENT ? NAS_EINVAL : NAS_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 65536, n = 0;
    char *buf = nas_malloc(cap + 1);
    nas_status st = NAS_OK;
    if (!buf) {
        st = nas_errf(err, NAS_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *bigger = nas_realloc(buf, cap * 2 + 1);
        if (!bigger) {
            st = nas_errf(err, NAS_ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        buf = bigger;
        cap *= 2;
    }
    if (ferror(f)) {
        st = nas_errf(err, NAS_EIO, "%s: read error", path);
        goto cleanup;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (len)
        *len = n;
cleanup:
    nas_free(buf);
    fclose(f);
    return st;
}

nas_status nas_write_file_atomic(const char *path, const void *data, size_t len, nas_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return nas_errf(err, NAS_EINVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return nas_errf(err, NAS_EIO, "%s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return nas_errf(err, NAS_EIO, "writing %s: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    int synced = fsync(fd), closed = close(fd);
    if (synced != 0 || closed != 0) {
        int e = errno;
        unlink(tmp);
        return nas_errf(err, NAS_EIO, "writing %s: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return nas_errf(err, NAS_EIO, "renaming %s to %s: %s", tmp, path, strerror(e));
    }
    return NAS_OK;
}

nas_status nas_mkdirs(const char *dir, nas_err *err)
{
    char buf[4096];
    if (!dir[0] || snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return nas_errf(err, NAS_EINVAL, "'%s': not a usable folder path", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return nas_errf(err, NAS_EIO, "cannot create folder %s: %s", buf, strerror(errno));
            *p = c;
            if (!c)
                break;
        }
    }
    return NAS_OK;
}

/* libgomp's idle threads spin (OMP_WAIT_POLICY active, for a while) waiting
 * for the next parallel region. On a machine shared with other work the
 * spinning threads take the cores the working ones need: on this 2-core VM,
 * loaded by other jobs, `nas train --threads 2` ran several times slower
 * than with passive waiting (mobilenetv2 --width 0.25 --subset 500 --epochs 1:
 * 32.4 s and 26.6 s spinning, 12.3 s and 10.1 s passive, load ~5). libgomp reads
 * the variable once, when the program starts, so it cannot be set from here
 * for this process: when it is not set, set it to passive and start again.
 * An explicit OMP_WAIT_POLICY (active, say, on a dedicated node) is kept;
 * NAS_NO_REEXEC=1 turns this off. The CLI and the benchmarks call it first
 * thing in main. */
void nas_omp_passive_reexec(char **argv)
{
    if (getenv("OMP_WAIT_POLICY"))
        return;
    const char *no = getenv("NAS_NO_REEXEC");
    if (no && !strcmp(no, "1"))
        return;
    /* NAS_WAIT_POLICY_SET tells children (a benchmark's peer) that the policy is ours */
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0 || setenv("NAS_WAIT_POLICY_SET", "1", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): go on spinning rather than fail */
}

void nas_cpu_model(char *out, size_t n, const char *fallback)
{
    snprintf(out, n, "%s", fallback);
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        const char *v = strchr(line, ':');
        if (!v)
            break;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        snprintf(out, n, "%.*s", (int)strcspn(v, "\n"), v);
        break;
    }
    fclose(f);
}

void nas_path_dir(const char *path, char *dir, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, n, ".");
    else if (slash == path)
        snprintf(dir, n, "/");
    else
        snprintf(dir, n, "%.*s", (int)(slash - path), path);
}
