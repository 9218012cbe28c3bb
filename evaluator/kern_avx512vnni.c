/* kern_avx512vnni.c — kern_body.h for AVX-512F with VNNI (Zen 4, Ice Lake and
 * on): the float kernels are avx512's, the int8 pointwise conv uses vpdpbusd
 * (the Makefile adds -mavx512bw -mavx512vnni to avx512's flags for this file
 * alone; kern.c runs it only where the CPU has all three). */
#if defined(__x86_64__)
#define KERN_LEVEL KERN_AVX512
#define KERN_NAME "avx512vnni"
#define KERN_TABLE kern_table_avx512vnni
#include "evaluator/kern_body.h"
#endif
