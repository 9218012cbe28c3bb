/* store.c — the run store: one SQLite file per set of runs.
 *
 * Why SQLite and how it keeps its promise (see runs.h): WAL mode so that
 * `nas report` can read while a search writes; synchronous=FULL so that a
 * commit is on disk when it returns (an evaluation costs seconds, an fsync
 * milliseconds); every write that belongs together in one BEGIN IMMEDIATE
 * transaction, so a kill -9 leaves either all of it or none of it. Values
 * only ever reach SQL through bound parameters of cached prepared statements.
 *
 * The schema is a list of migration steps; PRAGMA user_version counts the
 * steps applied. A store from an older nas is brought up to date on open
 * (never when opened read-only), one transaction per step.
 */
#include "runs/runs.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- schema -------------------------------------------------------------- */

#define FIG_CHECK(col, qualities) \
    "CHECK (" col " IS NULL OR (" col "_src IS NOT NULL AND " col "_q IN " qualities "))"
#define MEASURED_Q "('measured','sampled','estimated')"
#define PREDICTED_Q "('predicted')"

/* Step k takes the store from user_version k-1 to k. Never edit a step that
 * has shipped; add one. */
static const char *const migrations[] = {
    /* 1: runs, candidates, measurements, models */
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created REAL NOT NULL,"
    "  settings TEXT NOT NULL CHECK (json_valid(settings)),"
    "  seed INTEGER NOT NULL,"
    "  hardware TEXT NOT NULL,"
    "  meter TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'running'"
    "    CHECK (status IN ('running','done','stopped','failed')));"
    "CREATE TABLE candidates ("
    "  id INTEGER PRIMARY KEY,"
    "  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL CHECK (seq >= 0),"
    "  genome TEXT NOT NULL,"
    "  spec TEXT CHECK (spec IS NULL OR json_valid(spec)),"
    "  status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN"
    "    ('queued','running','done','failed','diverged','screened')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  accuracy REAL,"
    "  pred_latency_ms REAL, pred_latency_ms_src TEXT, pred_latency_ms_q TEXT,"
    "  pred_energy_mj REAL, pred_energy_mj_src TEXT, pred_energy_mj_q TEXT,"
    "  latency_ms REAL, latency_ms_src TEXT, latency_ms_q TEXT,"
    "  energy_mj REAL, energy_mj_src TEXT, energy_mj_q TEXT,"
    "  joules REAL, joules_src TEXT, joules_q TEXT,"
    "  params REAL, macs REAL, wall_s REAL, reward REAL,"
    "  finished REAL NOT NULL DEFAULT 0,"
    "  UNIQUE (run, seq),"
    "  " FIG_CHECK("pred_latency_ms", PREDICTED_Q) ","
    "  " FIG_CHECK("pred_energy_mj", PREDICTED_Q) ","
    "  " FIG_CHECK("latency_ms", MEASURED_Q) ","
    "  " FIG_CHECK("energy_mj", MEASURED_Q) ","
    "  " FIG_CHECK("joules", MEASURED_Q) ");"
    "CREATE TABLE measurements ("
    "  id INTEGER PRIMARY KEY,"
    "  candidate INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL,"
    "  rep INTEGER NOT NULL,"
    "  value REAL NOT NULL,"
    "  source TEXT NOT NULL,"
    "  quality TEXT NOT NULL CHECK (quality IN ('measured','sampled','estimated')),"
    "  UNIQUE (candidate, kind, rep));"
    "CREATE TABLE models ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  fingerprint TEXT NOT NULL,"
    "  created REAL NOT NULL,"
    "  meta TEXT CHECK (meta IS NULL OR json_valid(meta)),"
    "  blob BLOB NOT NULL);"
    "PRAGMA user_version = 1;",

    /* 2: strategy state per run; why a candidate failed; a status index for
     * the queue and the resume sweep. */
    "CREATE TABLE strategy ("
    "  run INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  updated REAL NOT NULL);"
    "ALTER TABLE candidates ADD COLUMN error TEXT;"
    "CREATE INDEX candidates_by_status ON candidates(run, status, seq);"
    "PRAGMA user_version = 2;",

    /* 3: joules spent by an attempt so far (a heartbeat while it runs), and
     * the attempts a crash cut short with what they had spent, so that a
     * resumed search still counts them against its budget and reports them. */
    "ALTER TABLE candidates ADD COLUMN partial_j REAL;"
    "ALTER TABLE candidates ADD COLUMN partial_j_src TEXT;"
    "ALTER TABLE candidates ADD COLUMN partial_j_q TEXT;"
    "CREATE TABLE lost ("
    "  candidate INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,"
    "  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  attempt INTEGER NOT NULL,"
    "  joules REAL NOT NULL CHECK (joules >= 0),"
    "  src TEXT NOT NULL CHECK (src <> ''),"
    "  q TEXT NOT NULL CHECK (q IN ('measured', 'sampled', 'estimated')),"
    "  PRIMARY KEY (candidate, attempt));"
    "PRAGMA user_version = 3;",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])

int runs_schema_version(void)
{
    return N_MIGRATIONS;
}

/* ---- prepared statements ------------------------------------------------- */

#define CAND_COLS                                                                              \
    "id, run, seq, genome, spec, status, attempts, accuracy,"                                  \
    " pred_latency_ms, pred_latency_ms_src, pred_latency_ms_q,"                                \
    " pred_energy_mj, pred_energy_mj_src, pred_energy_mj_q,"                                   \
    " latency_ms, latency_ms_src, latency_ms_q, energy_mj, energy_mj_src, energy_mj_q,"        \
    " joules, joules_src, joules_q, params, macs, wall_s, reward, finished, error"

#define RUN_COLS                                                                               \
    "r.id, r.name, r.created, r.settings, r.seed, r.hardware, r.meter, r.status,"              \
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id),"                                 \
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id AND c.status = 'done'),"           \
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id AND c.status IN ('failed','diverged')),"\
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id AND c.status = 'queued'),"         \
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id AND c.status = 'running'),"        \
    " (SELECT max(accuracy) FROM candidates c WHERE c.run = r.id AND c.status = 'done'),"      \
    " (SELECT max(reward) FROM candidates c WHERE c.run = r.id AND c.status = 'done')"

typedef enum {
    S_RUN_INSERT, S_RUN_NAME, S_RUN_GET, S_RUN_BY_NAME, S_RUN_LIST, S_RUN_STATUS, S_RUN_ENERGY,
    S_CAND_INSERT, S_CAND_BY_SEQ, S_CAND_NEXT_SEQ, S_CAND_START, S_CAND_STATE, S_CAND_FINISH,
    S_CAND_GET, S_CAND_LIST, S_CAND_NEXT_QUEUED, S_CAND_COUNTS, S_RESUME_FAIL, S_RESUME_REQUEUE, S_RESUME_LOST, S_CAND_PARTIAL, S_RUN_LOST,
    S_STOP_LOST, S_STOP_REQUEUE,
    S_MEAS_DELETE, S_MEAS_INSERT, S_MEAS_GET, S_STRAT_PUT, S_STRAT_GET, S_MODEL_PUT,
    S_MODEL_GET, S_MODEL_GET_FP, S_COUNT
} stmt_id;

