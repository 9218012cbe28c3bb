/* kern_scalar.c — kern_body.h one float at a time, for any CPU: the level
 * that runs where no vector level does, and the one NAS_ISA=scalar forces. */
#define KERN_LEVEL KERN_SCALAR
#define KERN_NAME "scalar"
#define KERN_TABLE kern_table_scalar
#include "evaluator/kern_body.h"
