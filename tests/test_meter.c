/* test_meter.c — the energy meters against fake hardware: powercap trees this
 * test builds (several domains, an MMIO copy, psys, wrap-around, an
 * unreadable range, a counter that cannot be read), a fake perf PMU, and a
 * stand-in libnvidia-ml (tests/fake_nvml.c) with scripted answers; the CPU-time
 * model against this process's own CPU time; auto's choice and its reasons. */
#include "tests/testutil.h"
#include "evaluator/ev.h"

#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>

/* ---- fake powercap trees ------------------------------------------------ */

static void write_text(const char *path, const char *text)
{
    /* Through a rename, so the sampling thread never reads half a number. */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

static void zpath(char *out, size_t n, const char *root, const char *zone, const char *file)
{
    snprintf(out, n, "%s/%s%s%s", root, zone, file ? "/" : "", file ? file : "");
}

/* A zone folder with name, energy_uj and max_energy_range_uj (max < 0: the
 * range file is a folder, so reading it fails for root too). */
static void mk_zone(const char *root, const char *zone, const char *name, unsigned long long energy, long long max)
{
    char p[600], v[64];
    zpath(p, sizeof p, root, zone, NULL);
    assert_int_equal(mkdir(p, 0755), 0);
    zpath(p, sizeof p, root, zone, "name");
    snprintf(v, sizeof v, "%s\n", name);
    write_text(p, v);
    zpath(p, sizeof p, root, zone, "energy_uj");
    snprintf(v, sizeof v, "%llu\n", energy);
    write_text(p, v);
    zpath(p, sizeof p, root, zone, "max_energy_range_uj");
    if (max < 0) {
        assert_int_equal(mkdir(p, 0755), 0);
    } else {
        snprintf(v, sizeof v, "%lld\n", max);
        write_text(p, v);
    }
}

static void set_energy(const char *root, const char *zone, unsigned long long uj)
{
    char p[600], v[64];
    zpath(p, sizeof p, root, zone, "energy_uj");
    snprintf(v, sizeof v, "%llu\n", uj);
    write_text(p, v);
}

#define MAXR 100000000000LL   /* a typical max_energy_range_uj scale */

/* Two sockets, everything a real server shows and then some. */
static void mk_server_tree(const char *root)
{
    assert_int_equal(chmod(root, 0755), 0);
    char p[600];
    zpath(p, sizeof p, root, "intel-rapl", NULL);   /* the control-type folder: not a zone */
    assert_int_equal(mkdir(p, 0755), 0);
    mk_zone(root, "intel-rapl:0", "package-0", 1000, MAXR);
    mk_zone(root, "intel-rapl:0:0", "core", 1000, MAXR);
    mk_zone(root, "intel-rapl:0:1", "uncore", 1000, MAXR);
    mk_zone(root, "intel-rapl:0:2", "dram", 1000, MAXR);
    mk_zone(root, "intel-rapl:1", "package-1", 5000, MAXR);
    /* package-1's dram lives only inside its package folder, as sysfs nests it. */
    mk_zone(root, "intel-rapl:1/intel-rapl:1:0", "dram", 5000, MAXR);
    mk_zone(root, "intel-rapl:2", "psys", 7000, MAXR);
    mk_zone(root, "intel-rapl-mmio:0", "package-0", 3000, MAXR);
}

static void bump_server_tree(const char *root)
{
    set_energy(root, "intel-rapl:0", 1000 + 1000000);
    set_energy(root, "intel-rapl:0:0", 1000 + 400000);
    set_energy(root, "intel-rapl:0:1", 1000 + 100000);
    set_energy(root, "intel-rapl:0:2", 1000 + 300000);
    set_energy(root, "intel-rapl:1", 5000 + 2000000);
    set_energy(root, "intel-rapl:1/intel-rapl:1:0", 5000 + 500000);
    set_energy(root, "intel-rapl:2", 7000 + 9000000);
    set_energy(root, "intel-rapl-mmio:0", 3000 + 7000000);
}

static ev_meter *open_rapl(const char *root, int include_dram, nas_status want, nas_err *err)
{
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    o.kind = "rapl";
    o.sysfs_root = root;
    o.include_dram = include_dram;
    o.poll_seconds = -1;
    o.live_seconds = -1;   /* a fake tree's counters move only when the test says */
    ev_meter *m = NULL;
    nas_status st = ev_meter_open(&o, &m, err);
    if (st != want)
        fail_msg("rapl open: %s (%s), wanted %s", nas_status_name(st), err->msg, nas_status_name(want));
    return m;
}

static double read_ok(ev_meter *m)
{
    double j = -1;
    nas_err err = {0};
    if (ev_meter_read(m, &j, &err) != NAS_OK)
        fail_msg("read: %s", err.msg);
    return j;
}

static void rapl_sums_package_domains_only(void **state)
{
    (void)state;
    char root[64];
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_server_tree(root);
    nas_err err = {0};
    ev_meter *m = open_rapl(root, 0, NAS_OK, &err);
    assert_string_equal(ev_meter_source(m), "rapl:package-0+package-1");
    assert_int_equal(ev_meter_quality(m), EV_MEASURED);
    assert_float_equal(ev_meter_uncertainty(m), 0.02, 1e-12);
    assert_float_equal(read_ok(m), 0.0, 0);
    bump_server_tree(root);
    /* package-0 1 J + package-1 2 J: not core, uncore, dram, psys, nor the MMIO copy. */
    assert_float_equal(read_ok(m), 3.0, 1e-12);
    ev_meter_info info;
    ev_meter_get_info(m, &info);
    assert_string_equal(info.kind, "rapl");
    assert_int_equal(info.samples, 2);
    assert_int_equal(info.wraps, 0);
    assert_int_equal(info.dropped, 0);
    assert_float_equal(info.poll_seconds, 0, 0);
    assert_non_null(strstr(info.note, "intel-rapl-mmio:0 repeats package-0 of intel-rapl: counted once"));
    assert_non_null(strstr(info.note, "psys not added"));
    ev_meter_close(m);

    /* dram on request, found nested too, labelled by its package. */
    tu_rmtree(root);
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_server_tree(root);
    m = open_rapl(root, 1, NAS_OK, &err);
    assert_string_equal(ev_meter_source(m), "rapl:package-0+package-1+dram-0+dram-1");
    bump_server_tree(root);
    assert_float_equal(read_ok(m), 3.8, 1e-12);
    ev_meter_close(m);
    tu_rmtree(root);
}

static void rapl_wraps_are_corrected_or_dropped(void **state)
{
    (void)state;
    char root[64];
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_zone(root, "intel-rapl:0", "package-0", 900000, 1000000);
    mk_zone(root, "intel-rapl:1", "package-1", 900000, -1);   /* range unreadable */
    nas_err err = {0};
    ev_meter *m = open_rapl(root, 0, NAS_OK, &err);
    ev_meter_info info;
    ev_meter_get_info(m, &info);
    assert_non_null(strstr(info.note, "package-1: max_energy_range_uj unreadable"));

    /* Both counters wrap: package-0 by its range (+0.2 J), package-1 dropped. */
    set_energy(root, "intel-rapl:0", 100000);
    set_energy(root, "intel-rapl:1", 100000);
    assert_float_equal(read_ok(m), 0.2, 1e-12);
    ev_meter_get_info(m, &info);
    assert_int_equal(info.wraps, 1);
    assert_int_equal(info.dropped, 1);
    /* Counting resumes from the wrapped value on both. */
    set_energy(root, "intel-rapl:0", 300000);
    set_energy(root, "intel-rapl:1", 150000);
    assert_float_equal(read_ok(m), 0.2 + 0.2 + 0.05, 1e-12);
    /* A step back of more than half the range is no wrap we can trust (or the
     * counter was reset): dropped, never counted as ~1 J, never negative. */
    set_energy(root, "intel-rapl:0", 299000);
    assert_float_equal(read_ok(m), 0.45, 1e-12);
    ev_meter_get_info(m, &info);
    assert_int_equal(info.wraps, 1);
    assert_int_equal(info.dropped, 2);
    ev_meter_close(m);
    tu_rmtree(root);
}

/* What an evaluation cost, read after it: a counter that cannot be read is an
 * error naming it, never a cost of 0 J (a search would spend past its budget
 * unseen). */
static void a_failed_read_is_no_free_energy(void **state)
{
    (void)state;
    char root[64], p[600];
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_zone(root, "intel-rapl:0", "package-0", 1000000, MAXR);
    nas_err err = {0};
    ev_meter *m = open_rapl(root, 0, NAS_OK, &err);
    double j0 = read_ok(m), spent = -1;
    set_energy(root, "intel-rapl:0", 3500000);
    assert_int_equal(ev_meter_spent(m, j0, &spent, &err), NAS_OK);
    assert_float_equal(spent, 2.5, 1e-12);
    zpath(p, sizeof p, root, "intel-rapl:0", "energy_uj");
    assert_int_equal(unlink(p), 0);
    assert_int_not_equal(ev_meter_spent(m, j0, &spent, &err), NAS_OK);
    assert_true(isnan(spent));
    assert_non_null(strstr(err.msg, "energy_uj"));
    ev_meter_close(m);
    tu_rmtree(root);
}

static void rapl_sampling_thread_sees_wraps_between_reads(void **state)
{
    (void)state;
    char root[64];
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_zone(root, "intel-rapl:0", "package-0", 0, 1000000);
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    o.kind = "rapl";
    o.sysfs_root = root;
    o.poll_seconds = 0.005;
    o.live_seconds = -1;
    ev_meter *m = NULL;
    nas_err err = {0};
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    /* 0 -> 800k -> (wrap) 100k -> 800k -> (wrap) 100k: 2.1 J, of which a
     * reader at the end alone would see 0.1 J. */
    static const unsigned long long seq[] = {800000, 100000, 800000, 100000};
    struct timespec nap = {0, 1000 * 1000};
    ev_meter_info info;
    for (int i = 0; i < 4; i++) {
        set_energy(root, "intel-rapl:0", seq[i]);
        /* Two more samples: at least one began after the change (a loaded
         * machine may delay the thread, never skip the check). */
        ev_meter_get_info(m, &info);
        long want = info.samples + 2;
        double t0 = nas_now();
        do {
            nanosleep(&nap, NULL);
            ev_meter_get_info(m, &info);
        } while (info.samples < want && nas_now() - t0 < 120);   /* a bound for a broken thread only */
        assert_true(info.samples >= want);
    }
    assert_float_equal(read_ok(m), 2.1, 1e-12);
    ev_meter_get_info(m, &info);
    assert_int_equal(info.wraps, 2);
    assert_float_equal(info.poll_seconds, 0.005, 1e-12);
    ev_meter_close(m);
    /* The default period is stated: 1 s for RAPL. */
    o.poll_seconds = 0;
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    ev_meter_get_info(m, &info);
    assert_float_equal(info.poll_seconds, 1.0, 0);
    ev_meter_close(m);
    tu_rmtree(root);
}

typedef struct {
    const char *root;
} bump_arg;

static void *bump_later(void *arg)
{
    const bump_arg *b = arg;
    struct timespec nap = {0, 30 * 1000 * 1000};
    nanosleep(&nap, NULL);
    set_energy(b->root, "intel-rapl:0", 5000);
    return NULL;
}

static void rapl_counter_must_move_at_open(void **state)
{
    (void)state;
    char root[64];
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_zone(root, "intel-rapl:0", "package-0", 1000, MAXR);
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    o.kind = "rapl";
    o.sysfs_root = root;
    o.poll_seconds = -1;
    o.live_seconds = 0.05;
    ev_meter *m = NULL;
    nas_err err = {0};
    double t0 = nas_now();
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EUNSUPP);
    assert_true(nas_now() - t0 >= 0.05);
    assert_non_null(strstr(err.msg, "did not move"));
    /* Moving during the check: accepted, and energy counts from after it
     * (the check ends at the first move: the long limit only waits out a
     * loaded machine that runs the bumping thread late). */
    o.live_seconds = 120;
    bump_arg b = {root};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bump_later, &b), 0);
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    pthread_join(th, NULL);
    assert_float_equal(read_ok(m), 0.0, 0);
    set_energy(root, "intel-rapl:0", 5000 + 20000);
    assert_float_equal(read_ok(m), 0.02, 1e-12);
    ev_meter_close(m);
    tu_rmtree(root);
}

