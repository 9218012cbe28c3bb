/* nas.h — the few things every module of nas shares: the error value, the
 * allocator, and the random number generator.
 *
 * Errors are values (as in SQLite): a function that can fail returns a
 * nas_status and, when it fails, fills a nas_err whose message names the file,
 * field or value at fault. Only the CLI turns a status into an exit code.
 *
 * All random choices in nas come from PCG32 streams seeded by the user's seed,
 * so the same seed gives the same run. GSL's distributions draw from the same
 * generator through nas_gsl_rng_alloc().
 */
#ifndef NAS_H
#define NAS_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define NAS_VERSION "0.1.0"

typedef enum {
    NAS_OK = 0,
    NAS_EINVAL,    /* bad input or usage: a spec, job, data file or option (exit 2) */
    NAS_ENOMEM,    /* out of memory, or over a stated memory limit */
    NAS_EIO,       /* a file or device could not be read or written */
    NAS_EDIVERGED, /* a network's loss became NaN or infinite */
    NAS_EBUDGET,   /* a budget (joules, evaluations, seconds) would be exceeded */
    NAS_EDENIED,   /* permission denied (e.g. reading an energy counter) */
    NAS_EUNSUPP,   /* not available here (no meter, no GPU library) */
    NAS_EINTERNAL, /* a library call failed (XGBoost, SQLite, BLAS) */
    NAS_EINTR,     /* stopped by SIGINT or SIGTERM (nas_sig_*): exit 128 + the signal */
} nas_status;

/* On every declaration of a function that returns a nas_status a caller must
 * look at. GCC does not honour warn_unused_result on a type (it warns that the
 * attribute "only applies to function types" and drops it), hence a macro on
 * declarations. GCC also warns through a (void) cast: a status deliberately
 * dropped is written `if (f(...)) {}` with a comment on why. nas_errf and
 * nas_errctx are not marked: they build an error, and their result is a
 * convenience for `return nas_errf(...)`. */
#define NAS_MUST_USE __attribute__((warn_unused_result))

typedef struct {
    nas_status code;
    char msg[1024];
} nas_err;

/* Sets err (if not NULL) and returns code, so callers can write
 * `return nas_errf(err, NAS_EINVAL, "spec: field '%s' ...", name);` */
nas_status nas_errf(nas_err *err, nas_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with context ("loading x.json: ..."). */
nas_status nas_errctx(nas_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nas_err_clear(nas_err *err);
const char *nas_status_name(nas_status code);
/* The CLI's rule: 0 success, 2 bad usage or input, 128 + the signal for a
 * stop by signal (130 SIGINT, 143 SIGTERM), 1 any other failure. */
int nas_exit_code(nas_status code);

/* ---- memory ------------------------------------------------------------
 * Every allocation of nas goes through these. In test builds the debug
 * allocator can be told to fail the n-th call, pads blocks with canaries and
 * wipes freed memory, so out-of-memory paths are tested, not hoped for. */
void *nas_malloc(size_t n);
void *nas_calloc(size_t count, size_t size);
void *nas_realloc(void *p, size_t n);
void  nas_free(void *p);
/* Every JSON text nas reads is parsed here (jansson's json_loadb): NULL with
 * *st NAS_EINVAL for bad JSON (je says where), NAS_ENOMEM when memory ran out,
 * so a full allocator is never called a bad file nor yields a damaged tree.
 * je and st may be NULL; so may text (then NAS_EINVAL). */
struct json_t;
struct json_error_t;
struct json_t *nas_json_load(const char *text, size_t len, size_t flags, struct json_error_t *je, nas_status *st);
char *nas_strdup(const char *s);
/* Aligned to 64 bytes (one AVX-512 register, one cache line); free with nas_free_aligned. */
void *nas_malloc_aligned(size_t n);
void  nas_free_aligned(void *p);

/* Debug allocator control (works in every build; costs a branch per call).
 * fail_at = k > 0: the k-th allocation from now fails, then allocation works again.
 * fail_at = 0: never fail. */
void   nas_alloc_fail_at(long fail_at);
size_t nas_alloc_live(void);           /* blocks allocated and not yet freed */

/* ---- random numbers: PCG32 (O'Neill, pcg-random.org, XSH RR 64/32) ----- */
typedef struct {
    uint64_t state;
    uint64_t inc;   /* stream selector, always odd */
} nas_pcg32;

void     nas_pcg32_seed(nas_pcg32 *rng, uint64_t initstate, uint64_t initseq);
uint32_t nas_pcg32_next(nas_pcg32 *rng);
/* Uniform in [0, bound) without modulo bias. bound > 0. */
uint32_t nas_pcg32_bounded(nas_pcg32 *rng, uint32_t bound);
/* A uniform permutation of a[0..n) (Fisher-Yates, from the last element down). */
void nas_pcg32_shuffle(nas_pcg32 *rng, int *a, int n);
/* Uniform double in [0, 1) with 53 random bits. */
double   nas_pcg32_double(nas_pcg32 *rng);
/* A new independent stream derived from this one (for per-module or per-candidate streams). */
void     nas_pcg32_split(nas_pcg32 *rng, nas_pcg32 *child, uint64_t tag);

/* GSL face of PCG32: gsl_rng_set(r, s) seeds with (s, 54); nas_gsl_rng_alloc
 * seeds with both state and stream. Returns a gsl_rng* (kept void* so that
 * modules without GSL need not include it). */
extern const void *nas_gsl_rng_pcg32;   /* a const gsl_rng_type * */
void *nas_gsl_rng_alloc(uint64_t seed, uint64_t stream);
void  nas_gsl_rng_free(void *r);

/* ---- small utilities ---------------------------------------------------- */
/* Re-executes the program with OMP_WAIT_POLICY=passive unless it is set
 * (spinning idle OpenMP threads starve the working ones on a shared machine). */
void nas_omp_passive_reexec(char **argv);
/* The CPU's "model name" from /proc/cpuinfo, or fallback where there is none
 * (no /proc, or an aarch64 kernel, which names no model). */
void nas_cpu_model(char *out, size_t n, const char *fallback);
double nas_now(void);               /* monotonic seconds */
double nas_cpu_seconds(void);       /* this process's user+system CPU time */
/* Reads a whole file into a NUL-terminated buffer (nas_free it). */
NAS_MUST_USE nas_status nas_read_file(const char *path, char **out, size_t *len, nas_err *err);
/* Creates a folder and its missing parents (mkdir -p). */
NAS_MUST_USE nas_status nas_mkdirs(const char *dir, nas_err *err);
/* The folder part of a path: "." when it has none, "/" for a file at the root. */
void nas_path_dir(const char *path, char *dir, size_t n);
/* Writes via a temporary file and rename, so a crash never leaves half a file. */
NAS_MUST_USE nas_status nas_write_file_atomic(const char *path, const void *data, size_t len, nas_err *err);

/* ---- signals (sig.c) -------------------------------------------------------
 * SIGINT and SIGTERM stop a long command cleanly: the first is acknowledged
 * on stderr at once ("nas CMD: SIGTERM: stopping WHAT (Ctrl-C again ...)")
 * and only sets a flag that loops read at their next safe point; a second
 * ends the process at once with 128 + the signal. */
void nas_sig_install(const char *cmd, const char *what);   /* clears the flag */
void nas_sig_uninstall(void);                             /* the previous handlers back */
int  nas_sig_caught(void);           /* the first signal since install (SIGINT, SIGTERM), else 0 */
int  nas_sig_exit_code(void);        /* 128 + that signal; 0 when none came */
const char *nas_sig_name(int sig);   /* "SIGINT", "SIGTERM" */

#endif
