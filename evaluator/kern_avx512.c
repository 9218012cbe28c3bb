/* kern_avx512.c — kern_body.h for AVX-512F (the Makefile adds -mavx512f -mfma
 * to this file alone; kern.c runs it only where the CPU has AVX-512F). */
#if defined(__x86_64__)
#define KERN_LEVEL KERN_AVX512
#define KERN_NAME "avx512"
#define KERN_TABLE kern_table_avx512
#include "evaluator/kern_body.h"
#endif
