/* simd.h — a vector of floats, defined once per instruction set.
 *
 * The kernels (kern_body.h) are written once against these names; each
 * kern_<isa>.c sets KERN_LEVEL and includes the body, and the Makefile compiles
 * that file with the ISA's flags (-mavx2 -mfma, -mavx512f, nothing for NEON on
 * aarch64 or for the scalar level). The rest of the program is built for the
 * baseline CPU and reaches these kernels only through kern.h's table, chosen at
 * run time, so one binary runs on every x86-64 at that CPU's best.
 *
 * Why a thin intrinsics layer rather than GCC's generic vectors: the kernels
 * need masked loads and stores for channel tails (a count not a multiple of
 * the width), and only the intrinsics give the cheap ones (AVX-512 masks,
 * AVX2 maskload/maskstore); everything else is one line per ISA.
 *
 *   VW               floats per vector
 *   VREGS            vector registers, for the kernels' register budgets
 *   vf, vmask        the vector and a mask of its first n lanes (vm_first(n))
 *   v_ld / v_st      unaligned full-width load / store
 *   v_ldm / v_stm    load (zeros elsewhere) / store of the masked lanes only:
 *                    lanes outside the mask are never touched, so a tail may
 *                    end at the last float of a buffer
 *   v_fma(a, b, c)   a * b + c
 */
#ifndef EV_SIMD_H
#define EV_SIMD_H

#include "evaluator/kern.h"   /* the KERN_<level> numbers */

#ifndef KERN_LEVEL
#error "KERN_LEVEL must be set by the kern_<isa>.c that includes this"
#endif

#define SIMD_INL static inline __attribute__((always_inline))

#if KERN_LEVEL == KERN_AVX512
#include <immintrin.h>
#define VW 16
#define VREGS 32
typedef __m512 vf;
typedef __mmask16 vmask;
SIMD_INL vmask vm_first(int n) { return n >= 16 ? (vmask)0xffff : (vmask)((1u << n) - 1); }
#define v_zero() _mm512_setzero_ps()
#define v_set1(x) _mm512_set1_ps(x)
#define v_ld(p) _mm512_loadu_ps(p)
#define v_st(p, v) _mm512_storeu_ps(p, v)
#define v_ldm(p, m) _mm512_maskz_loadu_ps(m, p)
#define v_stm(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define v_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define v_add(a, b) _mm512_add_ps(a, b)
#define v_mul(a, b) _mm512_mul_ps(a, b)
#define v_max(a, b) _mm512_max_ps(a, b)
#define v_min(a, b) _mm512_min_ps(a, b)

#elif KERN_LEVEL == KERN_AVX2
#include <immintrin.h>
#define VW 8
#define VREGS 16
typedef __m256 vf;
typedef __m256i vmask;
SIMD_INL vmask vm_first(int n)
{
    /* a window into eight all-ones lanes followed by eight zeros */
    static const int lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(lanes + 8 - (n >= 8 ? 8 : n)));
}
#define v_zero() _mm256_setzero_ps()
#define v_set1(x) _mm256_set1_ps(x)
#define v_ld(p) _mm256_loadu_ps(p)
#define v_st(p, v) _mm256_storeu_ps(p, v)
#define v_ldm(p, m) _mm256_maskload_ps(p, m)
#define v_stm(p, m, v) _mm256_maskstore_ps(p, m, v)
#define v_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define v_add(a, b) _mm256_add_ps(a, b)
#define v_mul(a, b) _mm256_mul_ps(a, b)
#define v_max(a, b) _mm256_max_ps(a, b)
#define v_min(a, b) _mm256_min_ps(a, b)

#elif KERN_LEVEL == KERN_NEON
#include <arm_neon.h>
#define VW 4
#define VREGS 32
typedef float32x4_t vf;
typedef int vmask;   /* the number of lanes, 0..4 */
SIMD_INL vmask vm_first(int n) { return n >= 4 ? 4 : n; }
#define v_zero() vdupq_n_f32(0.0f)
#define v_set1(x) vdupq_n_f32(x)
#define v_ld(p) vld1q_f32(p)
#define v_st(p, v) vst1q_f32(p, v)
SIMD_INL vf v_ldm(const float *p, vmask n)
{
    if (n == 4)
        return vld1q_f32(p);
    float t[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i++)
        t[i] = p[i];
    return vld1q_f32(t);
}
SIMD_INL void v_stm(float *p, vmask n, vf v)
{
    if (n == 4) {
        vst1q_f32(p, v);
        return;
    }
    float t[4];
    vst1q_f32(t, v);
    for (int i = 0; i < n; i++)
        p[i] = t[i];
}
#define v_fma(a, b, c) vfmaq_f32(c, a, b)
#define v_add(a, b) vaddq_f32(a, b)
#define v_mul(a, b) vmulq_f32(a, b)
/* x86's max(a, b) returns b when either is NaN; NEON's propagates NaN. Both
 * keep a NaN input NaN through the activations, which is all that is needed. */
#define v_max(a, b) vmaxq_f32(a, b)
#define v_min(a, b) vminq_f32(a, b)

#elif KERN_LEVEL == KERN_SCALAR
#define VW 1
#define VREGS 16
typedef float vf;
typedef int vmask;   /* 1: the lane is there */
SIMD_INL vmask vm_first(int n) { return n > 0; }
#define v_zero() 0.0f
#define v_set1(x) ((float)(x))
#define v_ld(p) (*(p))
#define v_st(p, v) (*(p) = (v))
#define v_ldm(p, m) ((m) ? *(p) : 0.0f)
#define v_stm(p, m, v) ((m) ? (void)(*(p) = (v)) : (void)0)
#define v_fma(a, b, c) ((a) * (b) + (c))
#define v_add(a, b) ((a) + (b))
#define v_mul(a, b) ((a) * (b))
#define v_max(a, b) ((a) > (b) ? (a) : (b))
#define v_min(a, b) ((a) < (b) ? (a) : (b))

#else
#error "unknown KERN_LEVEL"
#endif

#endif
