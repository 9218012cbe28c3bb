/* targets.h — the fuzz targets: one per input a user or a file can hand nas
 * (a spec, a job file, IDX and CIFAR-10 data, a predictor file, the search
 * state and settings saved in a run store, a measuring command's output, a
 * run store itself). Each takes any bytes and returns 0; it must never crash,
 * leak, hang or trip a sanitizer. Where a parser accepts its input, the
 * target also checks the parser's promise (what loads saves, and what is saved
 * loads back the same) and aborts when it is broken, so that libFuzzer
 * reports it as a crash.
 *
 * The same functions run under libFuzzer (fuzz/main.c, `make fuzz`) and
 * under cmocka (tests/test_fuzz_regress.c, `make test`), which replays the
 * seed corpora and every input the fuzzers found (fuzz/regress/TARGET/). */
#ifndef FUZZ_TARGETS_H
#define FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;                              /* fuzz/corpus/NAME, fuzz/regress/NAME */
    int (*run)(const uint8_t *data, size_t size);
    size_t max_len;                                /* libFuzzer's -max_len for it */
} fuzz_target;

extern const fuzz_target fuzz_targets[];
extern const int fuzz_n_targets;
/* NULL when there is none of that name. */
const fuzz_target *fuzz_target_find(const char *name);

/* The inputs' layouts, for tools that write seeds (fuzz/mkseeds.c): idx is
 * three 16-bit big-endian lengths (train images, train labels, test images)
 * then the four files' bytes back to back (the test labels take the rest);
 * cifar10 is a byte n (batches = n % 5 + 1, then the test batch), n - 1 ...
 * 16-bit lengths, then the batches (the test batch takes the rest). */
#define FUZZ_SPLIT_MAX 6

#endif