static void rapl_other_trees(void **state)
{
    (void)state;
    char root[64];
    nas_err err = {0};
    ev_meter_info info;
    /* A laptop: psys and the MMIO package only. */
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_zone(root, "intel-rapl-mmio:0", "package-0", 10, MAXR);
    ev_meter *m = open_rapl(root, 0, NAS_OK, &err);
    assert_string_equal(ev_meter_source(m), "rapl:package-0(mmio)");
    set_energy(root, "intel-rapl-mmio:0", 10 + 250000);
    assert_float_equal(read_ok(m), 0.25, 1e-12);
    ev_meter_close(m);
    tu_rmtree(root);

    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_zone(root, "intel-rapl:0", "psys", 10, MAXR);
    mk_zone(root, "intel-rapl:0:0", "core", 10, MAXR);
    m = open_rapl(root, 1, NAS_OK, &err);
    assert_string_equal(ev_meter_source(m), "rapl:psys");
    ev_meter_get_info(m, &info);
    assert_non_null(strstr(info.note, "psys (the whole SoC) measured instead"));
    ev_meter_close(m);
    tu_rmtree(root);

    /* Only sub-domains: nothing to sum. */
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_zone(root, "intel-rapl:0:0", "core", 10, MAXR);
    open_rapl(root, 0, NAS_EUNSUPP, &err);
    assert_non_null(strstr(err.msg, "no package-N or psys domain"));
    tu_rmtree(root);

    /* No powercap at all (this VM). */
    open_rapl("/nonexistent/powercap", 0, NAS_EUNSUPP, &err);
    assert_non_null(strstr(err.msg, "/nonexistent/powercap not found"));
}