static const char *const stmt_sql[S_COUNT] = {
    [S_RUN_INSERT] = "INSERT INTO runs (name, created, settings, seed, hardware, meter)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_RUN_NAME] = "UPDATE runs SET name = 'run-' || id WHERE id = ?1",
    [S_RUN_GET] = "SELECT " RUN_COLS " FROM runs r WHERE r.id = ?1",
    [S_RUN_BY_NAME] = "SELECT id FROM runs WHERE name = ?1",
    [S_RUN_LIST] = "SELECT " RUN_COLS " FROM runs r ORDER BY r.id",
    [S_RUN_STATUS] = "UPDATE runs SET status = ?2 WHERE id = ?1",
    [S_RUN_ENERGY] = "SELECT src, q, sum(j), sum(1 - lost), sum(lost) FROM ("
                     "  SELECT joules_src AS src, joules_q AS q, joules AS j, 0 AS lost FROM candidates"
                     "  WHERE run = ?1 AND joules IS NOT NULL"
                     "  UNION ALL SELECT src, q, joules, 1 FROM lost WHERE run = ?1)"
                     " GROUP BY src, q ORDER BY q, src",
    [S_CAND_INSERT] = "INSERT INTO candidates (run, seq, genome, spec,"
                      " pred_latency_ms, pred_latency_ms_src, pred_latency_ms_q,"
                      " pred_energy_mj, pred_energy_mj_src, pred_energy_mj_q, params, macs)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [S_CAND_BY_SEQ] = "SELECT id, genome FROM candidates WHERE run = ?1 AND seq = ?2",
    [S_CAND_NEXT_SEQ] = "SELECT coalesce(max(seq) + 1, 0) FROM candidates WHERE run = ?1",
    [S_CAND_START] = "UPDATE candidates SET status = 'running', attempts = attempts + 1"
                     " WHERE id = ?1 AND status = 'queued'",
    [S_CAND_STATE] = "SELECT status, attempts, run, seq FROM candidates WHERE id = ?1",
    [S_CAND_FINISH] =
        "UPDATE candidates SET status = ?2, accuracy = ?3,"
        " latency_ms = ?4, latency_ms_src = ?5, latency_ms_q = ?6,"
        " energy_mj = ?7, energy_mj_src = ?8, energy_mj_q = ?9,"
        " joules = ?10, joules_src = ?11, joules_q = ?12,"
        " pred_latency_ms = coalesce(?13, pred_latency_ms),"
        " pred_latency_ms_src = CASE WHEN ?13 IS NULL THEN pred_latency_ms_src ELSE ?14 END,"
        " pred_latency_ms_q = CASE WHEN ?13 IS NULL THEN pred_latency_ms_q ELSE ?15 END,"
        " pred_energy_mj = coalesce(?16, pred_energy_mj),"
        " pred_energy_mj_src = CASE WHEN ?16 IS NULL THEN pred_energy_mj_src ELSE ?17 END,"
        " pred_energy_mj_q = CASE WHEN ?16 IS NULL THEN pred_energy_mj_q ELSE ?18 END,"
        " params = coalesce(?19, params), macs = coalesce(?20, macs),"
        " wall_s = ?21, reward = ?22, finished = ?23, error = ?24"
        " WHERE id = ?1 AND status IN ('queued','running')",
    [S_CAND_GET] = "SELECT " CAND_COLS " FROM candidates WHERE id = ?1",
    [S_CAND_LIST] = "SELECT " CAND_COLS " FROM candidates WHERE run = ?1 ORDER BY seq",
    [S_CAND_NEXT_QUEUED] = "SELECT " CAND_COLS " FROM candidates"
                           " WHERE run = ?1 AND status = 'queued' ORDER BY seq LIMIT 1",
    [S_CAND_COUNTS] = "SELECT status, count(*) FROM candidates WHERE run = ?1 GROUP BY status",
    [S_RESUME_FAIL] = "UPDATE candidates SET status = 'failed', finished = ?3, partial_j = NULL,"
                      " error = 'its evaluation was interrupted ' || attempts || ' times'"
                      " WHERE run = ?1 AND status = 'running' AND attempts >= ?2",
    [S_RESUME_REQUEUE] = "UPDATE candidates SET status = 'queued', partial_j = NULL"
                         " WHERE run = ?1 AND status = 'running'",
    [S_RESUME_LOST] = "INSERT OR IGNORE INTO lost (candidate, run, attempt, joules, src, q)"
                      " SELECT id, run, attempts, partial_j, partial_j_src, partial_j_q FROM candidates"
                      " WHERE run = ?1 AND status = 'running' AND partial_j IS NOT NULL",
    [S_CAND_PARTIAL] = "UPDATE candidates SET partial_j = ?2, partial_j_src = ?3, partial_j_q = ?4"
                       " WHERE id = ?1 AND status = 'running'",
    [S_RUN_LOST] = "SELECT COALESCE(SUM(joules), 0) FROM lost WHERE run = ?1",
    [S_STOP_LOST] = "INSERT OR IGNORE INTO lost (candidate, run, attempt, joules, src, q)"
                    " SELECT id, run, attempts, ?2, ?3, ?4 FROM candidates WHERE id = ?1 AND status = 'running'",
    [S_STOP_REQUEUE] = "UPDATE candidates SET status = 'queued', partial_j = NULL WHERE id = ?1 AND status = 'running'",
    [S_MEAS_DELETE] = "DELETE FROM measurements WHERE candidate = ?1",
    [S_MEAS_INSERT] = "INSERT INTO measurements (candidate, kind, rep, value, source, quality)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_MEAS_GET] = "SELECT value FROM measurements WHERE candidate = ?1 AND kind = ?2 ORDER BY rep",
    [S_STRAT_PUT] = "INSERT INTO strategy (run, seq, state, updated) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT (run) DO UPDATE SET seq = excluded.seq,"
                    " state = excluded.state, updated = excluded.updated",
    [S_STRAT_GET] = "SELECT state, seq FROM strategy WHERE run = ?1",
    [S_MODEL_PUT] = "INSERT INTO models (name, fingerprint, created, meta, blob)"
                    " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_MODEL_GET] = "SELECT blob, meta, fingerprint FROM models WHERE name = ?1"
                    " ORDER BY id DESC LIMIT 1",
    [S_MODEL_GET_FP] = "SELECT blob, meta, fingerprint FROM models WHERE name = ?1"
                       " AND fingerprint = ?2 ORDER BY id DESC LIMIT 1",
};

struct runs_db {
    sqlite3 *db;
    char path[1024];
    int readonly;
    int version;
    sqlite3_stmt *st[S_COUNT];
};

/* ---- errors -------------------------------------------------------------- */

static nas_status db_fail(runs_db *d, nas_err *err, const char *what)
{
    int rc = sqlite3_extended_errcode(d->db);
    int prim = rc & 0xff;
    nas_status code = NAS_EINTERNAL;
    if (prim == SQLITE_NOTADB || prim == SQLITE_CORRUPT)
        return nas_errf(err, NAS_EIO, "%s: the run store is damaged or not a database (%s, while %s)",
                        d->path, sqlite3_errmsg(d->db), what);
    if (prim == SQLITE_FULL || prim == SQLITE_IOERR)   /* the transaction is undone; the ones before stay */
        return nas_errf(err, NAS_EIO, "%s: %s: %s (%s; everything committed before is kept: %s, then resume)",
                        d->path, what, sqlite3_errmsg(d->db), prim == SQLITE_FULL ? "the disk is full" : "a write failed",
                        prim == SQLITE_FULL ? "free some space" : "check the disk");
    if (prim == SQLITE_READONLY || prim == SQLITE_CANTOPEN || prim == SQLITE_PERM)
        code = NAS_EIO;
    else if (prim == SQLITE_CONSTRAINT)
        code = NAS_EINVAL;
    else if (prim == SQLITE_NOMEM)
        code = NAS_ENOMEM;
    return nas_errf(err, code, "%s: %s: %s", d->path, what, sqlite3_errmsg(d->db));
}

/* The status a failed stmt() left in err (it always fills it when given one). */
static nas_status err_code(const nas_err *err)
{
    return err && err->code ? err->code : NAS_EINTERNAL;
}

static sqlite3_stmt *stmt(runs_db *d, stmt_id id, nas_err *err)
{
    if (!d->st[id]) {
        if (sqlite3_prepare_v3(d->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &d->st[id],
                               NULL) != SQLITE_OK) {
            db_fail(d, err, "preparing a statement");
            return NULL;
        }
    } else {
        sqlite3_reset(d->st[id]);
        sqlite3_clear_bindings(d->st[id]);
    }
    return d->st[id];
}

