/*
 * The AVX-512 binary micro-kernel: XOR, VPOPCNTQ and 64-bit adds.
 *
 * Same contract as the other micro-kernels (bnn.h): rows x 4-channel panels,
 * word k of a panel's 4 channels stored contiguously, so one 512-bit load
 * reads words k and k+1 of the 4 channels (lanes 0-3: word k, lanes 4-7: word
 * k+1). Each row contributes the matching vector (word k in lanes 0-3, word
 * k+1 in lanes 4-7, one load and one permute per row and word pair, shared by
 * the NP panels of a step), so every 64-bit lane accumulates one (row,
 * channel) pair over even or odd words and no counters overflow. A tile is MR
 * rows x NP panels: 4 x 4 (16 accumulators, 64 popcounts of 512 bits per 4
 * rows, 4 permutes) or, for single rows (dense layers at batch 1), 1 x 8.
 *
 * An odd word count ends with one word: the last word of two panels (4
 * channels each, one 512-bit vector) against the row word in all 8 lanes,
 * added after the even and odd halves are folded, so the tail costs half a
 * step. The folding (two 128-bit-lane shuffles and an add per two panels)
 * gives 8 64-bit counts, narrowed to int32 and stored as kbits - 2 * count.
 *
 * Built natively or against SIMDe (BNN_EMULATE_AVX512; see simd512.h).
 */
#include <stddef.h>
#include <stdint.h>

#include "bnn.h"
#include "simd512.h"

#if BNN_HAVE_AVX512

/* MR rows x NP panels (np <= NP of them real; the others repeat the last
 * real one and are not stored), all kw words. */
BNN_AVX512_INLINE void mk512_tile(const uint64_t *const *a, const uint64_t *panel0, int np,
                                  const int kw, int32_t kbits, int32_t *dots, int ldd,
                                  const int MR, const int NP) {
    const uint64_t *b[8];
    for (int q = 0; q < NP; q++) b[q] = panel0 + (size_t)(q < np ? q : np - 1) * kw * 4;
    const __m512i dup = _mm512_set_epi64(1, 1, 1, 1, 0, 0, 0, 0);
    __m512i acc[4][8];
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int q = 0; q < NP; q++) acc[i][q] = _mm512_setzero_si512();
    __m512i r[4];
    for (int i = 0; i < 4; i++) r[i] = _mm512_setzero_si512();
    int k = 0;
    for (; k + 2 <= kw; k += 2) {
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++)
            r[i] = _mm512_permutexvar_epi64(
                dup, _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(a[i] + k))));
#pragma GCC unroll 8
        for (int q = 0; q < NP; q++) {
            const __m512i w = _mm512_loadu_si512((const void *)(b[q] + 4 * k));
#pragma GCC unroll 4
            for (int i = 0; i < MR; i++)
                acc[i][q] =
                    _mm512_add_epi64(acc[i][q], _mm512_popcnt_epi64(_mm512_xor_si512(r[i], w)));
        }
    }
    /* Fold even and odd words: panels q and q+1 -> 8 counts (4 + 4). */
    __m512i cnt[4][4];
    for (int i = 0; i < MR; i++)
        for (int q = 0; q < NP; q += 2) {
            const __m512i x = acc[i][q], y = acc[i][q + 1];
            cnt[i][q / 2] = _mm512_add_epi64(_mm512_shuffle_i32x4(x, y, 0x44),
                                             _mm512_shuffle_i32x4(x, y, 0xEE));
        }
    if (k < kw) { /* the last, unpaired word */
        for (int q = 0; q < NP; q += 2) {
            const __m512i w = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b[q] + 4 * k))),
                _mm256_loadu_si256((const __m256i *)(b[q + 1] + 4 * k)), 1);
            for (int i = 0; i < MR; i++) {
                const __m512i x = _mm512_set1_epi64((long long)a[i][k]);
                cnt[i][q / 2] = _mm512_add_epi64(cnt[i][q / 2],
                                                 _mm512_popcnt_epi64(_mm512_xor_si512(x, w)));
            }
        }
    }
    const __m256i kb = _mm256_set1_epi32(kbits);
    for (int i = 0; i < MR; i++)
        for (int q = 0; q < NP && q < np; q += 2) {
            const __m256i c = _mm512_cvtepi64_epi32(cnt[i][q / 2]);
            const __m256i d = _mm256_sub_epi32(kb, _mm256_slli_epi32(c, 1));
            int32_t *out = dots + (size_t)i * ldd + 4 * q;
            if (q + 1 < np)
                _mm256_storeu_si256((__m256i *)out, d);
            else
                _mm_storeu_si128((__m128i *)out, _mm256_castsi256_si128(d));
        }
}

/* All panels for MR rows, NP at a time. */
BNN_AVX512_INLINE void mk512_rows(const uint64_t *const *a, const uint64_t *panels, int npan,
                                  const int kw, int32_t kbits, int32_t *dots, int ldd,
                                  const int MR, const int NP) {
    for (int p = 0; p < npan; p += NP) {
        const int np = npan - p < NP ? npan - p : NP;
        mk512_tile(a, panels + (size_t)p * kw * 4, np, kw, kbits, dots + 4 * p, ldd, MR,
                   NP);
    }
}

BNN_AVX512_INLINE void mk512_body(const uint64_t *const *a, int mr, const uint64_t *panels,
                                  int npan, const int kw, int32_t kbits, int32_t *dots,
                                  int ldd) {
    switch (mr) {
        case 1:
            mk512_rows(a, panels, npan, kw, kbits, dots, ldd, 1, 8);
            break;
        case 2:
            mk512_rows(a, panels, npan, kw, kbits, dots, ldd, 2, 4);
            break;
        case 3:
            mk512_rows(a, panels, npan, kw, kbits, dots, ldd, 3, 4);
            break;
        default:
            mk512_rows(a, panels, npan, kw, kbits, dots, ldd, 4, 4);
            break;
    }
}

/* 3x3 convolutions over 64, 128 and 256 channels (9, 18 and 36 words) get
 * copies with the trip count known at compile time. */
BNN_AVX512 void bnn_mk_avx512(const uint64_t *const *a, int mr, const uint64_t *panels,
                              int npan, int kw, int32_t kbits, int32_t *dots, int ldd) {
    if (kw == 9)
        mk512_body(a, mr, panels, npan, 9, kbits, dots, ldd);
    else if (kw == 18)
        mk512_body(a, mr, panels, npan, 18, kbits, dots, ldd);
    else if (kw == 36)
        mk512_body(a, mr, panels, npan, 36, kbits, dots, ldd);
    else
        mk512_body(a, mr, panels, npan, kw, kbits, dots, ldd);
}

#endif
