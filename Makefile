# nas: one way to build. `make`, `make test`, `make test-asan`, `make bench`, `make clean`.
# Every module is a folder; its .c files go into libnas.a, the CLI links it into ./nas.
# Tests are tests/test_*.c, one cmocka binary each. Flags live here and nowhere else.

BUILD    ?= build
# No -march: one binary for every x86-64 (or aarch64). The kernel layer is
# compiled once per ISA below and chosen at run time (evaluator/kern.h);
# ARCH=-march=native still works for a build that never leaves its machine.
ARCH     ?=
OPT      ?= -O2
SAN      ?=
PKGS     := jansson gsl openblas sqlite3 libprotobuf-c xgboost zlib

WARN     := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
            -Wpointer-arith -Wformat=2 -Wundef -Wno-unused-parameter
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# GSL's pkg-config names its reference CBLAS; OpenBLAS must be the one cblas_sgemm binds to.
PKG_LIBS   := $(filter-out -lgslcblas,$(shell pkg-config --libs $(PKGS) 2>/dev/null))
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=gnu11 $(ARCH) $(WARN) -pthread -fopenmp $(SAN) -I. -I$(BUILD)/gen $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -ldl -lm -pthread -fopenmp $(SAN)
TEST_LIBS := -lcmocka

MODULES  := base space evaluator predictor search runs app
LIB_SRC  := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)

