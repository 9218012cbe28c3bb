/* train_export.h — `nas train ... --export FILE.onnx` (cli/train_export.c):
 * the few calls cmd_train.c makes, so that the export's metadata lives beside
 * the export and not inside the training command. */
#ifndef CLI_TRAIN_EXPORT_H
#define CLI_TRAIN_EXPORT_H

#include "evaluator/ev.h"

typedef struct {
    const char *path;       /* FILE.onnx; NULL: no export */
    int force, keep_bn;
    long epochs, batch, seed, threads;
    double lr;
} cli_train_export_opts;

/* Before training: makes the file's folder, and refuses an existing file
 * unless force, so no training is wasted on an export that would fail. */
NAS_MUST_USE nas_status cli_train_export_check(const cli_train_export_opts *o, nas_err *err);
/* After training: the model, its spec JSON and model card (test accuracy and
 * the training recipe in the metadata). */
NAS_MUST_USE nas_status cli_train_export(const cli_train_export_opts *o, const ev_net *net,
                                         const space_spec *spec, const ev_data *data,
                                         const ev_train_result *r, nas_err *err);

#endif
