/* progress.h — one status line for long work (a search, a calibration), fed
 * by the loops' callbacks as often as they like; it decides when to draw. On
 * a terminal the line is redrawn in place a few times a second; elsewhere (a
 * log file, a --json run) a plain line is written every few seconds. It
 * writes only to the stream it was given (stderr: stdout stays data). */
#ifndef NAS_PROGRESS_H
#define NAS_PROGRESS_H

#include <stdio.h>

typedef struct {
    FILE *f;
    int tty;                  /* 1: redraw in place; 0: whole lines, every every_s */
    double every_s;           /* off a terminal: seconds between lines */
    double (*now)(void);      /* the clock (tests set their own); default nas_now */
    double t0, last;          /* started, last drawn (-inf: never) */
    int shown;                /* a line is on the terminal, not yet cleared */
} nas_progress;

/* tty: draw in place (isatty and no NO_COLOR, as the CLI decides). */
void nas_progress_init(nas_progress *p, FILE *f, int tty, double every_s);
/* Seconds since init. */
double nas_progress_elapsed(const nas_progress *p);
/* 1 when a call of nas_progress_show now would draw. */
int nas_progress_due(const nas_progress *p);
/* The status, drawn when due: callers may call it after every step. */
void nas_progress_show(nas_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Before any other message on the same stream: wipes the line on a terminal. */
void nas_progress_clear(nas_progress *p);
/* "42s", "3m05s", "1h02m"; "?" when unknown. */
void nas_progress_duration(double seconds, char *buf, size_t n);
/* Seconds left when fraction of the work is done after the elapsed time: NAN when unknown. */
double nas_progress_eta(const nas_progress *p, double fraction);

#endif