static void rapl_unreadable_counters_are_explained(void **state)
{
    (void)state;
    char root[64], p[600];
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_zone(root, "intel-rapl:0", "package-0", 10, MAXR);
    nas_err err = {0};

    /* A counter that stops being readable mid-run (here: it becomes a folder). */
    ev_meter *m = open_rapl(root, 0, NAS_OK, &err);
    zpath(p, sizeof p, root, "intel-rapl:0", "energy_uj");
    assert_int_equal(unlink(p), 0);
    assert_int_equal(mkdir(p, 0755), 0);
    double j;
    assert_int_equal(ev_meter_read(m, &j, &err), NAS_EIO);
    assert_non_null(strstr(err.msg, p));
    ev_meter_close(m);
    assert_int_equal(rmdir(p), 0);
    write_text(p, "garbage\n");
    open_rapl(root, 0, NAS_EIO, &err);
    assert_non_null(strstr(err.msg, "not a number"));

    /* Denied, as Linux >= 5.10 denies non-root readers. chmod 000 denies
     * nobody to root, so as root the check runs in a child that drops to
     * the user `nobody` (uid 65534) first. */
    set_energy(root, "intel-rapl:0", 10);
    assert_int_equal(chmod(root, 0755), 0);
    assert_int_equal(chmod(p, 0000), 0);
    int as_root = geteuid() == 0;
    if (as_root)
        fprintf(stderr, "  (root: the denied-counter check runs in a child as uid 65534)\n");
    pid_t pid = as_root ? fork() : 0;
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = 0;
        if (as_root && (setgid(65534) != 0 || setuid(65534) != 0))
            code = 10;
        ev_meter_opts o;
        ev_meter_opts_default(&o);
        o.kind = "rapl";
        o.sysfs_root = root;
        o.poll_seconds = -1;
        o.live_seconds = -1;
        ev_meter *dm = NULL;
        nas_err derr = {0};
        nas_status st = code ? NAS_OK : ev_meter_open(&o, &dm, &derr);
        if (getenv("NAS_TEST_VERBOSE"))
            fprintf(stderr, "  %s\n", derr.msg);
        if (!code && st != NAS_EDENIED)
            code = 11;
        if (!code && (!strstr(derr.msg, p) || !strstr(derr.msg, "run as root") || !strstr(derr.msg, "chmod") ||
                      !strstr(derr.msg, "udev")))
            code = 12;
        if (as_root) {
            if (code)
                fprintf(stderr, "child: code %d, status %s: %s\n", code, nas_status_name(st), derr.msg);
            _exit(code);
        }
        assert_int_equal(code, 0);
    } else {
        int wst;
        assert_int_equal(waitpid(pid, &wst, 0), pid);
        assert_true(WIFEXITED(wst));
        assert_int_equal(WEXITSTATUS(wst), 0);
    }
    chmod(p, 0644);
    tu_rmtree(root);
}

