/* runs.h — a run's life: the run store and reports (job files are app/'s).
 *
 * The run store is one SQLite file (WAL mode). It holds runs (settings, seed,
 * hardware, meter), candidates (genome, spec, status, accuracy, predicted and
 * measured latency and energy, joules spent), raw measurements, predictor
 * models and the search strategy's state. Its promise: a search killed at any
 * moment (kill -9 included) loses no finished evaluation and records none
 * twice, because
 *   - each finished evaluation, its measurements and the strategy state it
 *     produced are written in one BEGIN IMMEDIATE transaction, committed (and
 *     fsynced) the moment the evaluation ends;
 *   - a candidate is a row keyed by (run, seq): finishing updates that row, it
 *     never appends, and re-proposing seq N on resume finds the row again;
 *   - a candidate is marked running (attempts + 1) before it is evaluated, so
 *     after a crash runs_resume() re-queues it, or fails it after two crashes.
 *
 * Every energy figure travels with its source ("rapl:package-0",
 * "model:cpu-time", "xgboost") and quality (measured, sampled, estimated,
 * predicted); the schema refuses a figure without them, so measured and
 * modelled joules are never silently mixed.
 *
 * runs/ depends on base/ only; search/ calls into it. The loop it expects:
 *
 *   open; find or create the run; runs_resume() (re-queues what a crash left);
 *   runs_strategy_get() and runs_cand_list(RUNS_FINISHED_MASK) to restore or
 *   replay the strategy; then for seq = 0, 1, 2, ... in proposal order:
 *     runs_cand_add(seq)        -> existed? a finished row: use its result
 *     runs_cand_start()         -> queued -> running, committed
 *     ... evaluate ...
 *     runs_cand_finish(result, strategy state after seeing it)
 *   A strategy whose state is saved after each result proposes the same
 *   seq N+1 after a resume as it would have without one, so the rows line up
 *   (runs_cand_add refuses a different genome for an existing seq).
 */
#ifndef RUNS_H
#define RUNS_H

#include <stdint.h>
#include <stdio.h>
#include "base/nas.h"

/* ======================= the store ======================================= */

typedef struct runs_db runs_db;   /* opaque: the connection and its prepared statements */

enum {
    RUNS_OPEN_CREATE   = 1,   /* create the file when missing (else: an error naming it) */
    RUNS_OPEN_READONLY = 2,   /* reports and listings: never writes, never migrates */
};

/* Opens (and with RUNS_OPEN_CREATE creates) a run store: WAL mode, busy
 * timeout, foreign keys on, `PRAGMA quick_check`, schema migrated to the
 * current version. A missing or read-only folder, a file that is not a
 * database, a corrupt one, or one from a newer nas each get an error that
 * names the path; none of them crashes. */
NAS_MUST_USE nas_status runs_open(const char *path, int flags, runs_db **out, nas_err *err);
void runs_close(runs_db *db);

/* The schema version this build writes (PRAGMA user_version), and the one a
 * given store has. */
int runs_schema_version(void);
int runs_db_version(const runs_db *db);
/* For migration tests: creates a new store at an older schema version. */
NAS_MUST_USE nas_status runs_create_at_version(const char *path, int version, nas_err *err);
/* Full `PRAGMA integrity_check` plus the store's own invariants (no figure
 * without its quality, no candidate of an unknown run). */
NAS_MUST_USE nas_status runs_check(runs_db *db, nas_err *err);
/* Raw connection, for tests that inspect the schema. */
void *runs_sqlite(runs_db *db);

/* ---- a figure and where it came from ----------------------------------- */

#define RUNS_SRC_MAX 64
typedef struct {
    double value;                 /* NAN: not known */
    char source[RUNS_SRC_MAX];    /* "rapl:package-0", "model:cpu-time", "xgboost", "clock" */
    char quality[16];             /* "measured", "sampled", "estimated", "predicted" */
} runs_fig;

runs_fig runs_fig_none(void);
runs_fig runs_fig_make(double value, const char *source, const char *quality);
int runs_fig_known(const runs_fig *f);
/* Only a hardware counter's figure is "measured"; "sampled" and
 * "estimated" ones are shown as estimates. */
int runs_quality_is_measured(const char *quality);