/* Runs a statement that returns no rows. */
static nas_status step_done(runs_db *d, sqlite3_stmt *s, nas_err *err, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(d, err, what);
    return NAS_OK;
}

static nas_status exec(runs_db *d, const char *sql, nas_err *err, const char *what)
{
    if (sqlite3_exec(d->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(d, err, what);
    return NAS_OK;
}

static nas_status tx_begin(runs_db *d, nas_err *err)
{
    if (d->readonly)
        return nas_errf(err, NAS_EINVAL, "%s: opened read-only", d->path);
    return exec(d, "BEGIN IMMEDIATE", err, "starting a transaction");
}

static nas_status tx_commit(runs_db *d, nas_err *err)
{
    return exec(d, "COMMIT", err, "committing");
}

static void tx_rollback(runs_db *d)
{
    if (!sqlite3_get_autocommit(d->db))
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
}

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- open ---------------------------------------------------------------- */

static void dir_of(const char *path, char *dir, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, n, ".");
    else if (slash == path)
        snprintf(dir, n, "/");
    else
        snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

static nas_status pragma_int(runs_db *d, const char *sql, int *out, nas_err *err);

/* Each step in a write transaction that first reads the version again: two
 * processes opening a new store at once (a search and its reporter, say) must
 * not both run a step, or the second fails on what the first created. */
static nas_status migrate(runs_db *d, int from, nas_err *err)
{
    for (int v = from; v < N_MIGRATIONS; v++) {
        nas_status st = tx_begin(d, err);
        if (st)
            return st;
        if ((st = pragma_int(d, "PRAGMA user_version", &v, err))) {
            tx_rollback(d);
            return st;
        }
        if (v >= N_MIGRATIONS) {   /* another process finished the job */
            d->version = v;
            return tx_commit(d, err);
        }
        if (sqlite3_exec(d->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "migrating the schema to version %d", v + 1);
            st = db_fail(d, err, what);
            tx_rollback(d);
            return st;
        }
        if ((st = tx_commit(d, err)))
            return st;
        d->version = v + 1;
    }
    return NAS_OK;
}

static nas_status pragma_int(runs_db *d, const char *sql, int *out, nas_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK)
        return db_fail(d, err, "reading the schema");
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        nas_status st = db_fail(d, err, "reading the schema");
        sqlite3_finalize(s);
        return st;
    }
    *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return NAS_OK;
}

/* Runs a check pragma; "ok" or the first problems it names. */
static nas_status run_check(runs_db *d, const char *sql, nas_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK)
        return db_fail(d, err, "checking integrity");
    char found[600] = "";
    size_t used = 0;
    int rc, rows = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (rows++ == 0 && t && !strcmp(t, "ok"))
            break;
        if (t && used < sizeof found - 2)
            used += snprintf(found + used, sizeof found - used, "%s%s", used ? "; " : "", t);
    }
    nas_status st = NAS_OK;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = db_fail(d, err, "checking integrity");
    else if (used)
        st = nas_errf(err, NAS_EIO, "%s: the run store is damaged (%s): %s", d->path, sql, found);
    sqlite3_finalize(s);
    return st;
}

/* The version and the number of schema objects, read in one statement: read
 * apart, a store another process was creating meanwhile looked like version 0
 * with tables, "not a nas run store". */
static nas_status read_header(runs_db *d, int *version, int *n_objects, nas_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT (SELECT user_version FROM pragma_user_version),"
                           " (SELECT count(*) FROM sqlite_schema)", -1, &s, NULL) != SQLITE_OK)
        return db_fail(d, err, "reading the schema");
    if (sqlite3_step(s) != SQLITE_ROW) {
        nas_status st = db_fail(d, err, "reading the schema");
        sqlite3_finalize(s);
        return st;
    }
    *version = sqlite3_column_int(s, 0);
    *n_objects = sqlite3_column_int(s, 1);
    sqlite3_finalize(s);
    return NAS_OK;
}

/* Changing the journal mode takes an exclusive lock without SQLite's busy
 * handler: several processes opening one new store at once got "database is
 * locked" at once. Retried for up to 10 s, as the busy timeout would. */