/* ---- perf ------------------------------------------------------------------ */

static void perf_absent_or_refused_is_clean(void **state)
{
    (void)state;
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    o.kind = "perf";
    o.perf_root = "/nonexistent/power";
    ev_meter *m = NULL;
    nas_err err = {0};
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "no 'power' PMU"));
    assert_null(m);

    /* A PMU described in sysfs but unknown to the kernel: the description is
     * parsed, then perf_event_open refuses it, and the meter says which. */
    char root[64], p[600];
    assert_non_null(tu_tmpdir(root, sizeof root));
    snprintf(p, sizeof p, "%s/events", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/type", root);
    write_text(p, "4242\n");
    snprintf(p, sizeof p, "%s/cpumask", root);
    write_text(p, "0\n");
    snprintf(p, sizeof p, "%s/events/energy-pkg.scale", root);
    write_text(p, "2.3283064365386962890625e-10\n");
    snprintf(p, sizeof p, "%s/events/energy-pkg.unit", root);
    write_text(p, "Joules\n");
    snprintf(p, sizeof p, "%s/events/energy-pkg", root);
    write_text(p, "event=0x02\n");
    o.perf_root = root;
    nas_status st = ev_meter_open(&o, &m, &err);
    assert_true(st == NAS_EUNSUPP || st == NAS_EDENIED);
    assert_non_null(strstr(err.msg, "CPU 0"));
    if (st == NAS_EUNSUPP)
        assert_non_null(strstr(err.msg, "type 4242, config 0x2"));

    /* Only energy-psys (as on a cloud VM seen): taken instead of energy-pkg. */
    char psys[600];
    snprintf(psys, sizeof psys, "%s/events/energy-psys", root);
    assert_int_equal(rename(p, psys), 0);
    snprintf(psys, sizeof psys, "%s/events/energy-psys.scale", root);
    write_text(psys, "2.3283064365386962890625e-10\n");
    st = ev_meter_open(&o, &m, &err);
    assert_true(st == NAS_EUNSUPP || st == NAS_EDENIED);
    assert_non_null(strstr(err.msg, "power/energy-psys"));
    write_text(p, "umask=0x1\n");
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "is not 'event=0xNN'"));
    write_text(p, "event=0x02\n");
    snprintf(p, sizeof p, "%s/events/energy-pkg.scale", root);
    write_text(p, "lots\n");
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "energy-pkg.scale: 'lots' is not a scale"));
    write_text(p, "2.3283064365386962890625e-10\n");
    snprintf(p, sizeof p, "%s/cpumask", root);
    write_text(p, "0-\n");
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "is not a CPU list"));
    tu_rmtree(root);
}