/* ---- runs ---------------------------------------------------------------- */

/* "x86_64|AMD EPYC 9B14 96-Core Processor|2 cpus": architecture, CPU model,
 * logical CPUs. Stored with runs and predictor models. */
void runs_hw_fingerprint(char *buf, size_t n);

typedef struct {
    const char *name;             /* unique; NULL: "run-<id>" */
    const char *settings_json;    /* everything needed to resume (a JSON object) */
    uint64_t seed;
    const char *hardware;         /* fingerprint of the machine */
    const char *meter;            /* energy meter source */
} runs_new_run;

typedef struct {
    int64_t id;
    char name[64];
    double created;               /* Unix seconds */
    char *settings_json;          /* nas_malloc'd */
    uint64_t seed;
    char hardware[128];
    char meter[RUNS_SRC_MAX];
    char status[16];              /* running, done, stopped, failed */
    int n_cands, n_done, n_failed, n_queued, n_running;
    double best_accuracy;         /* NAN: none yet */
    double best_reward;
} runs_run;

NAS_MUST_USE nas_status runs_run_create(runs_db *db, const runs_new_run *r, int64_t *id, nas_err *err);
NAS_MUST_USE nas_status runs_run_get(runs_db *db, int64_t id, runs_run *out, nas_err *err);
/* "12" (an id) or a run's name. */
NAS_MUST_USE nas_status runs_run_find(runs_db *db, const char *name_or_id, int64_t *id, nas_err *err);
NAS_MUST_USE nas_status runs_run_list(runs_db *db, runs_run **out, int *n, nas_err *err);
NAS_MUST_USE nas_status runs_run_set_status(runs_db *db, int64_t id, const char *status, nas_err *err);
void runs_run_free(runs_run *r);
void runs_runs_free(runs_run *r, int n);

/* ---- what a run's saved settings say (runs/settings.c) -------------------- */

/* A search run's setting, by its flag name without dashes ("target-mj",
 * "strategy"), from the settings JSON it saved: NAN / 0 when absent. */
double runs_settings_number(const char *settings_json, const char *key);
int runs_settings_string(const char *settings_json, const char *key, char *buf, size_t n);

/* The input normalisation a run's networks were trained with, kept in its
 * settings: x = (pixel/255 - mean) / std per channel, the training split's
 * statistics. Exports write it into the model's metadata and card. */
#define RUNS_NORM_MAX 4
typedef struct {
    int channels;                 /* 0: not recorded */
    double mean[RUNS_NORM_MAX], std[RUNS_NORM_MAX];
} runs_norm;
/* settings_json (an object) with the normalisation added, nas_malloc'd; NULL
 * when it is not an object or memory ran out. */
char *runs_settings_with_norm(const char *settings_json, const runs_norm *norm);
/* 1 and *norm filled when the settings record one, else 0 (channels 0). */
int runs_settings_norm(const char *settings_json, runs_norm *norm);

/* The search's own energy, one line per (source, quality): never summed across. */
typedef struct {
    char source[RUNS_SRC_MAX];
    char quality[16];
    double joules;
    int n;                        /* candidates that contributed */
    int interrupted;              /* attempts cut short by a crash, included (what they had spent) */
    double calibration_j;         /* of joules: calibrating the search's predictor */
} runs_energy_line;
/* Joules a run spent outside its candidates (what: "calibration"), counted
 * with them in runs_run_energy. */
NAS_MUST_USE nas_status runs_run_add_overhead(runs_db *db, int64_t run, const char *what, const runs_fig *joules,
                                              nas_err *err);
NAS_MUST_USE nas_status runs_run_energy(runs_db *db, int64_t run, runs_energy_line *out, int max, int *n,
                           nas_err *err);

/* ---- candidates ---------------------------------------------------------- */

typedef enum {
    RUNS_QUEUED, RUNS_RUNNING, RUNS_DONE, RUNS_FAILED, RUNS_DIVERGED, RUNS_SCREENED,
    RUNS_NSTATUS
} runs_status;
#define RUNS_MASK(s) (1u << (s))
#define RUNS_FINISHED_MASK (RUNS_MASK(RUNS_DONE) | RUNS_MASK(RUNS_FAILED) | \
                            RUNS_MASK(RUNS_DIVERGED) | RUNS_MASK(RUNS_SCREENED))