static nas_status set_wal(runs_db *d, nas_err *err)
{
    for (int tries = 0;; tries++) {
        int rc = sqlite3_exec(d->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            return NAS_OK;
        if (((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) || tries >= 200)
            return db_fail(d, err, "switching to WAL mode");
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
}

nas_status runs_open(const char *path, int flags, runs_db **out, nas_err *err)
{
    *out = NULL;
    int readonly = (flags & RUNS_OPEN_READONLY) != 0;
    int create = (flags & RUNS_OPEN_CREATE) && !readonly;
    if (!path || !*path)
        return nas_errf(err, NAS_EINVAL, "run store: no path given");
    if (strlen(path) >= 1000)
        return nas_errf(err, NAS_EINVAL, "run store: path too long: %.60s...", path);

    /* Say plainly what is wrong with the path before SQLite says "unable to open". */
    char dir[1024];
    dir_of(path, dir, sizeof dir);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return nas_errf(err, NAS_EIO, "%s: cannot open the run store: folder %s %s", path, dir,
                        errno == ENOENT || errno == ENOTDIR ? "does not exist" : strerror(errno));
    int exists = stat(path, &sb) == 0;
    if (!exists && !create)
        return nas_errf(err, NAS_EINVAL, "%s: no run store here (pass --db FILE, or start a run)",
                        path);
    if (exists && S_ISDIR(sb.st_mode))
        return nas_errf(err, NAS_EINVAL, "%s: is a folder, not a run store file", path);
    if (exists && readonly && sb.st_size == 0)
        return nas_errf(err, NAS_EINVAL, "%s: an empty file, not a run store (a search creates one: "
                        "nas search --db %s ...)", path, path);
    if (!readonly && access(dir, W_OK) != 0)
        return nas_errf(err, NAS_EIO,
                        "%s: cannot write the run store: folder %s is not writable (%s)", path,
                        dir, strerror(errno));
    if (!readonly && exists && access(path, W_OK) != 0)
        return nas_errf(err, NAS_EIO, "%s: cannot write the run store: %s", path,
                        strerror(errno));

    runs_db *d = nas_calloc(1, sizeof *d);
    if (!d)
        return nas_errf(err, NAS_ENOMEM, "%s: out of memory", path);
    snprintf(d->path, sizeof d->path, "%s", path);
    d->readonly = readonly;
    int oflags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    const char *vfs = NULL;   /* the system's, unless a test armed fault injection */
    nas_status st = runs_fault_vfs(&vfs, err);
    if (st)
        goto cleanup;
    if (sqlite3_open_v2(path, &d->db, oflags, vfs) != SQLITE_OK) {
        st = d->db ? db_fail(d, err, "opening")
                   : nas_errf(err, NAS_ENOMEM, "%s: out of memory opening", path);
        goto cleanup;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, 10000);

    /* The first statement that reads the header: a file that is not a
     * database fails here, cleanly. */
    int user_version = 0, n_objects = 0;
    if ((st = read_header(d, &user_version, &n_objects, err)))
        goto cleanup;
    if (user_version == 0 && n_objects > 0) {
        st = nas_errf(err, NAS_EINVAL, "%s: an SQLite database, but not a nas run store", path);
        goto cleanup;
    }
    if (user_version > N_MIGRATIONS) {
        st = nas_errf(err, NAS_EINVAL,
                      "%s: schema version %d is newer than this nas knows (%d); upgrade nas",
                      path, user_version, N_MIGRATIONS);
        goto cleanup;
    }
    if (readonly && user_version < N_MIGRATIONS) {
        st = nas_errf(err, NAS_EINVAL,
                      "%s: schema version %d is older than this nas's (%d); open it once with "
                      "write access (nas resume) to upgrade it", path, user_version, N_MIGRATIONS);
        goto cleanup;
    }
    d->version = user_version;
    if (!readonly) {
        if ((st = set_wal(d, err)))
            goto cleanup;
        if ((st = exec(d, "PRAGMA synchronous = FULL", err, "setting synchronous mode")))
            goto cleanup;
    }
    if ((st = exec(d, "PRAGMA foreign_keys = ON", err, "enabling foreign keys")))
        goto cleanup;
    if (n_objects > 0 && (st = run_check(d, "PRAGMA quick_check", err)))
        goto cleanup;
    if (!readonly && (st = migrate(d, user_version, err)))
        goto cleanup;
    *out = d;
    d = NULL;
cleanup:
    runs_close(d);
    return st;
}

void runs_close(runs_db *d)
{
    if (!d)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(d->st[i]);
    sqlite3_close_v2(d->db);
    nas_free(d);
}

int runs_db_version(const runs_db *d)
{
    return d->version;
}

void *runs_sqlite(runs_db *d)
{
    return d->db;
}

nas_status runs_create_at_version(const char *path, int version, nas_err *err)
{
    if (version < 1 || version > N_MIGRATIONS)
        return nas_errf(err, NAS_EINVAL, "schema version %d: not in 1..%d", version, N_MIGRATIONS);
    sqlite3 *db = NULL;
    nas_status st = NAS_OK;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        st = nas_errf(err, NAS_EIO, "%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto cleanup;
    }
    for (int v = 0; v < version; v++) {
        if (sqlite3_exec(db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
            st = nas_errf(err, NAS_EIO, "%s: step %d: %s", path, v + 1, sqlite3_errmsg(db));
            goto cleanup;
        }
    }
cleanup:
    sqlite3_close(db);
    return st;
}

nas_status runs_check(runs_db *d, nas_err *err)
{
    nas_status st = run_check(d, "PRAGMA integrity_check", err);
    if (!st)
        st = run_check(d, "PRAGMA foreign_key_check", err);
    return st;
}

/* ---- figures --------------------------------------------------------------- */

runs_fig runs_fig_none(void)
{
    runs_fig f;
    memset(&f, 0, sizeof f);
    f.value = NAN;
    return f;
}

runs_fig runs_fig_make(double value, const char *source, const char *quality)
{
    runs_fig f = runs_fig_none();
    f.value = value;
    snprintf(f.source, sizeof f.source, "%s", source ? source : "");
    snprintf(f.quality, sizeof f.quality, "%s", quality ? quality : "");
    return f;
}

int runs_fig_known(const runs_fig *f)
{
    return f && isfinite(f->value);
}

int runs_quality_is_measured(const char *q)
{
    return q && !strcmp(q, "measured");
}

static void bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static void bind_real(sqlite3_stmt *s, int i, double v)
{
    if (isfinite(v))
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

/* A figure is three columns: value, source, quality (all NULL when unknown). */
static void bind_fig(sqlite3_stmt *s, int i, const runs_fig *f)
{
    if (!runs_fig_known(f)) {
        sqlite3_bind_null(s, i);
        sqlite3_bind_null(s, i + 1);
        sqlite3_bind_null(s, i + 2);
        return;
    }
    sqlite3_bind_double(s, i, f->value);
    bind_text(s, i + 1, f->source[0] ? f->source : NULL);
    bind_text(s, i + 2, f->quality[0] ? f->quality : NULL);
}

static double col_real(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

static void col_str(sqlite3_stmt *s, int i, char *buf, size_t n)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    snprintf(buf, n, "%s", t ? t : "");
}

static runs_fig col_fig(sqlite3_stmt *s, int i)
{
    runs_fig f = runs_fig_none();
    f.value = col_real(s, i);
    col_str(s, i + 1, f.source, sizeof f.source);
    col_str(s, i + 2, f.quality, sizeof f.quality);
    return f;
}

/* A figure with a value must say where it came from and how good it is. */
static nas_status check_fig(const runs_fig *f, const char *name, int predicted, nas_err *err)
{
    if (!runs_fig_known(f))
        return NAS_OK;
    if (!f->source[0])
        return nas_errf(err, NAS_EINVAL, "%s = %g: no source given", name, f->value);
    int ok = predicted ? !strcmp(f->quality, "predicted")
                       : (!strcmp(f->quality, "measured") || !strcmp(f->quality, "sampled") ||
                          !strcmp(f->quality, "estimated"));
    if (!ok)
        return nas_errf(err, NAS_EINVAL, "%s = %g: quality '%s' is not allowed (%s)", name, f->value,
                        f->quality, predicted ? "predicted" : "measured, sampled or estimated");
    return NAS_OK;
}

/* ---- status names -------------------------------------------------------- */

static const char *const status_names[RUNS_NSTATUS] = {
    "queued", "running", "done", "failed", "diverged", "screened",
};

const char *runs_status_name(runs_status s)
{
    return (unsigned)s < RUNS_NSTATUS ? status_names[s] : "?";
}

int runs_status_from_name(const char *s)
{
    for (int i = 0; s && i < RUNS_NSTATUS; i++)
        if (!strcmp(s, status_names[i]))
            return i;
    return -1;
}

/* ---- runs ----------------------------------------------------------------- */

nas_status runs_run_create(runs_db *d, const runs_new_run *r, int64_t *id, nas_err *err)
{
    nas_status st = tx_begin(d, err);
    if (st)
        return st;
    sqlite3_stmt *s = stmt(d, S_RUN_INSERT, err);
    if (!s) {
        st = err_code(err);
        goto cleanup;
    }
    /* A temporary unique name until the id is known. */
    char tmp[64];
    snprintf(tmp, sizeof tmp, "\x01pending-%ld-%.0f", (long)getpid(), wall_clock() * 1e6);
    bind_text(s, 1, r->name && *r->name ? r->name : tmp);
    sqlite3_bind_double(s, 2, wall_clock());
    bind_text(s, 3, r->settings_json && *r->settings_json ? r->settings_json : "{}");
    sqlite3_bind_int64(s, 4, (int64_t)r->seed);
    bind_text(s, 5, r->hardware ? r->hardware : "");
    bind_text(s, 6, r->meter ? r->meter : "");
    if (sqlite3_step(s) != SQLITE_DONE) {
        if ((sqlite3_extended_errcode(d->db) & 0xff) == SQLITE_CONSTRAINT) {
            st = nas_errf(err, NAS_EINVAL, "%s: cannot create run '%s': %s", d->path,
                          r->name ? r->name : "", sqlite3_errmsg(d->db));
        } else {
            st = db_fail(d, err, "creating a run");
        }
        sqlite3_reset(s);
        goto cleanup;
    }
    sqlite3_reset(s);
    *id = sqlite3_last_insert_rowid(d->db);
    if (!(r->name && *r->name)) {
        if (!(s = stmt(d, S_RUN_NAME, err))) {
            st = err_code(err);
            goto cleanup;
        }
        sqlite3_bind_int64(s, 1, *id);
        if ((st = step_done(d, s, err, "naming a run")))
            goto cleanup;
    }
    st = tx_commit(d, err);
cleanup:
    if (st)
        tx_rollback(d);
    return st;
}

static void read_run(sqlite3_stmt *s, runs_run *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(s, 0);
    col_str(s, 1, r->name, sizeof r->name);
    r->created = sqlite3_column_double(s, 2);
    const char *settings = (const char *)sqlite3_column_text(s, 3);
    r->settings_json = nas_strdup(settings ? settings : "{}");
    r->seed = (uint64_t)sqlite3_column_int64(s, 4);
    col_str(s, 5, r->hardware, sizeof r->hardware);
    col_str(s, 6, r->meter, sizeof r->meter);
    col_str(s, 7, r->status, sizeof r->status);
    r->n_cands = sqlite3_column_int(s, 8);
    r->n_done = sqlite3_column_int(s, 9);
    r->n_failed = sqlite3_column_int(s, 10);
    r->n_queued = sqlite3_column_int(s, 11);
    r->n_running = sqlite3_column_int(s, 12);
    r->best_accuracy = col_real(s, 13);
    r->best_reward = col_real(s, 14);
}

nas_status runs_run_get(runs_db *d, int64_t id, runs_run *out, nas_err *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = stmt(d, S_RUN_GET, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        read_run(s, out);
        if (!out->settings_json)
            st = nas_errf(err, NAS_ENOMEM, "out of memory reading run %lld", (long long)id);
    } else if (rc == SQLITE_DONE) {
        st = nas_errf(err, NAS_EINVAL, "%s: no run %lld", d->path, (long long)id);
    } else {
        st = db_fail(d, err, "reading a run");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_run_find(runs_db *d, const char *name_or_id, int64_t *id, nas_err *err)
{
    sqlite3_stmt *s = stmt(d, S_RUN_BY_NAME, err);
    if (!s)
        return err_code(err);
    bind_text(s, 1, name_or_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        return NAS_OK;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(d, err, "finding a run");
    char *end;
    errno = 0;
    long long v = strtoll(name_or_id, &end, 10);
    if (*name_or_id && !*end && !errno && v > 0) {
        runs_run r;
        nas_status st = runs_run_get(d, v, &r, err);
        runs_run_free(&r);
        if (st)
            return st;
        *id = v;
        return NAS_OK;
    }
    return nas_errf(err, NAS_EINVAL, "%s: no run named '%s' (see 'nas ls')", d->path, name_or_id);
}

nas_status runs_run_list(runs_db *d, runs_run **out, int *n, nas_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = stmt(d, S_RUN_LIST, err);
    if (!s)
        return err_code(err);
    runs_run *list = NULL;
    int cap = 0, count = 0, rc;
    nas_status st = NAS_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            int ncap = cap ? cap * 2 : 16;
            runs_run *bigger = nas_realloc(list, (size_t)ncap * sizeof *list);
            if (!bigger) {
                st = nas_errf(err, NAS_ENOMEM, "out of memory listing runs");
                goto cleanup;
            }
            list = bigger;
            cap = ncap;
        }
        read_run(s, &list[count]);
        if (!list[count++].settings_json) {
            st = nas_errf(err, NAS_ENOMEM, "out of memory listing runs");
            goto cleanup;
        }
    }
    if (rc != SQLITE_DONE)
        st = db_fail(d, err, "listing runs");
cleanup:
    sqlite3_reset(s);
    if (st) {
        runs_runs_free(list, count);
        return st;
    }
    *out = list;
    *n = count;
    return NAS_OK;
}

/* No status (a caller's bug) marks the run failed and is still an error: a
 * run left "running" would look alive to `nas ls` and to resume. */
nas_status runs_run_set_status(runs_db *d, int64_t id, const char *status, nas_err *err)
{
    sqlite3_stmt *s = stmt(d, S_RUN_STATUS, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, status ? status : "failed");
    nas_status st = step_done(d, s, err, "setting a run's status");
    if (!st && sqlite3_changes(d->db) == 0)
        st = nas_errf(err, NAS_EINVAL, "%s: no run %lld", d->path, (long long)id);
    if (!st && !status)
        st = nas_errf(err, NAS_EINVAL, "%s: run %lld: no status given (running, done, stopped or failed); marked "
                      "failed", d->path, (long long)id);
    return st;
}

void runs_run_free(runs_run *r)
{
    if (r) {
        nas_free(r->settings_json);
        r->settings_json = NULL;
    }
}

void runs_runs_free(runs_run *r, int n)
{
    for (int i = 0; r && i < n; i++)
        runs_run_free(&r[i]);
    nas_free(r);
}

nas_status runs_run_energy(runs_db *d, int64_t run, runs_energy_line *out, int max, int *n,
                           nas_err *err)
{
    *n = 0;
    sqlite3_stmt *s = stmt(d, S_RUN_ENERGY, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n >= max)
            continue;
        runs_energy_line *l = &out[(*n)++];
        col_str(s, 0, l->source, sizeof l->source);
        col_str(s, 1, l->quality, sizeof l->quality);
        l->joules = sqlite3_column_double(s, 2);
        l->n = sqlite3_column_int(s, 3);
        l->interrupted = sqlite3_column_int(s, 4);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? NAS_OK : db_fail(d, err, "summing a run's energy");
}

/* ---- candidates ------------------------------------------------------------ */

nas_status runs_cand_add(runs_db *d, int64_t run, const runs_new_cand *c, int64_t *id, int *seq,
                         int *existed, nas_err *err)
{
    int dummy_seq, dummy_existed;
    if (!seq)
        seq = &dummy_seq;
    if (!existed)
        existed = &dummy_existed;
    *existed = 0;
    if (!c->genome || !*c->genome)
        return nas_errf(err, NAS_EINVAL, "candidate: empty genome");
    if (strlen(c->genome) >= sizeof(((runs_cand *)0)->genome))
        return nas_errf(err, NAS_EINVAL, "candidate: genome too long (%zu characters)",
                        strlen(c->genome));
    nas_status st = check_fig(&c->pred_latency_ms, "pred_latency_ms", 1, err);
    if (!st)
        st = check_fig(&c->pred_energy_mj, "pred_energy_mj", 1, err);
    if (st)
        return st;
    if ((st = tx_begin(d, err)))
        return st;
    sqlite3_stmt *s;
    int k = c->seq;
    if (k < 0) {
        if (!(s = stmt(d, S_CAND_NEXT_SEQ, err))) {
            st = err_code(err);
            goto cleanup;
        }
        sqlite3_bind_int64(s, 1, run);
        if (sqlite3_step(s) != SQLITE_ROW) {
            st = db_fail(d, err, "numbering a candidate");
            sqlite3_reset(s);
            goto cleanup;
        }
        k = sqlite3_column_int(s, 0);
        sqlite3_reset(s);
    } else {
        if (!(s = stmt(d, S_CAND_BY_SEQ, err))) {
            st = err_code(err);
            goto cleanup;
        }
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_int(s, 2, k);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const char *g = (const char *)sqlite3_column_text(s, 1);
            int same = g && !strcmp(g, c->genome);
            *id = sqlite3_column_int64(s, 0);
            if (!same)
                st = nas_errf(err, NAS_EINVAL,
                              "run %lld candidate %d: the store holds genome %s, the search "
                              "proposed %s (the replay diverged from the record)",
                              (long long)run, k, g ? g : "?", c->genome);
            sqlite3_reset(s);
            *existed = same;
            *seq = k;
            if (!st)
                st = tx_commit(d, err);   /* nothing written: ends the read */
            goto cleanup;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            st = db_fail(d, err, "looking up a candidate");
            goto cleanup;
        }
    }
    if (!(s = stmt(d, S_CAND_INSERT, err))) {
        st = err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int(s, 2, k);
    bind_text(s, 3, c->genome);
    bind_text(s, 4, c->spec_json);
    bind_fig(s, 5, &c->pred_latency_ms);
    bind_fig(s, 8, &c->pred_energy_mj);
    bind_real(s, 11, c->params);
    bind_real(s, 12, c->macs);
    if (sqlite3_step(s) != SQLITE_DONE) {
        sqlite3_reset(s);
        if ((sqlite3_extended_errcode(d->db) & 0xff) == SQLITE_CONSTRAINT)
            st = nas_errf(err, NAS_EINVAL, "run %lld: cannot add candidate %d: %s", (long long)run,
                          k, sqlite3_errmsg(d->db));
        else
            st = db_fail(d, err, "adding a candidate");
        goto cleanup;
    }
    sqlite3_reset(s);
    *id = sqlite3_last_insert_rowid(d->db);
    *seq = k;
    st = tx_commit(d, err);
cleanup:
    if (st)
        tx_rollback(d);
    return st;
}

/* The status and attempts of a candidate (inside a transaction or not). */
static nas_status cand_state(runs_db *d, int64_t id, int *status, int *attempts, int64_t *run,
                             int *seq, nas_err *err)
{
    sqlite3_stmt *s = stmt(d, S_CAND_STATE, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        *status = runs_status_from_name((const char *)sqlite3_column_text(s, 0));
        *attempts = sqlite3_column_int(s, 1);
        *run = sqlite3_column_int64(s, 2);
        *seq = sqlite3_column_int(s, 3);
    } else if (rc == SQLITE_DONE) {
        st = nas_errf(err, NAS_EINVAL, "%s: no candidate %lld", d->path, (long long)id);
    } else {
        st = db_fail(d, err, "reading a candidate");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_cand_start(runs_db *d, int64_t id, int *attempts, nas_err *err)
{
    nas_status st = tx_begin(d, err);
    if (st)
        return st;
    int status = -1, att = 0, seq = 0;
    int64_t run = 0;
    if ((st = cand_state(d, id, &status, &att, &run, &seq, err)))
        goto cleanup;
    if (status != RUNS_QUEUED) {
        st = nas_errf(err, NAS_EINVAL, "candidate %lld (run %lld, #%d) is %s, not queued",
                      (long long)id, (long long)run, seq, runs_status_name((runs_status)status));
        goto cleanup;
    }
    sqlite3_stmt *s = stmt(d, S_CAND_START, err);
    if (!s) {
        st = err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, id);
    if ((st = step_done(d, s, err, "starting a candidate")))
        goto cleanup;
    if ((st = tx_commit(d, err)))
        goto cleanup;
    if (attempts)
        *attempts = att + 1;
cleanup:
    if (st)
        tx_rollback(d);
    return st;
}

void runs_result_init(runs_result *r)
{
    memset(r, 0, sizeof *r);
    r->status = RUNS_DONE;
    r->accuracy = r->params = r->macs = r->wall_s = r->reward = NAN;
    r->latency_ms = r->energy_mj = r->joules = runs_fig_none();
    r->pred_latency_ms = r->pred_energy_mj = runs_fig_none();
}

static nas_status strategy_put(runs_db *d, int64_t run, int seq, const char *state, nas_err *err)
{
    sqlite3_stmt *s = stmt(d, S_STRAT_PUT, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int(s, 2, seq);
    bind_text(s, 3, state);
    sqlite3_bind_double(s, 4, wall_clock());
    return step_done(d, s, err, "saving the strategy state");
}

nas_status runs_cand_finish(runs_db *d, int64_t id, const runs_result *res,
                            const char *strategy_state, nas_err *err)
{
    if (res->status != RUNS_DONE && res->status != RUNS_FAILED && res->status != RUNS_DIVERGED &&
        res->status != RUNS_SCREENED)
        return nas_errf(err, NAS_EINVAL, "candidate %lld: '%s' is not a finished status",
                        (long long)id, runs_status_name(res->status));
    nas_status st = NAS_OK;
    static const char *const names[] = {"latency_ms", "energy_mj", "joules", "pred_latency_ms",
                                        "pred_energy_mj"};
    const runs_fig *figs[] = {&res->latency_ms, &res->energy_mj, &res->joules,
                              &res->pred_latency_ms, &res->pred_energy_mj};
    for (int i = 0; i < 5 && !st; i++)
        st = check_fig(figs[i], names[i], i >= 3, err);
    for (int i = 0; i < res->n_meas && !st; i++) {
        const runs_measurement *m = &res->meas[i];
        runs_fig f = runs_fig_make(m->value, m->source, m->quality);
        if (!m->kind || !*m->kind)
            st = nas_errf(err, NAS_EINVAL, "measurement %d: no kind", i);
        else if (!isfinite(m->value))
            st = nas_errf(err, NAS_EINVAL, "measurement %d (%s): value is not finite", i, m->kind);
        else
            st = check_fig(&f, m->kind, 0, err);
    }
    if (st)
        return st;
    if ((st = tx_begin(d, err)))
        return st;
    int status = -1, att = 0, seq = 0;
    int64_t run = 0;
    if ((st = cand_state(d, id, &status, &att, &run, &seq, err)))
        goto cleanup;
    if (status != RUNS_QUEUED && status != RUNS_RUNNING) {
        st = nas_errf(err, NAS_EINVAL,
                      "candidate %lld (run %lld, #%d) is %s already: a finished evaluation is "
                      "never recorded twice", (long long)id, (long long)run, seq,
                      runs_status_name((runs_status)status));
        goto cleanup;
    }
    sqlite3_stmt *s = stmt(d, S_CAND_FINISH, err);
    if (!s) {
        st = err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, runs_status_name(res->status));
    bind_real(s, 3, res->accuracy);
    bind_fig(s, 4, &res->latency_ms);
    bind_fig(s, 7, &res->energy_mj);
    bind_fig(s, 10, &res->joules);
    bind_fig(s, 13, &res->pred_latency_ms);
    bind_fig(s, 16, &res->pred_energy_mj);
    bind_real(s, 19, res->params);
    bind_real(s, 20, res->macs);
    bind_real(s, 21, res->wall_s);
    bind_real(s, 22, res->reward);
    sqlite3_bind_double(s, 23, wall_clock());
    bind_text(s, 24, res->error && *res->error ? res->error : NULL);
    if ((st = step_done(d, s, err, "recording a result")))
        goto cleanup;
    /* Measurements of an earlier, interrupted attempt never reached a commit,
     * so there are none; the delete keeps the promise even if a caller
     * recorded some outside this function. */
    if (!(s = stmt(d, S_MEAS_DELETE, err))) {
        st = err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, id);
    if ((st = step_done(d, s, err, "clearing measurements")))
        goto cleanup;
    for (int i = 0; i < res->n_meas; i++) {
        const runs_measurement *m = &res->meas[i];
        if (!(s = stmt(d, S_MEAS_INSERT, err))) {
            st = err_code(err);
            goto cleanup;
        }
        sqlite3_bind_int64(s, 1, id);
        bind_text(s, 2, m->kind);
        sqlite3_bind_int(s, 3, m->rep);
        sqlite3_bind_double(s, 4, m->value);
        bind_text(s, 5, m->source);
        bind_text(s, 6, m->quality);
        if ((st = step_done(d, s, err, "recording a measurement")))
            goto cleanup;
    }
    if (strategy_state && (st = strategy_put(d, run, seq, strategy_state, err)))
        goto cleanup;
    st = tx_commit(d, err);
cleanup:
    if (st)
        tx_rollback(d);
    return st;
}

/* One figure column of a candidate, read inside the caller's transaction. */
static nas_status cand_fig(runs_db *d, int64_t id, const char *col, runs_fig *out, nas_err *err)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s, %s_src, %s_q FROM candidates WHERE id = ?", col, col, col);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK)
        return db_fail(d, err, "preparing a statement");
    sqlite3_bind_int64(s, 1, id);
    nas_status st = NAS_OK;
    *out = runs_fig_none();
    if (sqlite3_step(s) == SQLITE_ROW)
        *out = col_fig(s, 0);
    else
        st = db_fail(d, err, "reading a figure");
    sqlite3_finalize(s);
    return st;
}

static nas_status run_sql(runs_db *d, const char *sql, int64_t id, const runs_fig *f, nas_err *err,
                          const char *what)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK)
        return db_fail(d, err, "preparing a statement");
    sqlite3_bind_int64(s, 1, id);
    if (f)
        bind_fig(s, 2, f);
    nas_status st = step_done(d, s, err, what);
    sqlite3_finalize(s);
    return st;
}

/* A raw measurement at the next free rep of its kind. */
static nas_status meas_append(runs_db *d, int64_t id, const char *kind, const runs_fig *f, nas_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db,
                           "INSERT INTO measurements (candidate, kind, rep, value, source, quality) "
                           "SELECT ?1, ?2, COALESCE(MAX(rep) + 1, 0), ?3, ?4, ?5 FROM measurements "
                           "WHERE candidate = ?1 AND kind = ?2", -1, &s, NULL) != SQLITE_OK)
        return db_fail(d, err, "preparing a statement");
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, kind);
    bind_fig(s, 3, f);
    nas_status st = step_done(d, s, err, "recording a measurement");
    sqlite3_finalize(s);
    return st;
}

static nas_status meas_count(runs_db *d, int64_t id, const char *kind, int *n, nas_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT COUNT(*) FROM measurements WHERE candidate = ? AND kind = ?", -1, &s,
                           NULL) != SQLITE_OK)
        return db_fail(d, err, "preparing a statement");
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, kind);
    nas_status st = NAS_OK;
    if (sqlite3_step(s) == SQLITE_ROW)
        *n = sqlite3_column_int(s, 0);
    else
        st = db_fail(d, err, "counting measurements");
    sqlite3_finalize(s);
    return st;
}

