/* main.c — libFuzzer's entry into one target of targets.c, the one named by
 * FUZZ_NAME at compile time (the Makefile builds one binary per target). */
#include "fuzz/targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const fuzz_target *target;

/* libFuzzer reads its flags after this returns, so the target's input size
 * limit, kept in its table, is given here unless the command line sets one. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    target = fuzz_target_find(FUZZ_NAME);
    if (!target) {
        fprintf(stderr, "fuzz: no target named %s\n", FUZZ_NAME);
        abort();
    }
    for (int i = 1; i < *argc; i++)
        if (!strncmp((*argv)[i], "-max_len=", 9))
            return 0;
    static char flag[40];
    static char **args;
    snprintf(flag, sizeof flag, "-max_len=%zu", target->max_len);
    args = calloc((size_t)*argc + 2, sizeof *args);
    if (!args)
        return 0;
    memcpy(args, *argv, (size_t)*argc * sizeof *args);
    args[(*argc)++] = flag;
    *argv = args;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return target->run(data, size);
}
