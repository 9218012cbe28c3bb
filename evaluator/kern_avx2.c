/* kern_avx2.c — kern_body.h for AVX2 + FMA (the Makefile adds -mavx2 -mfma to
 * this file alone; kern.c runs it only where the CPU has both). */
#if defined(__x86_64__)
#define KERN_LEVEL KERN_AVX2
#define KERN_NAME "avx2"
#define KERN_TABLE kern_table_avx2
#include "evaluator/kern_body.h"
#endif