nas_status runs_cand_add_measurement(runs_db *d, int64_t id, const runs_fig *latency_ms,
                                     const runs_fig *energy_mj, const runs_fig *joules,
                                     const char *strategy_state, nas_err *err)
{
    static const char *const names[] = {"latency_ms", "energy_mj"};
    const runs_fig none = runs_fig_none();
    const runs_fig *figs[] = {latency_ms ? latency_ms : &none, energy_mj ? energy_mj : &none};
    if (!joules)
        joules = &none;
    nas_status st = NAS_OK;
    for (int i = 0; i < 2 && !st; i++)
        st = check_fig(figs[i], names[i], 0, err);
    if (!st)
        st = check_fig(joules, "joules", 0, err);
    if (st)
        return st;
    if ((st = tx_begin(d, err)))
        return st;
    int status = -1, att = 0, seq = 0;
    int64_t run = 0;
    if ((st = cand_state(d, id, &status, &att, &run, &seq, err)))
        goto cleanup;
    if (status != RUNS_DONE) {
        st = nas_errf(err, NAS_EINVAL,
                      "candidate %lld (run %lld, #%d) is %s: only a finished evaluation (done) is "
                      "measured again", (long long)id, (long long)run, seq, runs_status_name((runs_status)status));
        goto cleanup;
    }
    for (int i = 0; i < 2; i++) {
        if (!runs_fig_known(figs[i]))
            continue;
        /* the figures it had first stay on record, as the first measurement of their kind */
        runs_fig old;
        int n = 0;
        if ((st = cand_fig(d, id, names[i], &old, err)) || (st = meas_count(d, id, names[i], &n, err)))
            goto cleanup;
        if (runs_fig_known(&old) && n == 0 && (st = meas_append(d, id, names[i], &old, err)))
            goto cleanup;
        if ((st = meas_append(d, id, names[i], figs[i], err)))
            goto cleanup;
        char sql[160];
        snprintf(sql, sizeof sql, "UPDATE candidates SET %s = ?2, %s_src = ?3, %s_q = ?4 WHERE id = ?1", names[i],
                 names[i], names[i]);
        if ((st = run_sql(d, sql, id, figs[i], err, "recording a later measurement")))
            goto cleanup;
    }
    if (runs_fig_known(joules)) {
        /* what measuring cost joins what the candidate cost, when the meter is the same one:
         * figures of different sources or qualities are never summed */
        runs_fig old;
        if ((st = cand_fig(d, id, "joules", &old, err)) || (st = meas_append(d, id, "measure_joules", joules, err)))
            goto cleanup;
        if (runs_fig_known(&old) && !strcmp(old.source, joules->source) && !strcmp(old.quality, joules->quality) &&
            (st = run_sql(d, "UPDATE candidates SET joules = joules + ?2 WHERE id = ?1 AND joules_src = ?3 "
                          "AND joules_q = ?4", id, joules, err, "adding the measuring's joules")))
            goto cleanup;
    }
    if (strategy_state && (st = strategy_put(d, run, seq, strategy_state, err)))
        goto cleanup;
    st = tx_commit(d, err);
cleanup:
    if (st)
        tx_rollback(d);
    return st;
}

