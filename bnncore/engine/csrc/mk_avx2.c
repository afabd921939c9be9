/* The AVX2 binary micro-kernels: popcount by nibble lookup (vpshufb). */
#include <stddef.h>
#include <stdint.h>

#include "bnn.h"

#if BNN_X86
#include <immintrin.h>

/* Byte-wise popcount of v added to the byte accumulator acc. */
#define POP_ACC(acc, v)                                                         \
    do {                                                                        \
        __m256i lo_ = _mm256_and_si256((v), nib);                               \
        __m256i hi_ = _mm256_and_si256(_mm256_srli_epi16((v), 4), nib);         \
        (acc) = _mm256_add_epi8(                                                \
            (acc), _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo_),               \
                                   _mm256_shuffle_epi8(lut, hi_)));             \
    } while (0)

/*
 * 4 rows x 2 panels (8 channels). Each step broadcasts one word of a row to
 * the 4 lanes and XORs it with word k of 4 channels, so every 64-bit lane
 * accumulates one (row, channel) pair and no horizontal sum is needed. Byte
 * counters gain at most 8 per word, so they are folded into 64-bit totals
 * (vpsadbw) every 31 words.
 *
 * HALF (a compile-time constant at each call): rows arrive "half-split", each
 * word a as its low nibbles (a & 0x0f0f...) at a[2k] and high nibbles
 * ((a >> 4) & 0x0f0f...) at a[2k+1] (bnn_split_row, once per row), and each
 * weight vector is split once for the 4 rows; the popcount of a XOR b is then
 * lut[a_lo ^ b_lo] + lut[a_hi ^ b_hi] per byte: 2 XORs, 2 lookups and 2 adds
 * per 256 bits instead of 8 operations.
 */
#define LUT_NIBBLES                                                             \
    _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, \
                     1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4)

/* Word k of a row as one 64-bit value (joined back from its halves). */
#define ROW_WORD(a, k, half) ((half) ? ((a)[2 * (k)] | ((a)[2 * (k) + 1] << 4)) : (a)[k])

/* One row against 4 panels (16 channels) at a time: batch-1 dense layers. */
__attribute__((target("avx2"), always_inline)) static inline void mk_avx2_row(
    const uint64_t *a0, const uint64_t *panels, int npan, int kw, int32_t kbits,
    int32_t *dots, const int half) {
    const __m256i lut = LUT_NIBBLES;
    const __m256i nib = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    for (int p = 0; p < npan; p += 4) {
        const int np = npan - p < 4 ? npan - p : 4;
        const uint64_t *b[4];
        for (int q = 0; q < 4; q++) b[q] = panels + (size_t)(p + (q < np ? q : 0)) * kw * 4;
        __m256i t0 = zero, t1 = zero, t2 = zero, t3 = zero;
        for (int k0 = 0; k0 < kw; k0 += 31) {
            const int k1 = k0 + 31 < kw ? k0 + 31 : kw;
            __m256i c0 = zero, c1 = zero, c2 = zero, c3 = zero;
            for (int k = k0; k < k1; k++) {
                const __m256i x = _mm256_set1_epi64x((long long)ROW_WORD(a0, k, half));
                __m256i v = _mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(b[0] + 4 * k)));
                POP_ACC(c0, v);
                v = _mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(b[1] + 4 * k)));
                POP_ACC(c1, v);
                v = _mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(b[2] + 4 * k)));
                POP_ACC(c2, v);
                v = _mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(b[3] + 4 * k)));
                POP_ACC(c3, v);
            }
            t0 = _mm256_add_epi64(t0, _mm256_sad_epu8(c0, zero));
            t1 = _mm256_add_epi64(t1, _mm256_sad_epu8(c1, zero));
            t2 = _mm256_add_epi64(t2, _mm256_sad_epu8(c2, zero));
            t3 = _mm256_add_epi64(t3, _mm256_sad_epu8(c3, zero));
        }
        const __m256i t[4] = {t0, t1, t2, t3};
        for (int q = 0; q < np; q++) {
            uint64_t cnt[4];
            _mm256_storeu_si256((__m256i *)cnt, t[q]);
            int32_t *d = dots + 4 * (p + q);
            for (int j = 0; j < 4; j++) d[j] = kbits - 2 * (int32_t)cnt[j];
        }
    }
}

/* Adds the popcounts of (row word XOR w0) and (row word XOR w1) to cA, cB. */
#define ROW_STEP(ai, cA, cB)                                                          \
    do {                                                                              \
        if (half) {                                                                   \
            const __m256i xl = _mm256_set1_epi64x((long long)(ai)[2 * k]);            \
            const __m256i xh = _mm256_set1_epi64x((long long)(ai)[2 * k + 1]);        \
            (cA) = _mm256_add_epi8((cA), _mm256_add_epi8(                             \
                       _mm256_shuffle_epi8(lut, _mm256_xor_si256(xl, w0l)),           \
                       _mm256_shuffle_epi8(lut, _mm256_xor_si256(xh, w0h))));         \
            (cB) = _mm256_add_epi8((cB), _mm256_add_epi8(                             \
                       _mm256_shuffle_epi8(lut, _mm256_xor_si256(xl, w1l)),           \
                       _mm256_shuffle_epi8(lut, _mm256_xor_si256(xh, w1h))));         \
        } else {                                                                      \
            const __m256i x = _mm256_set1_epi64x((long long)(ai)[k]);                 \
            __m256i v = _mm256_xor_si256(x, w0);                                      \
            POP_ACC(cA, v);                                                           \
            v = _mm256_xor_si256(x, w1);                                              \
            POP_ACC(cB, v);                                                           \
        }                                                                             \
    } while (0)