/* ---- nvml through the stand-in library -------------------------------------- */

typedef void (*script_fn)(int, unsigned, const int *, const int *);
typedef void (*set_fn)(unsigned, unsigned long long, unsigned);
typedef int (*count_fn)(void);

static char fake_path[4200];
static void *fake;
static script_fn fake_script;
static set_fn fake_set;
static count_fn fake_inits, fake_shutdowns;

/* The stand-in sits beside this test binary (see the Makefile). */
static int load_fake(void **state)
{
    (void)state;
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(k > 0);
    exe[k] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(fake_path, sizeof fake_path, "%s/libfake-nvml.so", exe);
    fake = dlopen(fake_path, RTLD_NOW | RTLD_LOCAL);
    if (!fake) {
        fprintf(stderr, "cannot load %s: %s (make builds it)\n", fake_path, dlerror());
        return -1;
    }
    fake_script = (script_fn)dlsym(fake, "fake_nvml_script");
    fake_set = (set_fn)dlsym(fake, "fake_nvml_set");
    fake_inits = (count_fn)dlsym(fake, "fake_nvml_inits");
    fake_shutdowns = (count_fn)dlsym(fake, "fake_nvml_shutdowns");
    return fake_script && fake_set && fake_inits && fake_shutdowns ? 0 : -1;
}