nas_status runs_resume(runs_db *d, int64_t run, int *requeued, int *failed, nas_err *err)
{
    nas_status st = tx_begin(d, err);
    if (st)
        return st;
    /* first what the interrupted attempts spent, before their rows change */
    sqlite3_stmt *s = stmt(d, S_RESUME_LOST, err);
    if (!s) {
        st = err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, run);
    if ((st = step_done(d, s, err, "counting the joules of interrupted candidates")))
        goto cleanup;
    if (!(s = stmt(d, S_RESUME_FAIL, err))) {
        st = err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int(s, 2, RUNS_MAX_ATTEMPTS);
    sqlite3_bind_double(s, 3, wall_clock());
    if ((st = step_done(d, s, err, "failing twice-interrupted candidates")))
        goto cleanup;
    int nf = sqlite3_changes(d->db);
    if (!(s = stmt(d, S_RESUME_REQUEUE, err))) {
        st = err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, run);
    if ((st = step_done(d, s, err, "re-queueing interrupted candidates")))
        goto cleanup;
    int nq = sqlite3_changes(d->db);
    if ((st = tx_commit(d, err)))
        goto cleanup;
    if (requeued)
        *requeued = nq;
    if (failed)
        *failed = nf;
cleanup:
    if (st)
        tx_rollback(d);
    return st;
}

static nas_status read_cand(sqlite3_stmt *s, runs_cand *c, nas_err *err)
{
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(s, 0);
    c->run = sqlite3_column_int64(s, 1);
    c->seq = sqlite3_column_int(s, 2);
    col_str(s, 3, c->genome, sizeof c->genome);
    const char *spec = (const char *)sqlite3_column_text(s, 4);
    if (spec && !(c->spec_json = nas_strdup(spec)))
        return nas_errf(err, NAS_ENOMEM, "out of memory reading candidate %lld", (long long)c->id);
    int status = runs_status_from_name((const char *)sqlite3_column_text(s, 5));
    c->status = status < 0 ? RUNS_FAILED : (runs_status)status;
    c->attempts = sqlite3_column_int(s, 6);
    c->accuracy = col_real(s, 7);
    c->pred_latency_ms = col_fig(s, 8);
    c->pred_energy_mj = col_fig(s, 11);
    c->latency_ms = col_fig(s, 14);
    c->energy_mj = col_fig(s, 17);
    c->joules = col_fig(s, 20);
    c->params = col_real(s, 23);
    c->macs = col_real(s, 24);
    c->wall_s = col_real(s, 25);
    c->reward = col_real(s, 26);
    c->finished = sqlite3_column_double(s, 27);
    col_str(s, 28, c->error, sizeof c->error);
    return NAS_OK;
}

nas_status runs_cand_get(runs_db *d, int64_t id, runs_cand *out, nas_err *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = stmt(d, S_CAND_GET, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    nas_status st;
    if (rc == SQLITE_ROW)
        st = read_cand(s, out, err);
    else if (rc == SQLITE_DONE)
        st = nas_errf(err, NAS_EINVAL, "%s: no candidate %lld", d->path, (long long)id);
    else
        st = db_fail(d, err, "reading a candidate");
    sqlite3_reset(s);
    return st;
}

nas_status runs_cand_list(runs_db *d, int64_t run, unsigned mask, runs_cand **out, int *n,
                          nas_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = stmt(d, S_CAND_LIST, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, run);
    runs_cand *list = NULL;
    int cap = 0, count = 0, rc;
    nas_status st = NAS_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int status = runs_status_from_name((const char *)sqlite3_column_text(s, 5));
        if (status < 0 || !(mask & RUNS_MASK(status)))
            continue;
        if (count == cap) {
            int ncap = cap ? cap * 2 : 64;
            runs_cand *bigger = nas_realloc(list, (size_t)ncap * sizeof *list);
            if (!bigger) {
                st = nas_errf(err, NAS_ENOMEM, "out of memory listing candidates");
                goto cleanup;
            }
            list = bigger;
            cap = ncap;
        }
        if ((st = read_cand(s, &list[count++], err)))
            goto cleanup;
    }
    if (rc != SQLITE_DONE)
        st = db_fail(d, err, "listing candidates");
cleanup:
    sqlite3_reset(s);
    if (st) {
        runs_cands_free(list, count);
        return st;
    }
    *out = list;
    *n = count;
    return NAS_OK;
}

nas_status runs_cand_next_queued(runs_db *d, int64_t run, runs_cand *out, int *found, nas_err *err)
{
    *found = 0;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = stmt(d, S_CAND_NEXT_QUEUED, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        st = read_cand(s, out, err);
        *found = !st;
    } else if (rc != SQLITE_DONE) {
        st = db_fail(d, err, "reading the queue");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_cand_counts(runs_db *d, int64_t run, int counts[RUNS_NSTATUS], nas_err *err)
{
    memset(counts, 0, RUNS_NSTATUS * sizeof counts[0]);
    sqlite3_stmt *s = stmt(d, S_CAND_COUNTS, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int status = runs_status_from_name((const char *)sqlite3_column_text(s, 0));
        if (status >= 0)
            counts[status] = sqlite3_column_int(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? NAS_OK : db_fail(d, err, "counting candidates");
}

nas_status runs_measurements(runs_db *d, int64_t cand, const char *kind, double *values, int max,
                             int *n, nas_err *err)
{
    *n = 0;
    sqlite3_stmt *s = stmt(d, S_MEAS_GET, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, cand);
    bind_text(s, 2, kind);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n < max)
            values[*n] = sqlite3_column_double(s, 0);
        (*n)++;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? NAS_OK : db_fail(d, err, "reading measurements");
}

void runs_cand_free(runs_cand *c)
{
    if (c) {
        nas_free(c->spec_json);
        c->spec_json = NULL;
    }
}

void runs_cands_free(runs_cand *c, int n)
{
    for (int i = 0; c && i < n; i++)
        runs_cand_free(&c[i]);
    nas_free(c);
}

/* ---- strategy state ---------------------------------------------------------- */

nas_status runs_strategy_get(runs_db *d, int64_t run, char **state, int *seq, nas_err *err)
{
    *state = NULL;
    *seq = -1;
    sqlite3_stmt *s = stmt(d, S_STRAT_GET, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        *seq = sqlite3_column_int(s, 1);
        if (!(*state = nas_strdup(t ? t : "")))
            st = nas_errf(err, NAS_ENOMEM, "out of memory reading the strategy state");
    } else if (rc != SQLITE_DONE) {
        st = db_fail(d, err, "reading the strategy state");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_strategy_put(runs_db *d, int64_t run, int seq, const char *state, nas_err *err)
{
    nas_status st = tx_begin(d, err);
    if (st)
        return st;
    if (!(st = strategy_put(d, run, seq, state, err)))
        st = tx_commit(d, err);
    if (st)
        tx_rollback(d);
    return st;
}

/* ---- predictor models --------------------------------------------------------- */

nas_status runs_model_put(runs_db *d, const char *name, const char *fingerprint,
                          const char *meta_json, const void *blob, size_t len, int64_t *id,
                          nas_err *err)
{
    if (!name || !*name || !fingerprint)
        return nas_errf(err, NAS_EINVAL, "model: a name and a fingerprint are needed");
    nas_status st = tx_begin(d, err);
    if (st)
        return st;
    sqlite3_stmt *s = stmt(d, S_MODEL_PUT, err);
    if (!s) {
        st = err_code(err);
        goto cleanup;
    }
    bind_text(s, 1, name);
    bind_text(s, 2, fingerprint);
    sqlite3_bind_double(s, 3, wall_clock());
    bind_text(s, 4, meta_json);
    sqlite3_bind_blob64(s, 5, len ? blob : "", len, SQLITE_TRANSIENT);
    if ((st = step_done(d, s, err, "saving a model")))
        goto cleanup;
    if (id)
        *id = sqlite3_last_insert_rowid(d->db);
    st = tx_commit(d, err);
cleanup:
    if (st)
        tx_rollback(d);
    return st;
}

nas_status runs_model_get(runs_db *d, const char *name, const char *fingerprint, void **blob,
                          size_t *len, char **meta_json, char fingerprint_out[128], int *found,
                          nas_err *err)
{
    *found = 0;
    *blob = NULL;
    *len = 0;
    if (meta_json)
        *meta_json = NULL;
    sqlite3_stmt *s = stmt(d, fingerprint ? S_MODEL_GET_FP : S_MODEL_GET, err);
    if (!s)
        return err_code(err);
    bind_text(s, 1, name);
    if (fingerprint)
        bind_text(s, 2, fingerprint);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        const void *b = sqlite3_column_blob(s, 0);
        const char *meta = (const char *)sqlite3_column_text(s, 1);
        *blob = nas_malloc(n ? n : 1);
        if (!*blob) {
            st = nas_errf(err, NAS_ENOMEM, "out of memory reading model '%s'", name);
        } else {
            if (n)
                memcpy(*blob, b, n);
            *len = n;
            if (meta_json && meta && !(*meta_json = nas_strdup(meta))) {
                nas_free(*blob);
                *blob = NULL;
                st = nas_errf(err, NAS_ENOMEM, "out of memory reading model '%s'", name);
            }
            if (!st && fingerprint_out)
                col_str(s, 2, fingerprint_out, 128);
            *found = !st;
        }
    } else if (rc != SQLITE_DONE) {
        st = db_fail(d, err, "reading a model");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_cand_progress(runs_db *d, int64_t id, const runs_fig *joules, nas_err *err)
{
    if (!(joules->value >= 0) || !isfinite(joules->value) || !joules->source[0] || !joules->quality[0])
        return nas_errf(err, NAS_EINVAL, "candidate %lld: %g joules spent so far (source '%s', quality '%s')",
                        (long long)id, joules->value, joules->source, joules->quality);
    sqlite3_stmt *s = stmt(d, S_CAND_PARTIAL, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_double(s, 2, joules->value);
    sqlite3_bind_text(s, 3, joules->source, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, joules->quality, -1, SQLITE_TRANSIENT);
    return step_done(d, s, err, "recording a running candidate's joules");
}

nas_status runs_lost_joules(runs_db *d, int64_t run, double *joules, nas_err *err)
{
    *joules = 0;
    sqlite3_stmt *s = stmt(d, S_RUN_LOST, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *joules = sqlite3_column_double(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return nas_errf(err, NAS_EIO, "%s: reading run %lld's lost joules: %s", d->path, (long long)run,
                        sqlite3_errmsg(d->db));
    return NAS_OK;
}

/* A prepared statement whose ?1 is a row id and, with f, ?2..?4 a figure. */
static nas_status step_id(runs_db *d, stmt_id which, int64_t id, const runs_fig *f, const char *what, nas_err *err)
{
    sqlite3_stmt *s = stmt(d, which, err);
    if (!s)
        return err_code(err);
    sqlite3_bind_int64(s, 1, id);
    if (f)
        bind_fig(s, 2, f);
    return step_done(d, s, err, what);
}

nas_status runs_cand_stopped(runs_db *d, int64_t id, const runs_fig *joules, nas_err *err)
{
    int known = runs_fig_known(joules);
    if (known && (!(joules->value >= 0) || !joules->source[0] || !joules->quality[0]))
        return nas_errf(err, NAS_EINVAL, "candidate %lld: %g joules spent before it was stopped (source '%s', "
                        "quality '%s')", (long long)id, joules->value, joules->source, joules->quality);
    nas_status st = tx_begin(d, err);
    if (!st && known)
        st = step_id(d, S_STOP_LOST, id, joules, "recording a stopped candidate's joules", err);
    if (!st)
        st = step_id(d, S_STOP_REQUEUE, id, NULL, "queueing a stopped candidate again", err);
    if (!st)
        st = tx_commit(d, err);
    if (st)
        tx_rollback(d);
    return st;
}
