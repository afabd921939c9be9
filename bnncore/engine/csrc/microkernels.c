/* Popcount micro-kernels: AVX2 (nibble lookup), hardware POPCNT, portable. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bnn.h"

#if defined(__x86_64__) || defined(__i386__)
#define BNN_X86 1
#include <immintrin.h>
#else
#define BNN_X86 0
#endif

static int g_kernel = KERNEL_AUTO;

int bnn_cpu_has_avx2(void) {
#if BNN_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

int bnn_cpu_has_popcnt(void) {
#if BNN_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt") ? 1 : 0;
#else
    return 0;
#endif
}

int bnn_active_kernel(void) {
    if (g_kernel != KERNEL_AUTO) return g_kernel;
    if (bnn_cpu_has_avx2()) return KERNEL_AVX2;
    if (bnn_cpu_has_popcnt()) return KERNEL_POPCNT;
    return KERNEL_GENERIC;
}

void bnn_force_kernel(int kernel) { g_kernel = kernel; }

const char *bnn_kernel_name(int kernel) {
    switch (kernel) {
        case KERNEL_AVX2:
            return "avx2";
        case KERNEL_POPCNT:
            return "popcnt";
        default:
            return "generic";
    }
}

#define DEFINE_SCALAR_KERNEL(NAME, ATTR)                                        \
    ATTR static void NAME(const uint64_t *const *a, int mr,                     \
                          const uint64_t *panels, int npan, int kw,             \
                          int32_t kbits, int32_t *dots, int ldd) {              \
        for (int p = 0; p < npan; p++) {                                        \
            const uint64_t *b = panels + (size_t)p * kw * 4;                    \
            for (int i = 0; i < mr; i++) {                                      \
                const uint64_t *ai = a[i];                                      \
                uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;                        \
                for (int k = 0; k < kw; k++) {                                  \
                    uint64_t x = ai[k];                                         \
                    c0 += (uint64_t)__builtin_popcountll(x ^ b[4 * k]);         \
                    c1 += (uint64_t)__builtin_popcountll(x ^ b[4 * k + 1]);     \
                    c2 += (uint64_t)__builtin_popcountll(x ^ b[4 * k + 2]);     \
                    c3 += (uint64_t)__builtin_popcountll(x ^ b[4 * k + 3]);     \
                }                                                               \
                int32_t *d = dots + (size_t)i * ldd + 4 * p;                    \
                d[0] = kbits - 2 * (int32_t)c0;                                 \
                d[1] = kbits - 2 * (int32_t)c1;                                 \
                d[2] = kbits - 2 * (int32_t)c2;                                 \
                d[3] = kbits - 2 * (int32_t)c3;                                 \
            }                                                                   \
        }                                                                       \
    }

DEFINE_SCALAR_KERNEL(mk_generic, )
#if BNN_X86
DEFINE_SCALAR_KERNEL(mk_popcnt, __attribute__((target("popcnt"))))

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
    __attribute__((target("avx2"))) static void NAME(                                \
        const uint64_t *const *a, int mr, const uint64_t *panels, int npan, int kw,  \
        int32_t kbits, int32_t *dots, int ldd) {                                     \
        if (kw == 9)                                                                 \
            mk_avx2_body(a, mr, panels, npan, 9, kbits, dots, ldd, HALF);            \
        else if (kw == 18)                                                           \
            mk_avx2_body(a, mr, panels, npan, 18, kbits, dots, ldd, HALF);           \
        else                                                                         \
            mk_avx2_body(a, mr, panels, npan, kw, kbits, dots, ldd, HALF);           \
    }

DEFINE_AVX2_KERNEL(mk_avx2, 0)
DEFINE_AVX2_KERNEL(mkh_avx2, 1)
#endif

#define NIBBLES 0x0f0f0f0f0f0f0f0fULL

void bnn_split_row(const uint64_t *src, int kw, uint64_t *dst) {
    for (int k = 0; k < kw; k++) {
        const uint64_t v = src[k];
        dst[2 * k] = v & NIBBLES;
        dst[2 * k + 1] = (v >> 4) & NIBBLES;
    }
}

microkernel_t bnn_microkernel_half(int kernel) {
#if BNN_X86
    if (kernel == KERNEL_AVX2) return mkh_avx2;
#endif
    (void)kernel;
    return NULL;
}

#if BNN_X86
__attribute__((target("avx2"))) static void pack_row_avx2(const float *x, int n,
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

static void pack_row_scalar(const float *x, int n, uint64_t *out) {
    for (int c = 0; c < n; c += 64) {
        const int m = n - c < 64 ? n - c : 64;
        uint64_t bits = 0;
        for (int b = 0; b < m; b++) bits |= (uint64_t)(x[c + b] < 0.0f) << b;
        out[c >> 6] = bits;
    }
}

void bnn_pack_row(const float *x, int n, uint64_t *out) {
#if BNN_X86
    static int avx2 = -1;
    if (avx2 < 0) avx2 = bnn_cpu_has_avx2();
    if (avx2) {
        pack_row_avx2(x, n, out);
        return;
    }
#endif
    pack_row_scalar(x, n, out);
}

#if BNN_X86
/* One epilogue op on 8 channels starting at c. */
__attribute__((target("avx2"))) static inline __m256 apply_op8(const epi_op *op, __m256 v,
                                                               int c, const float *res) {
    const __m256 zero = _mm256_setzero_ps();
    switch (op->code) {
        case OP_SCALE:
            return _mm256_mul_ps(v, _mm256_loadu_ps(op->v + c));
        case OP_BIAS:
            return _mm256_add_ps(v, _mm256_loadu_ps(op->v + c));
        case OP_MULADD:
            return _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(op->v + c)),
                                 _mm256_loadu_ps(op->u + c));
        case OP_RELU:
            return _mm256_max_ps(v, zero);
        case OP_CLIP:
            return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(op->lo)),
                                 _mm256_set1_ps(op->hi));
        case OP_SIGN:
            return _mm256_blendv_ps(_mm256_set1_ps(1.0f), _mm256_set1_ps(-1.0f),
                                    _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        case OP_RESIDUAL:
            return _mm256_add_ps(v, _mm256_loadu_ps(res + c));
        default:
            return v;
    }
}

