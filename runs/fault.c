/* fault.c — a test facility: the run store on a disk that fills or fails.
 *
 * A SQLite VFS that passes everything to the system's VFS except that, once
 * armed, the n-th write (counting every write to a store's files, database
 * and WAL, from the moment it is armed) and every write after it fail, as a
 * disk that is full (ENOSPC: SQLITE_FULL) or broken (EIO: SQLITE_IOERR_WRITE)
 * keeps failing until someone frees space or swaps it. Stores opened while it
 * is armed use it; nothing else ever does. Armed from a test with
 * runs_fault_set, or for a whole `nas` process with NAS_FAULT_WRITE=n:ENOSPC
 * (or n:EIO), read when the first store is opened.
 *
 * What it shows: a search whose commit fails midway stops with an error that
 * names the store and what failed, and SQLite's journal (WAL) keeps every
 * transaction committed before whole; the failed one is as if never begun. */
#include "runs/runs.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAULT_VFS "nas-fault"

typedef struct {
    sqlite3_file base;
    sqlite3_file *real;        /* the system VFS's file, right after this struct */
} fault_file;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;
static long fault_at;          /* 0: off */
static long writes;            /* since armed */
static int fault_errno;
static int env_read;

#define REAL(f) (((fault_file *)(f))->real)

static int f_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }
static int f_read(sqlite3_file *f, void *b, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), b, n, off);
}

static int f_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 off)
{
    if (fault_at > 0 && ++writes >= fault_at)
        return fault_errno == ENOSPC ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), b, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 n) { return REAL(f)->pMethods->xTruncate(REAL(f), n); }
static int f_sync(sqlite3_file *f, int flags) { return REAL(f)->pMethods->xSync(REAL(f), flags); }
static int f_size(sqlite3_file *f, sqlite3_int64 *n) { return REAL(f)->pMethods->xFileSize(REAL(f), n); }
static int f_lock(sqlite3_file *f, int k) { return REAL(f)->pMethods->xLock(REAL(f), k); }
static int f_unlock(sqlite3_file *f, int k) { return REAL(f)->pMethods->xUnlock(REAL(f), k); }
static int f_reserved(sqlite3_file *f, int *out) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out); }
static int f_control(sqlite3_file *f, int op, void *arg) { return REAL(f)->pMethods->xFileControl(REAL(f), op, arg); }
static int f_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int f_device(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int f_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int f_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shm_barrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int f_shm_unmap(sqlite3_file *f, int del) { return REAL(f)->pMethods->xShmUnmap(REAL(f), del); }
static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) { return REAL(f)->pMethods->xUnfetch(REAL(f), off, p); }

static const sqlite3_io_methods fault_io = {
    3, f_close, f_read, f_write, f_truncate, f_sync, f_size, f_lock, f_unlock, f_reserved, f_control,
    f_sector, f_device, f_shm_map, f_shm_lock, f_shm_barrier, f_shm_unmap, f_fetch, f_unfetch,
};

static int f_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *out_flags)
{
    fault_file *f = (fault_file *)file;
    f->real = (sqlite3_file *)(f + 1);
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    /* (unix's methods are version 3, as ours: WAL needs the shm ones; NULL
     * methods tell SQLite there is nothing to close) */
    f->base.pMethods = f->real->pMethods ? &fault_io : NULL;
    return rc;
}

/* The VFS once, around the default one; its other calls (paths, time,
 * randomness) go straight to it, with its own app data. */
static int fault_register(void)
{
    if (real_vfs)
        return 0;
    sqlite3_initialize();
    sqlite3_vfs *def = sqlite3_vfs_find(NULL);
    if (!def)
        return -1;
    fault_vfs = *def;
    fault_vfs.zName = FAULT_VFS;
    fault_vfs.szOsFile = (int)sizeof(fault_file) + def->szOsFile;
    fault_vfs.xOpen = f_open;
    fault_vfs.pNext = NULL;
    real_vfs = def;
    if (sqlite3_vfs_register(&fault_vfs, 0) != SQLITE_OK) {
        real_vfs = NULL;
        return -1;
    }
    return 0;
}

nas_status runs_fault_set(long nth_write, int errno_value, nas_err *err)
{
    if (nth_write < 0 || (nth_write > 0 && errno_value != ENOSPC && errno_value != EIO))
        return nas_errf(err, NAS_EINVAL, "fault injection: write %ld with errno %d (a write >= 1 with ENOSPC or "
                        "EIO, or 0 for off)", nth_write, errno_value);
    if (nth_write > 0 && fault_register())
        return nas_errf(err, NAS_EINTERNAL, "fault injection: cannot register SQLite's '%s' VFS", FAULT_VFS);
    fault_at = nth_write;
    fault_errno = errno_value;
    writes = 0;
    env_read = 1;   /* a test's choice rules over the environment */
    return NAS_OK;
}

long runs_fault_writes(void)
{
    return writes;
}

nas_status runs_fault_vfs(const char **vfs, nas_err *err)
{
    *vfs = NULL;
    if (!env_read) {
        env_read = 1;
        const char *e = getenv("NAS_FAULT_WRITE");
        if (e && *e) {
            char kind[16] = "";
            long n = 0;
            int used = 0;
            if (sscanf(e, "%ld:%15[A-Z]%n", &n, kind, &used) != 2 || e[used] || n < 1 ||
                (strcmp(kind, "ENOSPC") && strcmp(kind, "EIO")))
                return nas_errf(err, NAS_EINVAL, "NAS_FAULT_WRITE='%s': expected N:ENOSPC or N:EIO with N >= 1 "
                                "(a test facility: the N-th write to the run store fails)", e);
            nas_status st = runs_fault_set(n, strcmp(kind, "EIO") ? ENOSPC : EIO, err);
            if (st)
                return st;
        }
    }
    if (fault_at > 0)
        *vfs = FAULT_VFS;
    return NAS_OK;
}
