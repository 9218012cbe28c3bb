/* kern_neon.c — kern_body.h for NEON (AdvSIMD, part of every aarch64 CPU). */
#if defined(__aarch64__)
#define KERN_LEVEL KERN_NEON
#define KERN_NAME "neon"
#define KERN_TABLE kern_table_neon
#include "evaluator/kern_body.h"
#endif