/* One op on 64 channels held in v[0..7] (the switch outside the lanes). */
#define LANES(expr)                                          \
    do {                                                     \
        for (int i = 0; i < 8; i++) v[i] = (expr);           \
    } while (0)

__attribute__((target("avx2"))) static inline void apply_op64(const epi_op *op, __m256 *v,
                                                              int c, const float *res) {
    const __m256 zero = _mm256_setzero_ps();
    switch (op->code) {
        case OP_SCALE:
            LANES(_mm256_mul_ps(v[i], _mm256_loadu_ps(op->v + c + 8 * i)));
            break;
        case OP_BIAS:
            LANES(_mm256_add_ps(v[i], _mm256_loadu_ps(op->v + c + 8 * i)));
            break;
        case OP_MULADD:
            LANES(_mm256_add_ps(_mm256_mul_ps(v[i], _mm256_loadu_ps(op->v + c + 8 * i)),
                                _mm256_loadu_ps(op->u + c + 8 * i)));
            break;
        case OP_RELU:
            LANES(_mm256_max_ps(v[i], zero));
            break;
        case OP_CLIP: {
            const __m256 lo = _mm256_set1_ps(op->lo), hi = _mm256_set1_ps(op->hi);
            LANES(_mm256_min_ps(_mm256_max_ps(v[i], lo), hi));
            break;
        }
        case OP_SIGN: {
            const __m256 one = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f);
            LANES(_mm256_blendv_ps(one, minus, _mm256_cmp_ps(v[i], zero, _CMP_LT_OQ)));
            break;
        }
        case OP_RESIDUAL:
            LANES(_mm256_add_ps(v[i], _mm256_loadu_ps(res + c + 8 * i)));
            break;
        default:
            break;
    }
}
#undef LANES

/* Channels [c0, c1) of one row in blocks of 64 (cg, the channels per packed
 * group, a multiple of 64: every packed word is written whole). */
__attribute__((target("avx2"), always_inline)) static inline void epi64_row(
    const epilogue_t *e, float *y, const float *res, uint64_t *yp, const int32_t *dots,
    const float *src, int c0, int c1, int cg) {
    const __m256 zero = _mm256_setzero_ps();
    /* Groups of whole words follow each other: word c / 64 of the row. */
    const int flat = e->cw_out_g * 64 == cg;
    for (int c = c0; c + 64 <= c1; c += 64) {
        __m256 v[8];
        for (int i = 0; i < 8; i++)
            v[i] = dots ? _mm256_cvtepi32_ps(
                              _mm256_loadu_si256((const __m256i *)(dots + c + 8 * i)))
                        : _mm256_loadu_ps(src + c + 8 * i);
        for (int q = 0; q < e->nops; q++) apply_op64(&e->ops[q], v, c, res);
        if (y && e->stream)
            for (int i = 0; i < 8; i++) _mm256_stream_ps(y + c + 8 * i, v[i]);
        else if (y)
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(y + c + 8 * i, v[i]);
        if (yp) {
            uint64_t word = 0;
            for (int i = 0; i < 8; i++)
                word |= (uint64_t)(unsigned)_mm256_movemask_ps(
                            _mm256_cmp_ps(v[i], zero, _CMP_LT_OQ))
                        << (8 * i);
            if (flat) {
                yp[c >> 6] = word;
            } else {
                const int g = c / cg, local = c - g * cg;
                yp[(size_t)g * e->cw_out_g + (local >> 6)] = word;
            }
        }
    }
}