# ONNX message code is generated from Debian's onnx.proto at build time, never committed.
ONNX_PROTO := /usr/include/onnx/onnx.proto
GEN_SRC  := $(BUILD)/gen/onnx/onnx.pb-c.c

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(GEN_SRC:.c=.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB      := $(BUILD)/libnas.a
SETUP    := $(BUILD)/.setup-done

.PHONY: all setup test test-asan bench bench-train bench-infer bench-search bench-mpi demo clean data
.DEFAULT_GOAL := all

all: nas

# Packages first: a fresh machine needs nothing but this Makefile and bash.
$(SETUP): scripts/setup.sh
	@mkdir -p $(BUILD)
	NAS_SKIP_DATA=1 bash scripts/setup.sh
	@touch $@

setup: $(SETUP)

data: $(SETUP)
	bash scripts/fetch-mnist.sh

# The proto comes with the packages: on a fresh machine set-up must run before
# make can look for it (plain `make -j2` there failed with "no rule").
$(ONNX_PROTO): | $(SETUP)
	@test -f $@ || { echo "$@ is missing: install Debian's libonnx-dev (scripts/setup.sh does)" >&2; exit 1; }

$(BUILD)/gen/onnx/onnx.pb-c.c $(BUILD)/gen/onnx/onnx.pb-c.h: $(ONNX_PROTO) | $(SETUP)
	@mkdir -p $(BUILD)/gen/onnx
	protoc-c --proto_path=/usr/include --c_out=$(BUILD)/gen $(ONNX_PROTO)

$(BUILD)/%.o: %.c | $(SETUP) $(BUILD)/gen/onnx/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/onnx/onnx.pb-c.o: $(BUILD)/gen/onnx/onnx.pb-c.c
	$(CC) $(filter-out -W%,$(CFLAGS)) -w -c $< -o $@

# The predictor cache's key names the engine by a checksum of its sources, so
# that a faster kernel is not predicted with the slower one's latencies.
ENGINE_SRC := $(sort $(wildcard evaluator/*.c evaluator/*.h))
ENGINE_REV := $(shell cat $(ENGINE_SRC) | cksum | cut -d' ' -f1)
$(BUILD)/app/autopred.o: CFLAGS += -DNAS_ENGINE_REV='"$(ENGINE_REV)"'
$(BUILD)/app/autopred.o: $(ENGINE_SRC)

# The kernel layer: kern_body.h compiled per ISA, each with its own flags and
# only those (nothing else may assume the CPU has them).
KERN_FLAGS_avx512 := -mavx512f -mfma -mavx2
KERN_FLAGS_avx2   := -mavx2 -mfma
KERN_FLAGS_avx512vnni := $(KERN_FLAGS_avx512) -mavx512bw -mavx512vnni
ifneq ($(findstring x86_64,$(shell $(CC) -dumpmachine)),)
$(BUILD)/evaluator/kern_avx512vnni.o: CFLAGS += $(KERN_FLAGS_avx512vnni)
$(BUILD)/evaluator/kern_avx512.o: CFLAGS += $(KERN_FLAGS_avx512)
$(BUILD)/evaluator/kern_avx2.o: CFLAGS += $(KERN_FLAGS_avx2)
endif

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/nas: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

nas: $(BUILD)/nas
	cp $(BUILD)/nas nas.tmp && mv -f nas.tmp nas   # a rename: a running ./nas keeps its file

$(BUILD)/tests/%: tests/%.c $(LIB) tests/testutil.h | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS) $(TEST_LIBS)

# The suite: every test binary, then one closing line that counts them.
test: $(BUILD)/nas $(TEST_BIN)
	@NAS_BIN=$(CURDIR)/$(BUILD)/nas bash tests/run.sh $(TEST_BIN)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build folder.
test-asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    NAS_ASAN=1 test

demo: nas
	bash scripts/demo.sh

bench: bench-train bench-infer

clean:
	rm -rf build build-asan build-arm build-fuzz nas

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# ---- search/: random, evolution and RL on Fashion-MNIST at the same joule budget per
# run, 5 seeds; final test accuracy, hypervolume and joules to reach random's best per
# strategy (knobs: see the script; about 40 minutes on 2 cores).
bench-search: nas
	/usr/bin/python3 scripts/bench_search.py

# app/: job files are read with libyaml (line numbers for every key); Debian's libyaml-dev.
LDLIBS += -lyaml

# runs/: the run store's cost per recorded evaluation.
.PHONY: bench-store
$(BUILD)/bench/bench_store: bench/bench_store.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-store: $(BUILD)/bench/bench_store
	$(BUILD)/bench/bench_store /tmp/nas-bench-store.db 2000

# search/ and runs/: the loop's bookkeeping per result at 100, 1,000 and 10,000
# evaluations (a made-up evaluator, the real loop and store); knobs:
# make bench-loop BENCH_LOOP_ARGS='--max 2000 --strategy evolution'.
.PHONY: bench-loop
$(BUILD)/bench/bench_loop: bench/bench_loop.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-loop: $(BUILD)/bench/bench_loop
	$(BUILD)/bench/bench_loop $(BENCH_LOOP_ARGS)

# ---- evaluator meters: the stand-in libnvidia-ml that tests/test_meter.c loads
# in place of NVIDIA's (built plain, without the sanitizers, as a driver would be).
$(BUILD)/tests/libfake-nvml.so: tests/fake_nvml.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -std=gnu11 -Wall -Wextra -shared -fPIC -o $@ $<
$(BUILD)/tests/test_meter: $(BUILD)/tests/libfake-nvml.so

# evaluator: inference latency and energy per inference of a few networks (needs the engine).
$(BUILD)/bench/bench_infer: bench/bench_infer.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-infer: $(BUILD)/bench/bench_infer
	$(BUILD)/bench/bench_infer

# ---- ONNX export: nas's engine against ONNX Runtime on the same exported model
# (bench/bench_ort.c: MobileNetV2-0.5 at 32x32, batch 1, 1 and 2 threads), run
# by bench-infer before the evaluator's own table; alone: make bench-ort.
# ONNX Runtime comes from npm, installed when missing (also on machines whose
# set-up ran before it was part of scripts/setup.sh).
.PHONY: bench-ort
ORT_PKG := node_modules/onnxruntime-node/package.json
$(ORT_PKG): | $(SETUP)
	bash scripts/setup-ort.sh
$(BUILD)/bench/bench_ort: bench/bench_ort.c $(LIB) | $(SETUP) $(ORT_PKG)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-ort: $(BUILD)/bench/bench_ort
	nice $(BUILD)/bench/bench_ort --out $(BUILD)/bench
bench-infer: bench-ort

# ---- int8 against float32 on Fashion-MNIST in ONNX Runtime (issue 16):
# accuracy, batch-1 latency, file size, nas int8 vs ORT int8 agreement.
# Knobs: make bench-compress BENCH_COMPRESS_ARGS='--train 20000 --epochs 2 --calib minmax'.
.PHONY: bench-compress
$(BUILD)/bench/bench_compress: bench/bench_compress.c bench/bench_machine.h $(LIB) | $(SETUP) $(ORT_PKG)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-compress: $(BUILD)/bench/bench_compress
	nice $(BUILD)/bench/bench_compress --out $(BUILD)/bench/compress $(BENCH_COMPRESS_ARGS)
$(BUILD)/tests/test_onnx $(BUILD)/tests/test_quant: | $(ORT_PKG)

# ---- nas's int8 inference beside its float engine, batch 1, 1 thread (issue 16).
# Option: make bench-qinfer BENCH_QINFER_ARGS='--spec mobilenetv2'.
.PHONY: bench-qinfer
$(BUILD)/bench/bench_qinfer: bench/bench_qinfer.c bench/bench_machine.h $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-qinfer: $(BUILD)/bench/bench_qinfer
	nice $(BUILD)/bench/bench_qinfer $(BENCH_QINFER_ARGS)

# ---- knowledge distillation on Fashion-MNIST (issue 16): a small student with
# and without a trained teacher, same seeds and epochs (bench/bench_distill.c).
# Knobs: make bench-distill BENCH_DISTILL_ARGS='--train 20000 --epochs 2 --seeds 3 --alpha 0.7 --temp 4'.
.PHONY: bench-distill
$(BUILD)/bench/bench_distill: bench/bench_distill.c bench/bench_machine.h $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-distill: $(BUILD)/bench/bench_distill
	nice $(BUILD)/bench/bench_distill $(BENCH_DISTILL_ARGS)

# predictor: calibration at full size on a made-up CPU, timing the fitting side.
$(BUILD)/bench/pred_calib: bench/pred_calib.c tests/pred_synth.h $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench-pred: $(BUILD)/bench/pred_calib
	nice $(BUILD)/bench/pred_calib 300 0.01 1
.PHONY: bench-pred

# ---- Open MPI (issue 8) --------------------------------------------------
# search/dist.c includes <mpi.h>, so every binary links libmpi; MPI_Init runs
# only when a launcher (mpirun, srun) started the process. -isystem: the
# strict warning list is for our code, not mpi.h.
MPI_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags ompi-c 2>/dev/null))
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)
CFLAGS     += $(MPI_CFLAGS)
LDLIBS     += $(MPI_LIBS)

# Candidates per hour for 1, 2 and cores+1 ranks on this machine with the real
# engine, and the scaling efficiency (scripts/bench-mpi.sh says how).
BENCH_MPI_ARGS ?= --evals 8 --images 256 --epochs 1

$(BUILD)/bench/bench_mpi: bench/bench_mpi.c $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench-mpi: $(BUILD)/bench/bench_mpi
	bash scripts/bench-mpi.sh $(BUILD)/bench/bench_mpi $(BENCH_MPI_ARGS)
# Training speed against PyTorch 1.13 on the same network, and kernel GFLOP/s (bench/bench_train.c).
# The kernel table has oneDNN beside ours (Debian's libdnnl-dev); only this binary links it.
$(BUILD)/bench/bench_train: LDLIBS += -ldnnl
$(BUILD)/bench/bench_train: bench/bench_train.c $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench-train: $(BUILD)/bench/bench_train
	$(BUILD)/bench/bench_train $(BENCH_TRAIN_ARGS)

# ---- how short a training still ranks, and whether a zero-cost score does
# (bench/bench_fidelity.c): N sampled networks of the main job's space on
# Fashion-MNIST, validation at every quarter epoch, Kendall tau of each rung
# against the final test accuracy; Spearman rho of grad_norm, snip, #params and
# MACs against it. Knobs: make bench-fidelity BENCH_FIDELITY_ARGS='--n 8 --epochs 2'.
.PHONY: bench-fidelity
BENCH_FIDELITY_ARGS ?=
$(BUILD)/bench/bench_fidelity: bench/bench_fidelity.c $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-fidelity: $(BUILD)/bench/bench_fidelity
	$(BUILD)/bench/bench_fidelity $(BENCH_FIDELITY_ARGS)

# ---- does nas's engine rank networks as ONNX Runtime would? (bench/bench_faithful.c):
# 20 + 20 sampled networks at 28x28x1 and 32x32x3, batch-1 p10 latency, 1 thread,
# in nas and in ORT, 3 passes; Kendall tau of the two rankings and the nas/ORT
# ratios. ~4-5 min on the 2-core VM. Not under nice: `nas search` measures its
# candidates at normal priority, and a niced loop on a busy machine measures the
# neighbours. Knobs: make bench-faithful BENCH_FAITHFUL_ARGS='--n 30 --seed 2'.
.PHONY: bench-faithful
BENCH_FAITHFUL_ARGS ?=
$(BUILD)/bench/bench_faithful: bench/bench_faithful.c $(LIB) | $(SETUP) $(ORT_PKG)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
bench-faithful: $(BUILD)/bench/bench_faithful
	$(BUILD)/bench/bench_faithful $(BENCH_FAITHFUL_ARGS)

# ---- ARM (aarch64): the kernel layer and its oracle tests (tests/test_kern.c)
# cross-compiled with Debian's gcc-aarch64-linux-gnu and run under qemu-user:
# the NEON and scalar levels against the oracles. Speed under emulation means
# nothing. qemu-user here cannot start threads (pthread_create never returns
# in this sandbox), so OpenMP and OpenBLAS run single-threaded under it; the
# split over threads is tested natively.
.PHONY: test-arm
ARM_CC    := aarch64-linux-gnu-gcc
ARM_BUILD := build-arm
ARM_SRC   := evaluator/kern.c evaluator/kern_neon.c evaluator/kern_scalar.c evaluator/ops.c base/err.c base/sig.c
ARM_SETUP := $(ARM_BUILD)/.setup-done
$(ARM_SETUP): scripts/setup-arm.sh
	bash scripts/setup-arm.sh
	@mkdir -p $(ARM_BUILD) && touch $@
$(ARM_BUILD)/test_kern: tests/test_kern.c $(ARM_SRC) $(wildcard evaluator/*.h) base/nas.h | $(ARM_SETUP)
	$(ARM_CC) -O2 -g -std=gnu11 $(WARN) -fopenmp -pthread -I. -I/usr/include/aarch64-linux-gnu/openblas-pthread \
	    -o $@ tests/test_kern.c $(ARM_SRC) -L/usr/lib/aarch64-linux-gnu/openblas-pthread -lopenblas -lcmocka -lm
test-arm: $(ARM_BUILD)/test_kern
	OPENBLAS_NUM_THREADS=1 OMP_THREAD_LIMIT=1 qemu-aarch64 -L /usr/aarch64-linux-gnu $<

# ---- fuzzing: one libFuzzer binary per target of fuzz/targets.c (spec, job,
# idx, cifar, pred, measure, state, settings, store read-write and read-only),
# built with Debian's
# clang-14 under ASan + UBSan, UBSan non-recoverable, in build-fuzz/ apart from
# the normal build. `make fuzz` runs each for FUZZ_SECONDS (600), and on to
# FUZZ_MIN_RUNS (a million) inputs where it has run fewer, one after
# another (FUZZ_JOBS=2: two at a time), niced; `make fuzz-smoke` each for
# FUZZ_SMOKE_SECONDS (20). Each
# starts from its seeds (fuzz/corpus/NAME) and the inputs fixed bugs were
# found with (fuzz/regress/NAME); what it finds goes to build-fuzz/corpus/NAME,
# crashes to build-fuzz/crash/ (fixed, they are copied to fuzz/regress/NAME,
# which test_fuzz_regress replays in every `make test`).
.PHONY: fuzz fuzz-smoke fuzz-build fuzz-bins fuzz-seeds
FUZZ_CC      ?= clang-14
FUZZ_BUILD   := build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_NAMES   := spec job idx cifar pred measure state settings store store-ro
FUZZ_SECONDS ?= 600
FUZZ_MIN_RUNS ?= 1000000
FUZZ_JOBS ?= 1
FUZZ_SMOKE_SECONDS ?= 20
CLI_LIB_OBJ  = $(filter-out $(BUILD)/cli/main.o,$(CLI_OBJ))

$(BUILD)/fuzz/fuzz_%: fuzz/main.c fuzz/targets.h $(BUILD)/fuzz/targets.o $(CLI_LIB_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -DFUZZ_NAME='"$*"' -o $@ fuzz/main.c $(BUILD)/fuzz/targets.o \
	    $(CLI_LIB_OBJ) $(LIB) $(LDLIBS)

fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)

fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" fuzz-bins

fuzz: fuzz-build
	FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_MIN_RUNS=$(FUZZ_MIN_RUNS) bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-smoke: fuzz-build
	bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) $(FUZZ_NAMES)

# The regressions without clang: the seed corpora and fuzz/regress replayed
# through the same targets in the normal and the ASan build.
$(BUILD)/tests/test_fuzz_regress: tests/test_fuzz_regress.c fuzz/targets.h tests/testutil.h \
                                  $(BUILD)/fuzz/targets.o $(CLI_LIB_OBJ) $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/fuzz/targets.o $(CLI_LIB_OBJ) $(LIB) $(LDLIBS) $(TEST_LIBS)

# The seed corpora (committed) are written by fuzz/mkseeds.c from nas's own
# writers and the tests' inputs; run again after a format changes.
$(BUILD)/fuzz/mkseeds: fuzz/mkseeds.c fuzz/targets.h $(CLI_LIB_OBJ) $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(CLI_LIB_OBJ) $(LIB) $(LDLIBS)
fuzz-seeds: $(BUILD)/fuzz/mkseeds
	$(BUILD)/fuzz/mkseeds fuzz/corpus

-include $(BUILD)/fuzz/targets.d

# `make test` STRESS_RUNS times in a row while stress-ng keeps every core busy.
.PHONY: test-stress
STRESS_RUNS ?= 5
test-stress: $(BUILD)/nas $(TEST_BIN)
	@bash tests/stress.sh $(STRESS_RUNS)

# ---- valgrind's memcheck over every suite but test_mpi (which starts mpirun,
# whose processes are Open MPI's to check, not ours), in the normal build.
# Memory errors and definite leaks fail a suite; tests/valgrind.supp holds the
# libraries' known reports, each with why. valgrind runs code 20-50x slower.
# OMP_WAIT_POLICY=passive: valgrind runs one thread at a time, and an OpenMP
# worker spinning for work holds it while the thread with the work waits
# (test_net did not finish in 10 CPU-minutes spinning; it takes ~15 passive).
# NAS_ISA: valgrind's CPU has no AVX-512, so a suite under it picks a lower
# kernel level than the nas it starts, which runs natively; both are held at
# AVX2 where the CPU has it (the AVX-512 kernels are left to ASan's make test).
VALGRIND_ISA := $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo avx2 || echo auto)
.PHONY: test-valgrind
VALGRIND := valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --show-leak-kinds=definite --suppressions=$(CURDIR)/tests/valgrind.supp --num-callers=40 -q
VALGRIND_TESTS = $(filter-out $(BUILD)/tests/test_mpi,$(TEST_BIN))
test-valgrind: $(BUILD)/nas $(VALGRIND_TESTS)
	@OMP_WAIT_POLICY=passive NAS_ISA=$(VALGRIND_ISA) NAS_BIN=$(CURDIR)/$(BUILD)/nas NAS_TEST_WRAP="$(VALGRIND)" bash tests/run.sh $(VALGRIND_TESTS)

# The kernel layer is no parser and no fuzz target reaches it; built
# instrumented it took clang-14 over 15 minutes on a loaded 2-core machine,
# so the fuzz build compiles it plain.
ifeq ($(BUILD),$(FUZZ_BUILD))
$(BUILD)/evaluator/kern_%.o: override SAN :=
$(BUILD)/evaluator/kern_%.o: override OPT := -O1
endif
