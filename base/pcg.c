/* pcg.c — PCG32 (XSH RR, 64-bit state, 32-bit output), after O'Neill's
 * "PCG: A Family of Simple Fast Space-Efficient Statistically Good Algorithms
 * for Random Number Generation" (2014), and its face as a GSL generator type.
 *
 * The seeding procedure follows the reference pcg32_srandom_r exactly, so the
 * published test vector (seed 42, stream 54) holds.
 */
#include "base/nas.h"

#include <gsl/gsl_rng.h>

#define PCG_MULT 6364136223846793005ULL

uint32_t nas_pcg32_next(nas_pcg32 *rng)
{
    uint64_t old = rng->state;
    rng->state = old * PCG_MULT + rng->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

void nas_pcg32_seed(nas_pcg32 *rng, uint64_t initstate, uint64_t initseq)
{
    rng->state = 0u;
    rng->inc = (initseq << 1u) | 1u;
    nas_pcg32_next(rng);
    rng->state += initstate;
    nas_pcg32_next(rng);
}

uint32_t nas_pcg32_bounded(nas_pcg32 *rng, uint32_t bound)
{
    /* Rejection below 2^32 mod bound removes the modulo bias. */
    uint32_t threshold = (-bound) % bound;
    for (;;) {
        uint32_t r = nas_pcg32_next(rng);
        if (r >= threshold)
            return r % bound;
    }
}

double nas_pcg32_double(nas_pcg32 *rng)
{
    uint64_t hi = nas_pcg32_next(rng) >> 5;   /* 27 bits */
    uint64_t lo = nas_pcg32_next(rng) >> 6;   /* 26 bits */
    return (double)(hi * 67108864.0 + lo) / 9007199254740992.0;
}

void nas_pcg32_split(nas_pcg32 *rng, nas_pcg32 *child, uint64_t tag)
{
    uint64_t s = ((uint64_t)nas_pcg32_next(rng) << 32) | nas_pcg32_next(rng);
    nas_pcg32_seed(child, s, tag * 2654435761ULL + 0x9e3779b97f4a7c15ULL);
}

/* ---- GSL generator type ------------------------------------------------ */

static void gsl_pcg_set(void *state, unsigned long seed)
{
    nas_pcg32_seed(state, seed, 54u);
}

static unsigned long gsl_pcg_get(void *state)
{
    return nas_pcg32_next(state);
}

static double gsl_pcg_get_double(void *state)
{
    /* GSL wants [0,1); 32 bits are what gsl's own 32-bit generators give. */
    return nas_pcg32_next(state) / 4294967296.0;
}

static const gsl_rng_type pcg32_type = {
    "nas-pcg32", 0xffffffffUL, 0, sizeof(nas_pcg32),
    gsl_pcg_set, gsl_pcg_get, gsl_pcg_get_double,
};

const void *nas_gsl_rng_pcg32 = &pcg32_type;

void *nas_gsl_rng_alloc(uint64_t seed, uint64_t stream)
{
    gsl_rng *r = gsl_rng_alloc(&pcg32_type);
    if (r)
        nas_pcg32_seed(r->state, seed, stream);
    return r;
}

void nas_gsl_rng_free(void *r) { gsl_rng_free(r); }

void nas_pcg32_shuffle(nas_pcg32 *rng, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)nas_pcg32_bounded(rng, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
