/* schema.c — the run store's schema, its migrations, and opening a store file.
 *
 * Why SQLite and how it keeps its promise (see runs.h): WAL mode so that
 * `nas report` can read while a search writes; synchronous=FULL so that a
 * commit is on disk when it returns (an evaluation costs seconds, an fsync
 * milliseconds). The schema is a list of migration steps; PRAGMA user_version
 * counts the steps applied. A store from an older nas is brought up to date on
 * open (never when opened read-only: that open says to open it once with write
 * access), one transaction per step.
 */
#include "runs/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- schema -------------------------------------------------------------- */

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

    /* 4: trained weights in a table of their own. Up to 3 they were rows of
     * models named weights/<candidate> with fingerprint nas-weights; the
     * newest row of each candidate moves here (with its length and a CRC-32
     * computed by runs_weights_sql_functions), the moved rows leave models.
     * Rows that are not NASW blobs, or whose candidate is gone, stay put. */
    "CREATE TABLE weights ("
    "  candidate INTEGER PRIMARY KEY REFERENCES candidates(id) ON DELETE CASCADE,"
    "  format TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL CHECK (bytes = length(blob)),"
    "  crc32 INTEGER NOT NULL,"
    "  created REAL NOT NULL,"
    "  blob BLOB NOT NULL);"
    "CREATE TEMP TABLE old_weights AS"
    "  SELECT m.id AS id, CAST(substr(m.name, 9) AS INTEGER) AS candidate,"
    "         nas_weights_version(m.blob) AS version"
    "  FROM models m WHERE m.fingerprint = 'nas-weights' AND m.name GLOB 'weights/[0-9]*'"
    "    AND m.id IN (SELECT max(id) FROM models WHERE fingerprint = 'nas-weights' GROUP BY name);"
    "DELETE FROM temp.old_weights WHERE version IS NULL"
    "  OR candidate NOT IN (SELECT id FROM candidates);"
    "INSERT INTO weights (candidate, format, version, bytes, crc32, created, blob)"
    "  SELECT o.candidate, 'NASW', o.version, length(m.blob), nas_crc32(m.blob), m.created, m.blob"
    "  FROM temp.old_weights o JOIN models m ON m.id = o.id;"
    "DELETE FROM models WHERE fingerprint = 'nas-weights' AND name GLOB 'weights/[0-9]*'"
    "  AND CAST(substr(name, 9) AS INTEGER) IN (SELECT candidate FROM temp.old_weights);"
    "DROP TABLE temp.old_weights;"
    "PRAGMA user_version = 4;",

    /* 5: the search's final training, one row per finally trained candidate:
     * its figures (the energy a figure with its meter and quality, like every
     * energy in the store) and its weights, checked as the weights table's
     * are. At most one row of a run is chosen: the one that was exported. */
    "CREATE TABLE finals ("
    "  candidate INTEGER PRIMARY KEY REFERENCES candidates(id) ON DELETE CASCADE,"
    "  epochs INTEGER NOT NULL,"
    "  train_images INTEGER NOT NULL,"
    "  test_images INTEGER NOT NULL,"
    "  val_acc REAL,"
    "  test_acc REAL,"
    "  joules REAL, joules_source TEXT, joules_quality TEXT,"
    "  seconds REAL,"
    "  chosen INTEGER NOT NULL DEFAULT 0,"
    "  format TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL CHECK (bytes = length(blob)),"
    "  crc32 INTEGER NOT NULL,"
    "  created REAL NOT NULL,"
    "  blob BLOB NOT NULL);"
    "PRAGMA user_version = 5;",
    /* 6: multi-fidelity: a candidate's rung (0: its first training) and, for a
     * promotion, the seq of the candidate it trained on from */
    "ALTER TABLE candidates ADD COLUMN rung INTEGER NOT NULL DEFAULT 0 CHECK (rung >= 0);"
    "ALTER TABLE candidates ADD COLUMN parent INTEGER CHECK (parent IS NULL OR parent >= 0);"
    "PRAGMA user_version = 6;",
    /* 7: joules a search spent outside its candidates and counted against its
     * budget: the calibration of its predictor (--predictor auto) */
    "CREATE TABLE overheads ("
    "  id INTEGER PRIMARY KEY,"
    "  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  what TEXT NOT NULL CHECK (what IN ('calibration')),"
    "  joules REAL NOT NULL CHECK (joules >= 0),"
    "  src TEXT NOT NULL CHECK (src <> ''),"
    "  q TEXT NOT NULL CHECK (q IN ('measured', 'sampled', 'estimated')),"
    "  created REAL NOT NULL);"
    "PRAGMA user_version = 7;",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])