const char *runs_status_name(runs_status s);
int runs_status_from_name(const char *s);   /* -1 when unknown */

/* A crashed evaluation is retried until it has been started this many times. */
#define RUNS_MAX_ATTEMPTS 2

typedef struct {
    int64_t id, run;
    int seq;                      /* proposal order within the run */
    char genome[320];             /* space_genome_to_string form */
    char *spec_json;              /* nas_malloc'd, may be NULL */
    runs_status status;
    int attempts;
    double accuracy;              /* NAN: not known */
    runs_fig pred_latency_ms, pred_energy_mj;   /* per inference, from the predictor */
    runs_fig latency_ms, energy_mj;             /* per inference, benchmarked */
    runs_fig joules;                            /* spent evaluating it (training + measuring) */
    double params, macs, wall_s, reward;        /* NAN: not known */
    double finished;              /* Unix seconds; 0 while not finished */
    char error[256];
    int rung;                     /* multi-fidelity: 0 its first training, k promoted k times */
    int parent;                   /* rung > 0: the seq it trained on from; -1 otherwise */
} runs_cand;

typedef struct {
    int seq;                      /* -1: the next after the run's last */
    const char *genome;
    const char *spec_json;        /* may be NULL */
    runs_fig pred_latency_ms, pred_energy_mj;
    double params, macs;          /* NAN: not known */
    int rung, parent;             /* multi-fidelity (rung 0, parent ignored: a first training) */
} runs_new_cand;

/* Adds a queued candidate. When (run, seq) exists already with the same
 * genome, returns its id and sets *existed (resume replays proposals); with a
 * different genome it is an error: the replay diverged from the record. */
NAS_MUST_USE nas_status runs_cand_add(runs_db *db, int64_t run, const runs_new_cand *c, int64_t *id, int *seq,
                         int *existed, nas_err *err);
/* queued -> running, attempts + 1, committed before evaluation starts. */
NAS_MUST_USE nas_status runs_cand_start(runs_db *db, int64_t id, int *attempts, nas_err *err);
/* A running candidate's heartbeat: the joules its attempt has spent so far
 * with its source and quality, committed. If the process dies, runs_resume
 * records the last figure as a lost attempt of the run. */
NAS_MUST_USE nas_status runs_cand_progress(runs_db *db, int64_t id, const runs_fig *joules, nas_err *err);
/* Joules of attempts that crashes cut short, summed over the run's resumes
 * (every source and quality: for the budget, not for reporting, where
 * runs_run_energy keeps them apart): a resumed search charges them to its
 * budget (search_loop_charge_lost). */
NAS_MUST_USE nas_status runs_lost_joules(runs_db *db, int64_t run, double *joules, nas_err *err);
/* A running candidate stopped on purpose (SIGINT, SIGTERM) before it
 * finished: the joules its attempt spent (a figure, or none) become a lost
 * attempt of the run, as after a crash, and the row is queued again at once,
 * so that the next resume retries it. Not a crash: RUNS_MAX_ATTEMPTS counts
 * only attempts left running. One transaction. */
NAS_MUST_USE nas_status runs_cand_stopped(runs_db *db, int64_t id, const runs_fig *joules, nas_err *err);

/* ---- a test facility: faults injected into the store's writes (fault.c) ----
 * Armed, the nth_write-th write to a store's files from now on (database and
 * WAL of every store opened while armed) and every later one fail as on a
 * full (ENOSPC) or failing (EIO) disk. 0 disarms it (stores opened after that
 * write normally). `nas` arms it from NAS_FAULT_WRITE=N:ENOSPC or N:EIO. */
NAS_MUST_USE nas_status runs_fault_set(long nth_write, int errno_value, nas_err *err);
long runs_fault_writes(void);                          /* writes seen since armed */
/* The VFS name runs_open passes to SQLite: NULL (the system's) unless armed. */
NAS_MUST_USE nas_status runs_fault_vfs(const char **vfs, nas_err *err);

typedef struct {
    const char *kind;             /* "latency_ms", "energy_mj", "train_joules", ... */
    int rep;
    double value;
    const char *source, *quality;
} runs_measurement;

