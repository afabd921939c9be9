/* Row packing: sign bits of float rows (portable C and AVX2), and the
 * half-split rows of the AVX2 micro-kernel. */
#include <stdint.h>

#include "bnn.h"

#if BNN_X86
#include <immintrin.h>
#endif

#define NIBBLES 0x0f0f0f0f0f0f0f0fULL

void bnn_split_row(const uint64_t *src, int kw, uint64_t *dst) {
    for (int k = 0; k < kw; k++) {
        const uint64_t v = src[k];
        dst[2 * k] = v & NIBBLES;
        dst[2 * k + 1] = (v >> 4) & NIBBLES;
    }
}

void bnn_pack_row_portable(const float *x, int n, uint64_t *out) {
    for (int c = 0; c < n; c += 64) {
        const int m = n - c < 64 ? n - c : 64;
        uint64_t bits = 0;
        for (int b = 0; b < m; b++) bits |= (uint64_t)(x[c + b] < 0.0f) << b;
        out[c >> 6] = bits;
    }
}

#if BNN_X86
__attribute__((target("avx2"))) void bnn_pack_row_avx2(const float *x, int n,
                                                       uint64_t *out) {
    const __m256 zero = _mm256_setzero_ps();
    int c = 0;
    for (; c + 64 <= n; c += 64) {
        uint64_t bits = 0;
        for (int q = 0; q < 8; q++) {
            const __m256 v = _mm256_loadu_ps(x + c + 8 * q);
            const unsigned m =
                (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
            bits |= (uint64_t)m << (8 * q);
        }
        out[c >> 6] = bits;
    }
    if (c < n) {
        uint64_t bits = 0;
        for (int b = 0; c + b < n; b++) bits |= (uint64_t)(x[c + b] < 0.0f) << b;
        out[c >> 6] = bits;
    }
}
#endif
