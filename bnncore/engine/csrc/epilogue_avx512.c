/*
 * The avx512 level's row packing and epilogues for whole 64-channel words:
 * 16 floats per vector, comparisons straight into mask registers (16 sign
 * bits each, 4 per packed word). The float operations are the IEEE
 * operations of the portable and AVX2 epilogues, in the same order (no fused
 * multiply-add), so the results are the same bits.
 *
 * Built natively or against SIMDe (BNN_EMULATE_AVX512; see simd512.h).
 */
#include <stddef.h>
#include <stdint.h>

#include "bnn.h"
#include "simd512.h"

#if BNN_HAVE_AVX512

BNN_AVX512 void bnn_pack_row_avx512(const float *x, int n, uint64_t *out) {
    const __m512 zero = _mm512_setzero_ps();
    int c = 0;
    for (; c + 64 <= n; c += 64) {
        uint64_t bits = 0;
        for (int q = 0; q < 4; q++) {
            const __m512 v = _mm512_loadu_ps(x + c + 16 * q);
            bits |= (uint64_t)_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ) << (16 * q);
        }
        out[c >> 6] = bits;
    }
    if (c < n) {
        uint64_t bits = 0;
        for (int b = 0; c + b < n; b++) bits |= (uint64_t)(x[c + b] < 0.0f) << b;
        out[c >> 6] = bits;
    }
}

/* One op on 64 channels from c held in v[0..3] (the switch outside the
 * lanes). */
#define LANES(expr)                                          \
    do {                                                     \
        for (int i = 0; i < 4; i++) v[i] = (expr);           \
    } while (0)

BNN_AVX512_INLINE void apply_op64(const epi_op *op, __m512 *v, int c, const float *res) {
    const __m512 zero = _mm512_setzero_ps();
    switch (op->code) {
        case OP_SCALE:
            LANES(_mm512_mul_ps(v[i], _mm512_loadu_ps(op->v + c + 16 * i)));
            break;
        case OP_BIAS:
            LANES(_mm512_add_ps(v[i], _mm512_loadu_ps(op->v + c + 16 * i)));
            break;
        case OP_MULADD:
            LANES(_mm512_add_ps(_mm512_mul_ps(v[i], _mm512_loadu_ps(op->v + c + 16 * i)),
                                _mm512_loadu_ps(op->u + c + 16 * i)));
            break;
        case OP_RELU: /* NaN and -0 give +0, as t > 0 ? t : 0 does */
            LANES(_mm512_max_ps(v[i], zero));
            break;
        case OP_CLIP: {
            const __m512 lo = _mm512_set1_ps(op->lo), hi = _mm512_set1_ps(op->hi);
            LANES(_mm512_min_ps(_mm512_max_ps(v[i], lo), hi));
            break;
        }
        case OP_SIGN: {
            const __m512 one = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
            LANES(_mm512_mask_blend_ps(_mm512_cmp_ps_mask(v[i], zero, _CMP_LT_OQ), one,
                                       minus));
            break;
        }
        case OP_RESIDUAL:
            LANES(_mm512_add_ps(v[i], _mm512_loadu_ps(res + c + 16 * i)));
            break;
        default:
            break;
    }
}
#undef LANES

/* Channels [c0, c1) of one row in blocks of 64 (cg, the channels per packed
 * group, a multiple of 64: every packed word is written whole). */
BNN_AVX512_INLINE void epi64_row(const epilogue_t *e, float *y, const float *res,
                                 uint64_t *yp, const int32_t *dots, const float *src,
                                 int c0, int c1, int cg) {
    const __m512 zero = _mm512_setzero_ps();
    /* Groups of whole words follow each other: word c / 64 of the row. */
    const int flat = e->cw_out_g * 64 == cg;
    /* Non-temporal stores need 64-byte alignment (rows are 256-byte multiples). */
    const int stream = y && e->stream && ((uintptr_t)y & 63) == 0;
    for (int c = c0; c + 64 <= c1; c += 64) {
        __m512 v[4];
        for (int i = 0; i < 4; i++)
            v[i] = dots ? bnn512_cvtepi32_ps(_mm512_loadu_si512((const void *)(dots + c + 16 * i)))
                        : _mm512_loadu_ps(src + c + 16 * i);
        for (int q = 0; q < e->nops; q++) apply_op64(&e->ops[q], v, c, res);
        if (stream)
            for (int i = 0; i < 4; i++) bnn512_stream_ps(y + c + 16 * i, v[i]);
        else if (y)
            for (int i = 0; i < 4; i++) _mm512_storeu_ps(y + c + 16 * i, v[i]);
        if (yp) {
            uint64_t word = 0;
            for (int i = 0; i < 4; i++)
                word |= (uint64_t)_mm512_cmp_ps_mask(v[i], zero, _CMP_LT_OQ) << (16 * i);
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
BNN_AVX512 void bnn_epilogue_rows_avx512(const epilogue_t *e, int64_t r0, int n,
                                         const int32_t *d, int ldd, int c0, int c1) {
    const int cout = e->cout, cg = cout / e->gout;
    for (int i = 0; i < n; i++) {
        const int64_t row = r0 + i;
        float *y = e->y ? e->y + (size_t)row * cout : NULL;
        const float *res = e->residual ? e->residual + (size_t)row * cout : NULL;
        uint64_t *yp = e->yp ? e->yp + (size_t)row * e->wpp_out : NULL;
        epi64_row(e, y, res, yp, d + (size_t)i * ldd, NULL, c0, c1, cg);
    }
}

/* One whole row from int32 dots or float src (packed groups of whole words). */
BNN_AVX512 void bnn_epilogue_row_avx512(const epilogue_t *e, int64_t row,
                                        const int32_t *dots, const float *src) {
    const int cout = e->cout;
    float *y = e->y ? e->y + (size_t)row * cout : NULL;
    const float *res = e->residual ? e->residual + (size_t)row * cout : NULL;
    uint64_t *yp = e->yp ? e->yp + (size_t)row * e->wpp_out : NULL;
    epi64_row(e, y, res, yp, dots, src, 0, cout, cout / e->gout);
}

#endif
