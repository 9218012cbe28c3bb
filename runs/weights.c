/* weights.c — a candidate's trained weights in the run store, so that
 * `nas export RUN` writes the network that was trained and measured rather than
 * one trained again.
 *
 * The blob is the evaluator's (ev_net_weights_pack): the store reads no more of
 * it than its "NASW" u32-version header, to record which format it holds. Each
 * candidate has at most one row in the weights table (schema step 4; before it
 * they lived in the models table), kept with its byte length and a CRC-32 of
 * the bytes, so a damaged row is refused on read with the candidate named
 * instead of handed to the loader.
 */
#include "runs/store_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define WEIGHTS_FORMAT "NASW"

static uint32_t weights_crc(const void *blob, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    const unsigned char *p = blob;
    while (len > 0) {   /* zlib takes a uInt per call */
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;
        crc = crc32(crc, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)crc;
}

/* The version of a NASW blob's header (little-endian u32 after the magic);
 * 0 when the blob is not one. */
static uint32_t weights_version(const void *blob, size_t len)
{
    const unsigned char *p = blob;
    if (!blob || len < 8 || memcmp(p, WEIGHTS_FORMAT, 4) != 0)
        return 0;
    return (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
}

static void sql_crc32(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const void *b = sqlite3_value_blob(argv[0]);
    int n = sqlite3_value_bytes(argv[0]);
    sqlite3_result_int64(ctx, weights_crc(b, n > 0 ? (size_t)n : 0));
}

static void sql_weights_version(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const void *b = sqlite3_value_blob(argv[0]);
    int n = sqlite3_value_bytes(argv[0]);
    uint32_t v = weights_version(b, n > 0 ? (size_t)n : 0);
    if (v)
        sqlite3_result_int64(ctx, v);
    else
        sqlite3_result_null(ctx);
}

int runs_weights_sql_functions(sqlite3 *db)
{
    int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
    int rc = sqlite3_create_function(db, "nas_crc32", 1, flags, NULL, sql_crc32, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "nas_weights_version", 1, flags, NULL, sql_weights_version,
                                     NULL, NULL);
    return rc;
}

nas_status runs_weights_put(runs_db *db, int64_t cand, const void *blob, size_t len, nas_err *err)
{
    uint32_t version = weights_version(blob, len);
    if (!version)
        return nas_errf(err, NAS_EINVAL, "candidate %" PRId64 ": the weights (%zu bytes) are not a "
                        WEIGHTS_FORMAT " blob", cand, len);
    nas_status st = runs_tx_begin(db, err);
    sqlite3_stmt *s = st ? NULL : runs_stmt(db, S_WEIGHTS_PUT, err);
    if (!st && !s)
        st = runs_err_code(err);
    if (!st) {
        sqlite3_bind_int64(s, 1, cand);
        runs_bind_text(s, 2, WEIGHTS_FORMAT);
        sqlite3_bind_int64(s, 3, version);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)len);
        sqlite3_bind_int64(s, 5, weights_crc(blob, len));
        sqlite3_bind_double(s, 6, runs_wall_clock());
        sqlite3_bind_blob64(s, 7, blob, len, SQLITE_TRANSIENT);
        st = runs_step_done(db, s, err, "storing weights");
    }
    if (!st)
        st = runs_tx_commit(db, err);
    if (st)
        runs_tx_rollback(db);
    if (st != NAS_OK)
        nas_errctx(err, "storing the weights of candidate %" PRId64, cand);
    return st;
}

/* The row's bytes, checked against its recorded length, checksum and format. */
static nas_status weights_row(sqlite3_stmt *s, int64_t cand, void **blob, size_t *len, nas_err *err)
{
    char format[16];
    runs_col_str(s, 0, format, sizeof format);
    int64_t version = sqlite3_column_int64(s, 1), bytes = sqlite3_column_int64(s, 2);
    uint32_t crc = (uint32_t)sqlite3_column_int64(s, 3);
    const void *b = sqlite3_column_blob(s, 4);
    size_t n = (size_t)sqlite3_column_bytes(s, 4);
    if (strcmp(format, WEIGHTS_FORMAT) != 0)
        return nas_errf(err, NAS_EINVAL, "candidate %" PRId64 ": weights in format '%s' version %" PRId64
                        ", which this nas does not read", cand, format, version);
    if ((int64_t)n != bytes || weights_crc(b, n) != crc)
        return nas_errf(err, NAS_EIO, "candidate %" PRId64 ": the stored weights are damaged (%zu bytes, "
                        "%" PRId64 " recorded; CRC-32 %08x, %08x recorded)", cand, n, bytes,
                        (unsigned)weights_crc(b, n), (unsigned)crc);
    if (!blob)   /* the figures only: checked, not copied */
        return NAS_OK;
    if (!(*blob = nas_malloc(n ? n : 1)))
        return nas_errf(err, NAS_ENOMEM, "out of memory (%zu bytes)", n);
    memcpy(*blob, b, n);
    *len = n;
    return NAS_OK;
}

