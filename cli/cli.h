/* cli.h — the commands of `nas`. Each lives in its own cli/cmd_*.c, parses its
 * own options, prints data on stdout and messages on stderr, and returns an
 * exit code: 0 success, 2 bad usage or input, 1 any other failure. Only this
 * layer prints errors and chooses exit codes; the modules return nas_status. */
#ifndef CLI_H
#define CLI_H

#include <stdio.h>
#include "app/app.h"
#include "base/nas.h"
#include "evaluator/ev.h"

int cmd_space(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
/* `nas export RUN --top 1 --out DIR --force [--int8]` without an argv: the
 * search's end exports its chosen model with it (int8: the quantized model
 * too; NULL: none). Returns the exit code. */
int cli_export_top(const char *run, const char *db_path, const char *out, const ev_quant_opts *int8);
int cmd_report(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_prune(int argc, char **argv);

/* The run store every command uses unless told otherwise (--db FILE). */
#define CLI_DEFAULT_DB APP_DEFAULT_DB

/* Flags of command `which` (APP_SEARCH, APP_CALIBRATE) into s, which holds the
 * defaults or earlier settings: -1 when fine, else the exit code (0 after
 * --help, which usage printed; 2 after a usage error, printed). */
int cli_flags_parse(const char *cmd, int which, int argc, char **argv, app_settings *s, void (*usage)(FILE *));
/* `nas calibrate` with settings s (flags or a job file's); the exit code. */
int cli_calibrate_run(const app_settings *s);
/* app_settings_check, printed as a usage error: -1 when fine, else 2. */
int cli_settings_check(const char *cmd, int which, const app_settings *s);

/* Prints a JSON report on stdout and releases it (root may be NULL, as
 * after a failed json_pack): 0, or -1 when it could not be built or written. */
struct json_t;
int cli_print_json(struct json_t *root, size_t flags);
/* A pruning's figures as a JSON object (a search's --json carries it as "prune"). */
struct json_t *cli_prune_json(const app_prune_result *r);

/* Prints "nas <cmd>: <message>" to stderr and returns the exit code for st. */
int cli_fail(const char *cmd, nas_status st, const nas_err *err);
/* Prints a usage error and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Strict number parsing for options: 0 on success. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *s, double lo, double hi, double *out);
/* The training flags `nas train` and `nas prune` share: --epochs (from
 * epochs_min), --batch, --lr, --threads, --seed, --subset, and distillation's
 * --kd-alpha and --kd-temp. Returns -1 when a is none of them, 0 when parsed
 * into f, else the usage error's exit code. */
typedef struct {
    long epochs, batch, threads, seed, subset, epochs_min;
    double lr, kd_alpha, kd_temp;
} cli_train_flags;
#define CLI_KD_HELP \
    "  --kd-alpha A      distillation: the weight of the teacher's soft targets, 0..1 (default 0.7)\n" \
    "  --kd-temp T       distillation: the softmax temperature of both, 1..100 (default 4)\n"
int cli_train_flag(const char *cmd, const char *a, const char *v, cli_train_flags *f);
/* What `nas prune` prints of a pruning: words on stderr, key-value lines on stdout. */
void cli_prune_print(const app_prune_result *r);


/* True when progress may be drawn: stderr is a terminal and NO_COLOR is unset. */
int cli_progress_enabled(void);

#endif