static int unload_fake(void **state)
{
    (void)state;
    if (fake)
        dlclose(fake);
    return 0;
}

static nas_status open_nvml(double poll, ev_meter **m, nas_err *err)
{
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    o.kind = "nvml";
    o.nvml_lib = fake_path;
    o.poll_seconds = poll;
    return ev_meter_open(&o, m, err);
}

static void nvml_energy_counters_are_measured(void **state)
{
    (void)state;
    fake_script(0, 2, NULL, NULL);
    fake_set(0, 5000000, 0);
    fake_set(1, 7000000, 0);
    ev_meter *m = NULL;
    nas_err err = {0};
    assert_int_equal(open_nvml(0, &m, &err), NAS_OK);
    assert_string_equal(ev_meter_source(m), "nvml:energy");
    assert_int_equal(ev_meter_quality(m), EV_MEASURED);
    assert_float_equal(ev_meter_uncertainty(m), 0.05, 1e-12);
    ev_meter_info info;
    ev_meter_get_info(m, &info);
    assert_float_equal(info.poll_seconds, 0, 0);   /* a counter needs no thread */
    fake_set(0, 5000000 + 1500, 0);
    fake_set(1, 7000000 + 2250, 0);
    assert_float_equal(read_ok(m), 3.75, 1e-12);
    /* A counter that goes back (driver reload) drops its interval. */
    fake_set(0, 100, 0);
    fake_set(1, 7000000 + 3250, 0);
    assert_float_equal(read_ok(m), 4.75, 1e-12);
    ev_meter_get_info(m, &info);
    assert_int_equal(info.dropped, 1);
    assert_int_equal(fake_inits(), 1);
    ev_meter_close(m);
    assert_int_equal(fake_shutdowns(), 1);
}

static void nvml_power_is_sampled_and_integrated(void **state)
{
    (void)state;
    static const int no_energy[2] = {3, 3};   /* NVML_ERROR_NOT_SUPPORTED */
    fake_script(0, 2, no_energy, NULL);
    fake_set(0, 0, 50000);   /* 50 W each */
    fake_set(1, 0, 50000);
    ev_meter *m = NULL;
    nas_err err = {0};
    double t0 = nas_now();
    assert_int_equal(open_nvml(0.01, &m, &err), NAS_OK);
    double t1 = nas_now();
    assert_string_equal(ev_meter_source(m), "nvml:power");
    assert_int_equal(ev_meter_quality(m), EV_SAMPLED);
    /* At least 10 samples, however long a loaded machine makes the sampling
     * thread wait for its turns (10 ms apart when idle: 0.1 s); a fixed sleep
     * of 0.3 s saw fewer under load. */
    struct timespec nap = {0, 10 * 1000 * 1000};
    ev_meter_info info;
    double tw = nas_now();
    do {
        nanosleep(&nap, NULL);
        ev_meter_get_info(m, &info);
    } while (info.samples < 11 && nas_now() - tw < 120);
    double t2 = nas_now();
    double j = read_ok(m);
    double t3 = nas_now();
    /* Constant power: exact whatever the sample times, 100 W x the time between. */
    assert_true(j >= 100 * (t2 - t1) - 1e-9);
    assert_true(j <= 100 * (t3 - t0) + 1e-9);
    ev_meter_get_info(m, &info);
    assert_true(info.samples >= 10);
    assert_float_equal(info.poll_seconds, 0.01, 1e-12);
    assert_non_null(strstr(info.note, "GPU 0 has no energy counter: power sampled"));
    ev_meter_close(m);

    /* One GPU with a counter, one without: sampled as a whole. */
    static const int mixed[2] = {0, 3};
    fake_script(0, 2, mixed, NULL);
    assert_int_equal(open_nvml(0.01, &m, &err), NAS_OK);
    assert_string_equal(ev_meter_source(m), "nvml:energy+power");
    assert_int_equal(ev_meter_quality(m), EV_SAMPLED);
    ev_meter_close(m);
}