typedef struct {
    runs_status status;           /* DONE, FAILED, DIVERGED or SCREENED */
    double accuracy;
    runs_fig latency_ms, energy_mj, joules;
    runs_fig pred_latency_ms, pred_energy_mj;   /* unknown: keep what add() stored */
    double params, macs, wall_s, reward;        /* NAN: not known (params/macs: keep) */
    const char *error;            /* why it failed; may be NULL */
    const runs_measurement *meas;
    int n_meas;
} runs_result;

/* Fills r with "nothing known" (NAN, empty figures, status DONE). */
void runs_result_init(runs_result *r);

/* Records a finished evaluation in one transaction: the candidate's row (it
 * must be queued or running: a finished one is never overwritten), its raw
 * measurements, and, when strategy_state is not NULL, the run's strategy
 * state. Committed before it returns. */
NAS_MUST_USE nas_status runs_cand_finish(runs_db *db, int64_t id, const runs_result *res,
                            const char *strategy_state, nas_err *err);

/* A finished (done) candidate measured again after its result: the search
 * benchmarks its best once they are trained. Its latency and energy per
 * inference become these figures (either may be unknown: left as it was); the
 * figures it had first and the new ones are both kept in the measurements
 * table (kinds "latency_ms", "energy_mj"; the first at rep 0). joules, what
 * measuring cost, is kept as "measure_joules" and added to the candidate's
 * joules when of the same source and quality (never summed across them).
 * With strategy_state, the run's state too. One transaction; any other
 * status is an error and changes nothing. */
NAS_MUST_USE nas_status runs_cand_add_measurement(runs_db *db, int64_t id, const runs_fig *latency_ms,
                                     const runs_fig *energy_mj, const runs_fig *joules,
                                     const char *strategy_state, nas_err *err);

/* After a crash: candidates left running are queued again, or marked failed
 * once they have been started RUNS_MAX_ATTEMPTS times. One transaction. */
NAS_MUST_USE nas_status runs_resume(runs_db *db, int64_t run, int *requeued, int *failed, nas_err *err);

NAS_MUST_USE nas_status runs_cand_get(runs_db *db, int64_t id, runs_cand *out, nas_err *err);
/* The run's candidates whose status is in mask, in seq order (to replay a
 * strategy, pass RUNS_FINISHED_MASK). Free with runs_cands_free. */
NAS_MUST_USE nas_status runs_cand_list(runs_db *db, int64_t run, unsigned mask, runs_cand **out, int *n,
                          nas_err *err);
/* The queued candidate with the lowest seq; *found = 0 when none. */
NAS_MUST_USE nas_status runs_cand_next_queued(runs_db *db, int64_t run, runs_cand *out, int *found, nas_err *err);
NAS_MUST_USE nas_status runs_cand_counts(runs_db *db, int64_t run, int counts[RUNS_NSTATUS], nas_err *err);
NAS_MUST_USE nas_status runs_measurements(runs_db *db, int64_t cand, const char *kind, double *values, int max,
                             int *n, nas_err *err);
void runs_cand_free(runs_cand *c);
void runs_cands_free(runs_cand *c, int n);

/* ---- strategy state ------------------------------------------------------ */

/* The last state saved for a run (by runs_cand_finish or put), with the seq
 * of the candidate whose result produced it; *state = NULL, *seq = -1 when
 * none. */
NAS_MUST_USE nas_status runs_strategy_get(runs_db *db, int64_t run, char **state, int *seq, nas_err *err);
NAS_MUST_USE nas_status runs_strategy_put(runs_db *db, int64_t run, int seq, const char *state, nas_err *err);

/* ---- predictor models ---------------------------------------------------- */

NAS_MUST_USE nas_status runs_model_put(runs_db *db, const char *name, const char *fingerprint,
                          const char *meta_json, const void *blob, size_t len, int64_t *id,
                          nas_err *err);
/* The newest model of that name (and fingerprint, when not NULL). *found = 0
 * when none; blob and meta are nas_malloc'd. */
NAS_MUST_USE nas_status runs_model_get(runs_db *db, const char *name, const char *fingerprint, void **blob,
                          size_t *len, char **meta_json, char fingerprint_out[128], int *found,
                          nas_err *err);

/* ---- trained weights of a candidate (runs/weights.c) ---------------------- */

