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