static void nvml_absent_or_failing_is_skipped(void **state)
{
    (void)state;
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    o.kind = "nvml";
    o.nvml_lib = "/nonexistent/libnvidia-ml.so.1";
    ev_meter *m = NULL;
    nas_err err = {0};
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "cannot load /nonexistent/libnvidia-ml.so.1"));

    fake_script(9, 1, NULL, NULL);   /* NVML_ERROR_DRIVER_NOT_LOADED */
    int shut = fake_shutdowns();
    assert_int_equal(open_nvml(0, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "nvmlInit_v2 failed: Driver Not Loaded"));
    assert_int_equal(fake_shutdowns(), shut);   /* no shutdown without init */

    fake_script(0, 0, NULL, NULL);
    assert_int_equal(open_nvml(0, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "no GPU"));
    assert_int_equal(fake_shutdowns(), 1);       /* inited, so shut down */

    static const int nothing[1] = {3};
    fake_script(0, 1, nothing, nothing);
    assert_int_equal(open_nvml(0, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "none of 1 GPUs"));

    /* A library that is no NVML at all. */
    o.nvml_lib = "libz.so.1";
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EUNSUPP);
    assert_non_null(strstr(err.msg, "lacks the NVML functions"));
}

/* ---- model and auto ---------------------------------------------------------- */

static volatile double sink;

static void burn(double seconds)
{
    double t0 = nas_cpu_seconds();
    while (nas_cpu_seconds() - t0 < seconds)
        for (int i = 0; i < 100000; i++)
            sink += sqrt((double)i);
}

static void model_is_cpu_time_times_stated_power(void **state)
{
    (void)state;
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    assert_float_equal(o.watts_per_core, EV_DEFAULT_WATTS_PER_CORE, 0);
    o.kind = "model";
    o.watts_per_core = 7.5;
    ev_meter *m = NULL;
    nas_err err = {0};
    double c0 = nas_cpu_seconds();
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    double c1 = nas_cpu_seconds();
    assert_string_equal(ev_meter_source(m), "model:cpu-time");
    assert_int_equal(ev_meter_quality(m), EV_ESTIMATED);
    assert_string_equal(ev_quality_name(ev_meter_quality(m)), "estimated");
    assert_true(ev_meter_uncertainty(m) >= 0.3);
    burn(0.15);
    double c2 = nas_cpu_seconds();
    double j = read_ok(m);
    double c3 = nas_cpu_seconds();
    assert_true(j >= 7.5 * (c2 - c1) - 1e-9);
    assert_true(j <= 7.5 * (c3 - c0) + 1e-9);
    assert_true(j >= 7.5 * 0.15 * 0.99);
    ev_meter_close(m);

    o.watts_per_core = -3;
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "watts_per_core -3"));
}

/* The fault facility the CLI's failing-meter test stands on: from the n-th
 * read on, every read fails naming the meter and the spent energy is NAN,
 * never 0 J; NAS_FAULT_METER_READ arms it at open, and a bad value is refused. */
static void injected_read_faults_fail_every_later_read(void **state)
{
    (void)state;
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    o.kind = "model";
    ev_meter *m = NULL;
    nas_err err = {0};
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    double j0 = read_ok(m), j = 0;
    ev_meter_fault_set(m, 2);
    assert_int_equal(ev_meter_read(m, &j, &err), NAS_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ev_meter_read(m, &j, &err), NAS_EIO);
        assert_non_null(strstr(err.msg, "meter model:cpu-time: read"));
    }
    assert_int_equal(ev_meter_spent(m, j0, &j, &err), NAS_EIO);
    assert_true(isnan(j));
    ev_meter_fault_set(m, 0);
    assert_int_equal(ev_meter_read(m, &j, &err), NAS_OK);
    ev_meter_close(m);

    setenv("NAS_FAULT_METER_READ", "1", 1);
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    assert_int_equal(ev_meter_read(m, &j, &err), NAS_EIO);
    assert_non_null(strstr(err.msg, "read 1 failed"));
    ev_meter_close(m);
    setenv("NAS_FAULT_METER_READ", "soon", 1);
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "NAS_FAULT_METER_READ='soon'"));
    unsetenv("NAS_FAULT_METER_READ");
}

