/*
 * AVX-512 intrinsics for the avx512 level's sources (mk_avx512.c,
 * epilogue_avx512.c), compiled one of two ways:
 *
 * - natively: <immintrin.h>, each function compiled for AVX-512 F, BW, VL and
 *   VPOPCNTDQ by its target attribute (BNN_AVX512), so the core still runs on
 *   any x86-64 and the functions are only called when the CPU has all four;
 * - with BNN_EMULATE_AVX512 defined: against SIMD Everywhere (SIMDe,
 *   header-only, Debian's libsimde-dev), which implements the same intrinsics
 *   in portable code. The tests build these sources that way and compare them
 *   with NumPy on machines without AVX-512.
 *
 * The few intrinsics SIMDe 0.7 lacks are wrapped here (bnn512_*).
 */
#ifndef BNN_SIMD512_H
#define BNN_SIMD512_H

#include <stdint.h>

#if defined(BNN_EMULATE_AVX512)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define BNN_HAVE_AVX512 1
#define BNN_AVX512
#define BNN_AVX512_INLINE static inline
/* Four float vectors of 8 from 16 int32 (SIMDe 0.7 has no 512-bit form). */
static inline __m512 bnn512_cvtepi32_ps(__m512i v) {
    const __m256 lo = _mm256_cvtepi32_ps(_mm512_castsi512_si256(v));
    const __m256 hi = _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(v, 1));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}
/* Non-temporal store: a plain store in emulation. */
#define bnn512_stream_ps(p, v) _mm512_storeu_ps((p), (v))
#elif defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BNN_HAVE_AVX512 1
#define BNN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq")))
#define BNN_AVX512_INLINE static inline __attribute__((always_inline)) BNN_AVX512
#define bnn512_cvtepi32_ps(v) _mm512_cvtepi32_ps(v)
#define bnn512_stream_ps(p, v) _mm512_stream_ps((p), (v))
#else
#define BNN_HAVE_AVX512 0
#endif

#endif