/* The evaluator's weights blob (ev_net_weights_pack) of a finished candidate;
 * storing again replaces it. get: *found = 0 when none was stored; the blob is
 * nas_malloc'd. */
NAS_MUST_USE nas_status runs_weights_put(runs_db *db, int64_t cand, const void *blob, size_t len, nas_err *err);
NAS_MUST_USE nas_status runs_weights_get(runs_db *db, int64_t cand, void **blob, size_t *len, int *found,
                            nas_err *err);

/* ---- final training of a search's best (runs/weights.c) ------------------ */

/* A candidate trained again at full fidelity after the search (app/final.c):
 * its figures and, beside them, its weights. The test split is read only
 * there, so test_acc is the only test figure a run has. */
typedef struct {
    int64_t cand;                 /* the candidate's store id */
    int epochs, train_images, test_images;
    double val_acc, test_acc;     /* NAN: not known */
    runs_fig joules;              /* the final training's energy, with its meter and quality */
    double seconds;
    int chosen;                   /* the run's exported model (read only; set by runs_final_choose) */
} runs_final;

/* Stores (or replaces) a final row with its weights blob (a NASW blob), not
 * chosen, in one transaction. */
NAS_MUST_USE nas_status runs_final_put(runs_db *db, const runs_final *f, const void *blob, size_t len,
                                       nas_err *err);
/* Marks cand the run's chosen final model and every other final of the run not chosen. */
NAS_MUST_USE nas_status runs_final_choose(runs_db *db, int64_t run, int64_t cand, nas_err *err);
/* A candidate's final row; blob (may be NULL: figures only) is nas_malloc'd.
 * *found = 0 when the candidate was not finally trained. */
NAS_MUST_USE nas_status runs_final_get(runs_db *db, int64_t cand, runs_final *f, void **blob, size_t *len,
                                       int *found, nas_err *err);
/* The store id of the run's chosen final model; *found = 0 when none. */
NAS_MUST_USE nas_status runs_final_chosen(runs_db *db, int64_t run, int64_t *cand, int *found, nas_err *err);

/* ======================= reports ========================================= */

typedef struct {
    runs_run run;
    runs_cand *cands;             /* every candidate, leaderboard order (best reward first) */
    int n;
    int *rank;                    /* rank[i]: 1-based leaderboard place, 0 if not ranked */
    int *front;                   /* front[i]: on the Pareto front (accuracy vs energy) */
    int chosen;                   /* index into cands of the chosen model (the final training's
                                     choice when the run has one, else the best reward); -1: none */
    runs_energy_line energy[8];   /* the search's own energy */
    int n_energy;
    runs_final *finals;           /* the finally trained candidates, leaderboard order */
    int *final_of;                /* final_of[i]: index into finals of cands[i], -1 if none */
    int n_finals;
} runs_report;

/* The energy per inference a candidate is plotted at: benchmarked when known,
 * else predicted; *source and *quality say which. NAN when neither. */
double runs_cand_energy(const runs_cand *c, const char **source, const char **quality);

NAS_MUST_USE nas_status runs_report_build(runs_db *db, int64_t run, runs_report *rep, nas_err *err);
void runs_report_free(runs_report *rep);

typedef struct {
    double grid_gco2_kwh;         /* NAN: no CO2e line */
    int top;                      /* leaderboard rows printed (default 20); 0: all */
    int color;                    /* ANSI colour on the terminal */
} runs_report_opts;

void runs_report_opts_default(runs_report_opts *o);
void runs_report_print(const runs_report *rep, const runs_report_opts *o, FILE *f);
/* One JSON object: run, leaderboard, front, chosen, energy (and CO2e). */
char *runs_report_json(const runs_report *rep, const runs_report_opts *o);
NAS_MUST_USE nas_status runs_report_write_csv(const runs_report *rep, const char *path, nas_err *err);
/* The Pareto plot: accuracy against energy per inference, front highlighted,
 * chosen model marked, measured and estimated points told apart. */
NAS_MUST_USE nas_status runs_report_write_svg(const runs_report *rep, const char *path, nas_err *err);
/* Grams of CO2e for joules at a grid intensity in gCO2e/kWh. */
double runs_co2e_grams(double joules, double grid_gco2_kwh);

#endif