int runs_schema_version(void)
{
    return N_MIGRATIONS;
}

/* ---- open ---------------------------------------------------------------- */

static nas_status pragma_int(runs_db *d, const char *sql, int *out, nas_err *err);

/* Each step in a write transaction that first reads the version again: two
 * processes opening a new store at once (a search and its reporter, say) must
 * not both run a step, or the second fails on what the first created. */
static nas_status migrate(runs_db *d, int from, nas_err *err)
{
    for (int v = from; v < N_MIGRATIONS; v++) {
        nas_status st = runs_tx_begin(d, err);
        if (st)
            return st;
        if ((st = pragma_int(d, "PRAGMA user_version", &v, err))) {
            runs_tx_rollback(d);
            return st;
        }
        if (v >= N_MIGRATIONS) {   /* another process finished the job */
            d->version = v;
            return runs_tx_commit(d, err);
        }
        if (sqlite3_exec(d->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "migrating the schema to version %d", v + 1);
            st = runs_db_fail(d, err, what);
            runs_tx_rollback(d);
            return st;
        }
        if ((st = runs_tx_commit(d, err)))
            return st;
        d->version = v + 1;
    }
    return NAS_OK;
}

static nas_status pragma_int(runs_db *d, const char *sql, int *out, nas_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK)
        return runs_db_fail(d, err, "reading the schema");
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        nas_status st = runs_db_fail(d, err, "reading the schema");
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
        return runs_db_fail(d, err, "checking integrity");
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
        st = runs_db_fail(d, err, "checking integrity");
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
        return runs_db_fail(d, err, "reading the schema");
    if (sqlite3_step(s) != SQLITE_ROW) {
        nas_status st = runs_db_fail(d, err, "reading the schema");
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
            return runs_db_fail(d, err, "switching to WAL mode");
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
    nas_path_dir(path, dir, sizeof dir);
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
        st = d->db ? runs_db_fail(d, err, "opening")
                   : nas_errf(err, NAS_ENOMEM, "%s: out of memory opening", path);
        goto cleanup;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, 10000);
    if (runs_weights_sql_functions(d->db) != SQLITE_OK) {
        st = runs_db_fail(d, err, "registering the store's SQL functions");
        goto cleanup;
    }

    /* The first statement that reads the header: a file that is not a
     * database fails here, cleanly. */
    int user_version = 0, n_objects = 0;
    if ((st = read_header(d, &user_version, &n_objects, err)))
        goto cleanup;
    if (user_version == 0 && n_objects > 0) {
        st = nas_errf(err, NAS_EINVAL, "%s: an SQLite database, but not a nas run store", path);
        goto cleanup;
    }
    if (user_version < 0) {   /* found by fuzzing: it indexed the migrations before the first */
        st = nas_errf(err, NAS_EINVAL, "%s: schema version %d: not a nas run store", path, user_version);
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
        if ((st = runs_exec(d, "PRAGMA synchronous = FULL", err, "setting synchronous mode")))
            goto cleanup;
    }
    if ((st = runs_exec(d, "PRAGMA foreign_keys = ON", err, "enabling foreign keys")))
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
    if (runs_weights_sql_functions(db) != SQLITE_OK) {
        st = nas_errf(err, NAS_EIO, "%s: registering SQL functions: %s", path, sqlite3_errmsg(db));
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
