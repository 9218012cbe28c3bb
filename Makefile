# nas: one way to build. `make`, `make test`, `make test-asan`, `make bench`, `make clean`.
# Every module is a folder; its .c files go into libnas.a, the CLI links it into ./nas.
# Tests are tests/test_*.c, one cmocka binary each. Flags live here and nowhere else.

BUILD    ?= build
ARCH     ?= -march=native
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

MODULES  := base space evaluator predictor search runs
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

$(BUILD)/gen/onnx/onnx.pb-c.c $(BUILD)/gen/onnx/onnx.pb-c.h: $(ONNX_PROTO) | $(SETUP)
	@mkdir -p $(BUILD)/gen/onnx
	protoc-c --proto_path=/usr/include --c_out=$(BUILD)/gen $(ONNX_PROTO)

$(BUILD)/%.o: %.c | $(SETUP) $(BUILD)/gen/onnx/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/onnx/onnx.pb-c.o: $(BUILD)/gen/onnx/onnx.pb-c.c
	$(CC) $(filter-out -W%,$(CFLAGS)) -w -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/nas: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

nas: $(BUILD)/nas
	cp $(BUILD)/nas nas

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
	rm -rf build build-asan nas

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# Training speed against PyTorch 1.13 on the same network, and kernel GFLOP/s (bench/bench_train.c).
$(BUILD)/bench/bench_train: bench/bench_train.c $(LIB) | $(SETUP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench-train: $(BUILD)/bench/bench_train
	$(BUILD)/bench/bench_train $(BENCH_TRAIN_ARGS)