__attribute__((target("avx2"), always_inline)) static inline void mk_avx2_body(
    const uint64_t *const *a, int mr, const uint64_t *panels, int npan, const int kw,
    int32_t kbits, int32_t *dots, int ldd, const int half) {
    const __m256i lut = LUT_NIBBLES;
    const __m256i nib = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    if (mr == 1) {
        mk_avx2_row(a[0], panels, npan, kw, kbits, dots, half);
        return;
    }
    const uint64_t *a0 = a[0];
    const uint64_t *a1 = mr > 1 ? a[1] : a0;
    const uint64_t *a2 = mr > 2 ? a[2] : a0;
    const uint64_t *a3 = mr > 3 ? a[3] : a0;
    for (int p = 0; p < npan; p += 2) {
        const int two = p + 1 < npan;
        const uint64_t *b0 = panels + (size_t)p * kw * 4;
        const uint64_t *b1 = two ? b0 + (size_t)kw * 4 : b0;
        __m256i t[8];
        for (int k0 = 0; k0 < kw; k0 += 31) {
            const int k1 = k0 + 31 < kw ? k0 + 31 : kw;
            __m256i c00 = zero, c01 = zero, c10 = zero, c11 = zero;
            __m256i c20 = zero, c21 = zero, c30 = zero, c31 = zero;
            for (int k = k0; k < k1; k++) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)(b0 + 4 * k));
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(b1 + 4 * k));
                const __m256i w0l = _mm256_and_si256(w0, nib);
                const __m256i w0h = _mm256_and_si256(_mm256_srli_epi16(w0, 4), nib);
                const __m256i w1l = _mm256_and_si256(w1, nib);
                const __m256i w1h = _mm256_and_si256(_mm256_srli_epi16(w1, 4), nib);
                ROW_STEP(a0, c00, c01);
                ROW_STEP(a1, c10, c11);
                ROW_STEP(a2, c20, c21);
                ROW_STEP(a3, c30, c31);
            }
            const __m256i s[8] = {
                _mm256_sad_epu8(c00, zero), _mm256_sad_epu8(c01, zero),
                _mm256_sad_epu8(c10, zero), _mm256_sad_epu8(c11, zero),
                _mm256_sad_epu8(c20, zero), _mm256_sad_epu8(c21, zero),
                _mm256_sad_epu8(c30, zero), _mm256_sad_epu8(c31, zero)};
            /* Short dot products (kw <= 31) need no running totals. */
            for (int q = 0; q < 8; q++) t[q] = k0 == 0 ? s[q] : _mm256_add_epi64(t[q], s[q]);
        }
        /* Low 32 bits of each 64-bit count, 8 channels per row, in one store. */
        const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        const __m256i kb = _mm256_set1_epi32(kbits);
        for (int i = 0; i < mr; i++) {
            const __m128i lo =
                _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(t[2 * i], idx));
            const __m128i hi =
                _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(t[2 * i + 1], idx));
            const __m256i cnt = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
            const __m256i d = _mm256_sub_epi32(kb, _mm256_slli_epi32(cnt, 1));
            int32_t *out = dots + (size_t)i * ldd + 4 * p;
            if (two)
                _mm256_storeu_si256((__m256i *)out, d);
            else
                _mm_storeu_si128((__m128i *)out, _mm256_castsi256_si128(d));
        }
    }
}
#undef ROW_STEP

/* Dot products of 3x3 convolutions over 64 and 128 channels (9 and 18 words)
 * get their own copies with the trip count known at compile time. */
#define DEFINE_AVX2_KERNEL(NAME, HALF)                                               \
    __attribute__((target("avx2"))) void NAME(                                       \
        const uint64_t *const *a, int mr, const uint64_t *panels, int npan, int kw,  \
        int32_t kbits, int32_t *dots, int ldd) {                                     \
        if (kw == 9)                                                                 \
            mk_avx2_body(a, mr, panels, npan, 9, kbits, dots, ldd, HALF);            \
        else if (kw == 18)                                                           \
            mk_avx2_body(a, mr, panels, npan, 18, kbits, dots, ldd, HALF);           \
        else                                                                         \
            mk_avx2_body(a, mr, panels, npan, kw, kbits, dots, ldd, HALF);           \
    }

DEFINE_AVX2_KERNEL(bnn_mk_avx2, 0)
DEFINE_AVX2_KERNEL(bnn_mkh_avx2, 1)
#endif

