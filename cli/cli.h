/* cli.h — the commands of `nas`. Each lives in its own cli/cmd_*.c, parses its
 * own options, prints data on stdout and messages on stderr, and returns an
 * exit code: 0 success, 2 bad usage or input, 1 any other failure. Only this
 * layer prints errors and chooses exit codes; the modules return nas_status. */
#ifndef CLI_H
#define CLI_H

#include <stdio.h>
#include "base/nas.h"

int cmd_space(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_ls(int argc, char **argv);

/* The run store every command uses unless told otherwise (--db FILE). */
#define CLI_DEFAULT_DB "runs.db"

/* Prints "nas <cmd>: <message>" to stderr and returns the exit code for st. */
int cli_fail(const char *cmd, nas_status st, const nas_err *err);
/* Prints a usage error and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Strict number parsing for options: 0 on success. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *s, double lo, double hi, double *out);
/* True when progress may be drawn: stderr is a terminal and NO_COLOR is unset. */
int cli_progress_enabled(void);

#endif