static void auto_takes_the_first_meter_that_opens_and_says_why(void **state)
{
    (void)state;
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    o.perf_root = "/nonexistent/power";
    o.sysfs_root = "/nonexistent/powercap";
    ev_meter *m = NULL;
    nas_err err = {0};
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    ev_meter_info info;
    ev_meter_get_info(m, &info);
    assert_string_equal(info.kind, "model");
    assert_string_equal(ev_meter_source(m), "model:cpu-time");
    assert_non_null(strstr(info.note, "perf skipped: perf: no 'power' PMU"));
    assert_non_null(strstr(info.note, "rapl skipped: rapl: /nonexistent/powercap not found"));
    ev_meter_close(m);

    char root[64];
    assert_non_null(tu_tmpdir(root, sizeof root));
    mk_server_tree(root);
    o.sysfs_root = root;
    o.poll_seconds = -1;
    /* A counter that never moves is passed over (as a VM's dead PMU is). */
    o.live_seconds = 0.03;
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    ev_meter_get_info(m, &info);
    assert_string_equal(info.kind, "model");
    assert_non_null(strstr(info.note, "rapl skipped: rapl: rapl:package-0+package-1 did not move in 0.03 s"));
    ev_meter_close(m);
    o.live_seconds = -1;
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    ev_meter_get_info(m, &info);
    assert_string_equal(info.kind, "rapl");
    assert_string_equal(ev_meter_source(m), "rapl:package-0+package-1");
    assert_non_null(strstr(info.note, "perf skipped"));
    assert_non_null(strstr(info.note, "counted once"));
    ev_meter_close(m);
    tu_rmtree(root);

    /* This machine's defaults open something, and say what. */
    ev_meter_opts_default(&o);
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    ev_meter_get_info(m, &info);
    fprintf(stderr, "  this machine: %s (%s)%s%s\n", ev_meter_source(m), ev_quality_name(ev_meter_quality(m)),
            info.note[0] ? "; " : "", info.note);
    ev_meter_close(m);

    o.kind = "joulemeter";
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "meter 'joulemeter': unknown"));
    o.kind = NULL;   /* NULL fields take the defaults */
    o.sysfs_root = NULL;
    assert_int_equal(ev_meter_open(&o, &m, &err), NAS_OK);
    ev_meter_close(m);
    nas_alloc_fail_at(1);
    assert_int_equal(ev_meter_open(NULL, &m, &err), NAS_ENOMEM);
    nas_alloc_fail_at(0);
    assert_string_equal(ev_quality_name(EV_MEASURED), "measured");
    assert_string_equal(ev_quality_name(EV_SAMPLED), "sampled");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rapl_sums_package_domains_only),
        cmocka_unit_test(rapl_wraps_are_corrected_or_dropped),
        cmocka_unit_test(rapl_sampling_thread_sees_wraps_between_reads),
        cmocka_unit_test(a_failed_read_is_no_free_energy),
        cmocka_unit_test(rapl_counter_must_move_at_open),
        cmocka_unit_test(rapl_other_trees),
        cmocka_unit_test(rapl_unreadable_counters_are_explained),
        cmocka_unit_test(perf_absent_or_refused_is_clean),
        cmocka_unit_test_setup_teardown(nvml_energy_counters_are_measured, load_fake, unload_fake),
        cmocka_unit_test_setup_teardown(nvml_power_is_sampled_and_integrated, load_fake, unload_fake),
        cmocka_unit_test_setup_teardown(nvml_absent_or_failing_is_skipped, load_fake, unload_fake),
        cmocka_unit_test(model_is_cpu_time_times_stated_power),
        cmocka_unit_test(injected_read_faults_fail_every_later_read),
        cmocka_unit_test(auto_takes_the_first_meter_that_opens_and_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
