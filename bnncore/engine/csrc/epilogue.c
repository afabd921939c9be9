/* The epilogue: float ops on rows (portable C and AVX2), and the vectorized
 * AVX2 epilogues from int32 dot products to float and packed outputs. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bnn.h"

#if BNN_X86
#include <immintrin.h>
#endif

/* The ops, one pass each over the row (vectorized by the compiler for each
 * level). The float operations are the same IEEE operations in the same
 * order whatever the instruction set, so results do not depend on it. */
static inline __attribute__((always_inline)) void apply_ops(const epilogue_t *e,
                                                            int64_t row, float *t)
{
    const int cout = e->cout;
    for (int q = 0; q < e->nops; q++) {
        const epi_op *op = &e->ops[q];
        const float *v = op->v, *u = op->u;
        const float lo = op->lo, hi = op->hi;
        switch (op->code) {
            case OP_SCALE:
                for (int c = 0; c < cout; c++) t[c] = t[c] * v[c];
                break;
            case OP_BIAS:
                for (int c = 0; c < cout; c++) t[c] = t[c] + v[c];
                break;
            case OP_MULADD:
                for (int c = 0; c < cout; c++) {
                    const float m = t[c] * v[c];
                    t[c] = m + u[c];
                }
                break;
            case OP_RELU:
                for (int c = 0; c < cout; c++) t[c] = t[c] > 0.0f ? t[c] : 0.0f;
                break;
            case OP_CLIP:
                for (int c = 0; c < cout; c++) {
                    const float a = t[c] > lo ? t[c] : lo;
                    t[c] = a < hi ? a : hi;
                }
                break;
            case OP_SIGN:
                for (int c = 0; c < cout; c++) t[c] = t[c] < 0.0f ? -1.0f : 1.0f;
                break;
            case OP_RESIDUAL: {
                const float *r = e->residual + (size_t)row * cout;
                for (int c = 0; c < cout; c++) t[c] = t[c] + r[c];
                break;
            }
            default:
                break;
        }
    }
}

void bnn_apply_ops_portable(const epilogue_t *e, int64_t row, float *t) {
    apply_ops(e, row, t);
}

#if BNN_X86
__attribute__((target("avx2"))) void bnn_apply_ops_avx2(const epilogue_t *e, int64_t row,
                                                      float *t) {
    apply_ops(e, row, t);
}
#endif

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
__attribute__((target("avx2"))) void bnn_epilogue_rows_avx2(
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
__attribute__((target("avx2"))) void bnn_epilogue_row_avx2(const epilogue_t *e,
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
    if (!e->cfg || e->cout % 8 || (e->cout / e->gout) % 8) return 0;
    epilogue_row_fn f = e->cfg->epilogue_row;
    if (e->cfg->epilogue_row64 && (e->cout / e->gout) % 64 == 0) f = e->cfg->epilogue_row64;
    if (!f) return 0;
    f(e, row, dots, src);
    return 1;
}

int bnn_epilogue_rows_ok(const epilogue_t *e) {
    return e->cfg && e->cfg->epilogue_rows && (e->cout / e->gout) % 64 == 0;
}

void bnn_epilogue_rows(const epilogue_t *e, int64_t r0, int n, const int32_t *dots,
                       int ldd, int c0, int c1) {
    e->cfg->epilogue_rows(e, r0, n, dots, ldd, c0, c1);
}

void bnn_store_fence(void) {
#if BNN_X86
    _mm_sfence();
#endif
}