nas_status runs_weights_get(runs_db *db, int64_t cand, void **blob, size_t *len, int *found,
                            nas_err *err)
{
    *blob = NULL;
    *len = 0;
    *found = 0;
    sqlite3_stmt *s = runs_stmt(db, S_WEIGHTS_GET, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, cand);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW)
        *found = (st = weights_row(s, cand, blob, len, err)) == NAS_OK;
    else if (rc != SQLITE_DONE)
        st = runs_db_fail(db, err, "reading weights");
    sqlite3_reset(s);
    if (st != NAS_OK)
        nas_errctx(err, "reading the weights of candidate %" PRId64, cand);
    return st;
}

/* ---- final training --------------------------------------------------------- */

nas_status runs_final_put(runs_db *db, const runs_final *f, const void *blob, size_t len, nas_err *err)
{
    uint32_t version = weights_version(blob, len);
    if (!version)
        return nas_errf(err, NAS_EINVAL, "candidate %" PRId64 ": the final weights (%zu bytes) are not a "
                        WEIGHTS_FORMAT " blob", f->cand, len);
    nas_status st = runs_check_fig(&f->joules, "final training energy", 0, err);
    if (!st)
        st = runs_tx_begin(db, err);
    sqlite3_stmt *s = st ? NULL : runs_stmt(db, S_FINAL_PUT, err);
    if (!st && !s)
        st = runs_err_code(err);
    if (!st) {
        sqlite3_bind_int64(s, 1, f->cand);
        sqlite3_bind_int(s, 2, f->epochs);
        sqlite3_bind_int(s, 3, f->train_images);
        sqlite3_bind_int(s, 4, f->test_images);
        runs_bind_real(s, 5, f->val_acc);
        runs_bind_real(s, 6, f->test_acc);
        runs_bind_fig(s, 7, &f->joules);
        runs_bind_real(s, 10, f->seconds);
        runs_bind_text(s, 11, WEIGHTS_FORMAT);
        sqlite3_bind_int64(s, 12, version);
        sqlite3_bind_int64(s, 13, (sqlite3_int64)len);
        sqlite3_bind_int64(s, 14, weights_crc(blob, len));
        sqlite3_bind_double(s, 15, runs_wall_clock());
        sqlite3_bind_blob64(s, 16, blob, len, SQLITE_TRANSIENT);
        st = runs_step_done(db, s, err, "storing a final model");
    }
    if (!st)
        st = runs_tx_commit(db, err);
    if (st)
        runs_tx_rollback(db);
    return st ? nas_errctx(err, "storing the final training of candidate %" PRId64, f->cand) : NAS_OK;
}

nas_status runs_final_choose(runs_db *db, int64_t run, int64_t cand, nas_err *err)
{
    sqlite3_stmt *s = runs_stmt(db, S_FINAL_CHOOSE, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int64(s, 2, cand);
    return runs_step_done(db, s, err, "marking the chosen final model");
}

nas_status runs_final_get(runs_db *db, int64_t cand, runs_final *f, void **blob, size_t *len, int *found,
                          nas_err *err)
{
    memset(f, 0, sizeof *f);
    if (blob)
        *blob = NULL;
    if (len)
        *len = 0;
    *found = 0;
    sqlite3_stmt *s = runs_stmt(db, S_FINAL_GET, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, cand);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    size_t n = 0;
    if (rc == SQLITE_ROW && !(st = weights_row(s, cand, blob, len ? len : &n, err))) {
        f->cand = cand;
        f->epochs = sqlite3_column_int(s, 5);
        f->train_images = sqlite3_column_int(s, 6);
        f->test_images = sqlite3_column_int(s, 7);
        f->val_acc = runs_col_real(s, 8);
        f->test_acc = runs_col_real(s, 9);
        f->joules = runs_col_fig(s, 10);
        f->seconds = runs_col_real(s, 13);
        f->chosen = sqlite3_column_int(s, 14);
        *found = 1;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        st = runs_db_fail(db, err, "reading a final model");
    }
    sqlite3_reset(s);
    return st ? nas_errctx(err, "reading the final training of candidate %" PRId64, cand) : NAS_OK;
}

nas_status runs_final_chosen(runs_db *db, int64_t run, int64_t *cand, int *found, nas_err *err)
{
    *found = 0;
    *cand = -1;
    sqlite3_stmt *s = runs_stmt(db, S_FINAL_CHOSEN, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        *cand = sqlite3_column_int64(s, 0);
        *found = 1;
    } else if (rc != SQLITE_DONE) {
        st = runs_db_fail(db, err, "finding the chosen final model");
    }
    sqlite3_reset(s);
    return st;
}
