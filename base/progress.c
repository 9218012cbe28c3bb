/* progress.c — the status line of base/progress.h. Drawing is rate-limited
 * here, not by the callers, so a training loop can report every step at the
 * cost of one clock read; the text is only formatted when it will be drawn. */
#include "base/progress.h"
#include "base/nas.h"

#include <math.h>
#include <stdarg.h>

#define TTY_EVERY_S 0.2   /* a terminal line redrawn at most 5 times a second */

void nas_progress_init(nas_progress *p, FILE *f, int tty, double every_s)
{
    p->f = f;
    p->tty = tty;
    p->every_s = every_s > 0 ? every_s : 5.0;
    p->now = nas_now;
    p->t0 = p->now();
    p->last = -HUGE_VAL;
    p->shown = 0;
}

double nas_progress_elapsed(const nas_progress *p)
{
    return p->now() - p->t0;
}

int nas_progress_due(const nas_progress *p)
{
    return p->f && p->now() - p->last >= (p->tty ? TTY_EVERY_S : p->every_s);
}

void nas_progress_show(nas_progress *p, const char *fmt, ...)
{
    if (!nas_progress_due(p))
        return;
    p->last = p->now();
    va_list ap;
    va_start(ap, fmt);
    if (p->tty)
        fputs("\r\033[K", p->f);
    vfprintf(p->f, fmt, ap);
    va_end(ap);
    if (!p->tty)
        fputc('\n', p->f);
    p->shown = p->tty;
    fflush(p->f);
}

void nas_progress_clear(nas_progress *p)
{
    if (p->shown) {
        fputs("\r\033[K", p->f);
        fflush(p->f);
    }
    p->shown = 0;
}

void nas_progress_duration(double s, char *buf, size_t n)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

double nas_progress_eta(const nas_progress *p, double fraction)
{
    double el = nas_progress_elapsed(p);
    if (!(fraction > 0) || fraction > 1 || !(el > 0))
        return NAN;
    return el * (1 - fraction) / fraction;
}