/* Rows [r0, r0 + n) of a tile, channels [c0, c1), dots at d + i * ldd. */
__attribute__((target("avx2"))) static void epilogue_rows_avx2(
    const epilogue_t *e, int64_t r0, int n, const int32_t *d, int ldd, int c0, int c1) {
    const int cout = e->cout, cg = cout / e->gout;
    for (int i = 0; i < n; i++) {
        const int64_t row = r0 + i;
        float *y = e->y ? e->y + (size_t)row * cout : NULL;
        const float *res = e->residual ? e->residual + (size_t)row * cout : NULL;
        uint64_t *yp = e->yp ? e->yp + (size_t)row * e->wpp_out : NULL;
        epi64_row(e, y, res, yp, d + (size_t)i * ldd, NULL, c0, c1, cg);
    }
}

/* The epilogue, vectorized: same IEEE operations in the same order as the
 * scalar apply_ops (no fused multiply-add). Blocks of 64 channels stay in
 * registers while each op is applied, and each packed word is written once. */
__attribute__((target("avx2"))) static void epilogue_avx2(const epilogue_t *e,
                                                          int64_t row,
                                                          const int32_t *dots,
                                                          const float *src) {
    const int cout = e->cout;
    float *y = e->y ? e->y + (size_t)row * cout : NULL;
    const float *res = e->residual ? e->residual + (size_t)row * cout : NULL;
    uint64_t *yp = e->yp ? e->yp + (size_t)row * e->wpp_out : NULL;
    const int cg = cout / e->gout;
    const __m256 zero = _mm256_setzero_ps();
    int c = 0;
    if (cg % 64 == 0) {
        /* Every packed word is written whole (a group is a run of words). */
        epi64_row(e, y, res, yp, dots, src, 0, cout, cg);
        return;
    }
    if (yp) memset(yp, 0, (size_t)e->wpp_out * sizeof(uint64_t));
    int g = 0, local = 0; /* packed group of channel c, and c within it */
    uint64_t word = 0;
    for (; c < cout; c += 8) {
        __m256 v = dots ? _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(dots + c)))
                        : _mm256_loadu_ps(src + c);
        for (int q = 0; q < e->nops; q++) v = apply_op8(&e->ops[q], v, c, res);
        if (y) _mm256_storeu_ps(y + c, v);
        if (yp) {
            word |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ))
                    << (local & 63);
            local += 8;
            if ((local & 63) == 0 || local == cg) {
                yp[(size_t)g * e->cw_out_g + ((local - 1) >> 6)] = word;
                word = 0;
            }
            if (local == cg) {
                local = 0;
                g++;
            }
        }
    }
}
#endif

int bnn_epilogue_fast(const epilogue_t *e, int64_t row, const int32_t *dots,
                      const float *src) {
#if BNN_X86
    static int avx2 = -1;
    if (avx2 < 0) avx2 = bnn_cpu_has_avx2();
    if (!avx2 || e->cout % 8 || (e->cout / e->gout) % 8) return 0;
    epilogue_avx2(e, row, dots, src);
    return 1;
#else
    (void)e;
    (void)row;
    (void)dots;
    (void)src;
    return 0;
#endif
}

void bnn_epilogue_rows(const epilogue_t *e, int64_t r0, int n, const int32_t *dots,
                       int ldd, int c0, int c1) {
#if BNN_X86
    epilogue_rows_avx2(e, r0, n, dots, ldd, c0, c1);
#else
    (void)e;
    (void)r0;
    (void)n;
    (void)dots;
    (void)ldd;
    (void)c0;
    (void)c1;
#endif
}

int bnn_epilogue_rows_ok(const epilogue_t *e) {
#if BNN_X86
    static int avx2 = -1;
    if (avx2 < 0) avx2 = bnn_cpu_has_avx2();
    return avx2 && (e->cout / e->gout) % 64 == 0;
#else
    (void)e;
    return 0;
#endif
}

void bnn_store_fence(void) {
#if BNN_X86
    _mm_sfence();
#endif
}

microkernel_t bnn_microkernel(int kernel) {
#if BNN_X86
    if (kernel == KERNEL_AVX2) return mk_avx2;
    if (kernel == KERNEL_POPCNT) return mk_popcnt;
#endif
    (void)kernel;
    return mk_generic;
}

