/* err.c — the error value every fallible nas function fills. */
#include "base/nas.h"

#include <stdio.h>
#include <string.h>

nas_status nas_errf(nas_err *err, nas_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

nas_status nas_errctx(nas_err *err, const char *fmt, ...)
{
    if (!err)
        return NAS_EINTERNAL;
    char prefix[512], out[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* "prefix: old message", cut at the buffer's end rather than overflowing. */
    size_t pl = strlen(prefix);
    memcpy(out, prefix, pl);
    out[pl] = ':';
    out[pl + 1] = ' ';
    size_t room = sizeof out - pl - 3;
    size_t ol = strnlen(err->msg, room);
    memcpy(out + pl + 2, err->msg, ol);
    out[pl + 2 + ol] = '\0';
    memcpy(err->msg, out, sizeof out);
    return err->code;
}

void nas_err_clear(nas_err *err)
{
    if (err) {
        err->code = NAS_OK;
        err->msg[0] = '\0';
    }
}

const char *nas_status_name(nas_status code)
{
    switch (code) {
    case NAS_OK:        return "ok";
    case NAS_EINVAL:    return "invalid input";
    case NAS_ENOMEM:    return "out of memory";
    case NAS_EIO:       return "i/o error";
    case NAS_EDIVERGED: return "diverged";
    case NAS_EBUDGET:   return "budget exhausted";
    case NAS_EDENIED:   return "permission denied";
    case NAS_EUNSUPP:   return "not supported here";
    case NAS_EINTERNAL: return "internal error";
    case NAS_EINTR:     return "stopped by a signal";
    }
    return "unknown error";
}

int nas_exit_code(nas_status code)
{
    if (code == NAS_OK)
        return 0;
    if (code == NAS_EINTR)
        return nas_sig_exit_code() ? nas_sig_exit_code() : 130;
    return code == NAS_EINVAL ? 2 : 1;
}
