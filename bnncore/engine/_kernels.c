/*
 * bnncore.engine._kernels: bit-packed XNOR-popcount kernels for binary layers.
 *
 * A value in {-1, +1} is one bit: 1 means -1, 0 means +1. Channels of a pixel
 * are packed little-endian into 64-bit words (channel c -> word c / 64, bit
 * c % 64); bits past the last channel are 0. For a binary dot product of
 * length K, dot = K - 2 * popcount(a XOR b).
 *
 * Every layer runs as a 2D convolution over NHWC packed input (a dense layer is
 * a convolution with one output position). For each block of output rows the
 * receptive fields are gathered into a bit-contiguous row ("im2col"), then a
 * micro-kernel computes popcounts against weight panels holding 4 output
 * channels interleaved word by word, and the epilogue turns the integer dot
 * products into the layer's output (bias, scale, batch norm, activations,
 * residual add) in float32, in the same operation order as Keras, and writes
 * it as float and/or packed bits.
 *
 * Kernels: AVX2 (nibble-lookup popcount, 4 rows x 8 channels per step) chosen
 * at run time when the CPU has it; otherwise a scalar kernel (hardware POPCNT
 * when available, else the portable __builtin_popcountll).
 *
 * Only the CPython C API and the buffer protocol are used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define BNN_X86 1
#include <immintrin.h>
#else
#define BNN_X86 0
#endif

enum { KERNEL_AUTO = -1, KERNEL_GENERIC = 0, KERNEL_POPCNT = 1, KERNEL_AVX2 = 2 };
static int g_kernel = KERNEL_AUTO;

static int cpu_has_avx2(void) {
#if BNN_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

static int cpu_has_popcnt(void) {
#if BNN_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt") ? 1 : 0;
#else
    return 0;
#endif
}

static int active_kernel(void) {
    if (g_kernel != KERNEL_AUTO) return g_kernel;
    if (cpu_has_avx2()) return KERNEL_AVX2;
    if (cpu_has_popcnt()) return KERNEL_POPCNT;
    return KERNEL_GENERIC;
}

/* ------------------------------------------------------------------------ */
/* Micro-kernels                                                             */
/* ------------------------------------------------------------------------ */

/*
 * a[0..mr-1]: row pointers (kw words each); panels: npan panels of kw*4 words
 * (word k of channel j of a panel at panel[4*k + j]). Writes
 * dots[i*ldd + 4*p + j] = kbits - 2*popcount(row i XOR channel 4p+j).
 */
typedef void (*microkernel_t)(const uint64_t *const *a, int mr,
                              const uint64_t *panels, int npan, int kw,
                              int32_t kbits, int32_t *dots, int ldd);

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
 */
__attribute__((target("avx2"))) static void mk_avx2(
    const uint64_t *const *a, int mr, const uint64_t *panels, int npan, int kw,
    int32_t kbits, int32_t *dots, int ldd) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
                                         3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    const __m256i nib = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    const uint64_t *a0 = a[0];
    const uint64_t *a1 = mr > 1 ? a[1] : a0;
    const uint64_t *a2 = mr > 2 ? a[2] : a0;
    const uint64_t *a3 = mr > 3 ? a[3] : a0;
    for (int p = 0; p < npan; p += 2) {
        const int two = p + 1 < npan;
        const uint64_t *b0 = panels + (size_t)p * kw * 4;
        const uint64_t *b1 = two ? b0 + (size_t)kw * 4 : b0;
        __m256i t[8];
        for (int q = 0; q < 8; q++) t[q] = zero;
        for (int k0 = 0; k0 < kw; k0 += 31) {
            const int k1 = k0 + 31 < kw ? k0 + 31 : kw;
            __m256i c00 = zero, c01 = zero, c10 = zero, c11 = zero;
            __m256i c20 = zero, c21 = zero, c30 = zero, c31 = zero;
            for (int k = k0; k < k1; k++) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)(b0 + 4 * k));
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(b1 + 4 * k));
                __m256i x = _mm256_set1_epi64x((long long)a0[k]);
                __m256i v = _mm256_xor_si256(x, w0);
                POP_ACC(c00, v);
                v = _mm256_xor_si256(x, w1);
                POP_ACC(c01, v);
                x = _mm256_set1_epi64x((long long)a1[k]);
                v = _mm256_xor_si256(x, w0);
                POP_ACC(c10, v);
                v = _mm256_xor_si256(x, w1);
                POP_ACC(c11, v);
                x = _mm256_set1_epi64x((long long)a2[k]);
                v = _mm256_xor_si256(x, w0);
                POP_ACC(c20, v);
                v = _mm256_xor_si256(x, w1);
                POP_ACC(c21, v);
                x = _mm256_set1_epi64x((long long)a3[k]);
                v = _mm256_xor_si256(x, w0);
                POP_ACC(c30, v);
                v = _mm256_xor_si256(x, w1);
                POP_ACC(c31, v);
            }
            t[0] = _mm256_add_epi64(t[0], _mm256_sad_epu8(c00, zero));
            t[1] = _mm256_add_epi64(t[1], _mm256_sad_epu8(c01, zero));
            t[2] = _mm256_add_epi64(t[2], _mm256_sad_epu8(c10, zero));
            t[3] = _mm256_add_epi64(t[3], _mm256_sad_epu8(c11, zero));
            t[4] = _mm256_add_epi64(t[4], _mm256_sad_epu8(c20, zero));
            t[5] = _mm256_add_epi64(t[5], _mm256_sad_epu8(c21, zero));
            t[6] = _mm256_add_epi64(t[6], _mm256_sad_epu8(c30, zero));
            t[7] = _mm256_add_epi64(t[7], _mm256_sad_epu8(c31, zero));
        }
        for (int i = 0; i < mr; i++) {
            for (int h = 0; h < 1 + two; h++) {
                uint64_t cnt[4];
                _mm256_storeu_si256((__m256i *)cnt, t[2 * i + h]);
                int32_t *d = dots + (size_t)i * ldd + 4 * (p + h);
                for (int j = 0; j < 4; j++) d[j] = kbits - 2 * (int32_t)cnt[j];
            }
        }
    }
}
#endif

static microkernel_t select_microkernel(int kernel) {
#if BNN_X86
    if (kernel == KERNEL_AVX2) return mk_avx2;
    if (kernel == KERNEL_POPCNT) return mk_popcnt;
#endif
    (void)kernel;
    return mk_generic;
}

/* ------------------------------------------------------------------------ */
/* Bit helpers                                                               */
/* ------------------------------------------------------------------------ */

/* OR nbits bits of src (bits past nbits are 0) into dst at bit offset off.
 * dst words from off/64 on hold only bits below off; one slack word past the
 * row's end may be OR-ed with zeros. */
static inline void append_bits(uint64_t *dst, int64_t off, const uint64_t *src,
                               int nbits) {
    const int nw = (nbits + 63) >> 6;
    const int64_t w = off >> 6;
    const int s = (int)(off & 63);
    if (s == 0) {
        memcpy(dst + w, src, (size_t)nw * sizeof(uint64_t));
        return;
    }
    for (int j = 0; j < nw; j++) {
        const uint64_t v = src[j];
        dst[w + j] |= v << s;
        dst[w + j + 1] |= v >> (64 - s);
    }
}

static inline int popcount64(uint64_t v) { return __builtin_popcountll(v); }

/* Popcount of bits [start, start+len) of a weight row stored in a panel. */
static int panel_range_popcount(const uint64_t *panel, int lane, int64_t start,
                                int len) {
    int total = 0;
    int64_t bit = start;
    const int64_t end = start + len;
    while (bit < end) {
        const int64_t w = bit >> 6;
        const int s = (int)(bit & 63);
        int take = 64 - s;
        if (bit + take > end) take = (int)(end - bit);
        uint64_t v = panel[4 * w + lane] >> s;
        if (take < 64) v &= (((uint64_t)1) << take) - 1;
        total += popcount64(v);
        bit += take;
    }
    return total;
}

/* ------------------------------------------------------------------------ */
/* Epilogue                                                                  */
/* ------------------------------------------------------------------------ */

enum {
    OP_SCALE = 0,   /* y *= v[c]                */
    OP_BIAS = 1,    /* y += v[c]                */
    OP_MULADD = 2,  /* y = y * v[c] + u[c]      */
    OP_RELU = 3,    /* y = max(y, 0)            */
    OP_CLIP = 4,    /* y = min(max(y, lo), hi)  */
    OP_SIGN = 5,    /* y = y < 0 ? -1 : +1      */
    OP_RESIDUAL = 6 /* y += r[row, c]           */
};

#define MAX_OPS 32

typedef struct {
    int code;
    const float *v;
    const float *u;
    float lo, hi;
} epi_op;

typedef struct {
    int nops;
    epi_op ops[MAX_OPS];
    const float *residual;
    float *y;           /* float output (rows x cout) or NULL */
    uint64_t *yp;       /* packed output (rows x wpp_out) or NULL */
    int cout;
    int gout;           /* groups of the packed output layout */
    int cw_out_g;       /* words per output group */
    int wpp_out;        /* words per output row */
} epilogue_t;

static void run_epilogue_row(const epilogue_t *e, int64_t row, float *t) {
    const int cout = e->cout;
    for (int q = 0; q < e->nops; q++) {
        const epi_op *op = &e->ops[q];
        switch (op->code) {
            case OP_SCALE:
                for (int c = 0; c < cout; c++) t[c] = t[c] * op->v[c];
                break;
            case OP_BIAS:
                for (int c = 0; c < cout; c++) t[c] = t[c] + op->v[c];
                break;
            case OP_MULADD:
                for (int c = 0; c < cout; c++) {
                    const float m = t[c] * op->v[c];
                    t[c] = m + op->u[c];
                }
                break;
            case OP_RELU:
                for (int c = 0; c < cout; c++) t[c] = t[c] > 0.0f ? t[c] : 0.0f;
                break;
            case OP_CLIP:
                for (int c = 0; c < cout; c++) {
                    float v = t[c] > op->lo ? t[c] : op->lo;
                    t[c] = v < op->hi ? v : op->hi;
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
    if (e->y) memcpy(e->y + (size_t)row * cout, t, (size_t)cout * sizeof(float));
    if (e->yp) {
        uint64_t *out = e->yp + (size_t)row * e->wpp_out;
        memset(out, 0, (size_t)e->wpp_out * sizeof(uint64_t));
        const int cg = cout / e->gout;
        for (int g = 0; g < e->gout; g++) {
            uint64_t *o = out + (size_t)g * e->cw_out_g;
            const float *src = t + (size_t)g * cg;
            for (int c = 0; c < cg; c++)
                o[c >> 6] |= (uint64_t)(src[c] < 0.0f) << (c & 63);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Convolution driver                                                        */
/* ------------------------------------------------------------------------ */

typedef struct {
    int64_t n, h, w, wpp_in, groups, cin_g, cw_g, kh, kw_, sh, sw, dh, dw, pt, pl,
        oh, ow, cout, pad_mode;
} geom_t;

#define ROW_BLOCK 32

typedef struct {
    const geom_t *g;
    const uint64_t *x;
    const uint64_t *panels;
    int taps, kbits, kwords, npan_g, ng;
    int direct; /* rows read straight from the input (1x1, no padding) */
    const int32_t *wsum; /* taps x cout, pad_mode 0 only, else NULL */
    int has_pad;
    microkernel_t mk;
} conv_t;

/* Builds the gathered rows [r0, r0+mb) of group grp into abuf (or points
 * straight at the input); returns row pointers in rows[]. */
static void gather_rows(const conv_t *cv, int64_t r0, int mb, int grp,
                        uint64_t *abuf, const uint64_t **rows) {
    const geom_t *g = cv->g;
    for (int i = 0; i < mb; i++) {
        const int64_t r = r0 + i;
        const int64_t ow = r % g->ow;
        const int64_t oh = (r / g->ow) % g->oh;
        const int64_t nb = r / (g->ow * g->oh);
        if (cv->direct) {
            const int64_t ih = oh * g->sh, iw = ow * g->sw;
            rows[i] = cv->x + ((nb * g->h + ih) * g->w + iw) * g->wpp_in +
                      (int64_t)grp * g->cw_g;
            continue;
        }
        uint64_t *dst = abuf + (size_t)i * cv->kwords;
        memset(dst, 0, (size_t)cv->kwords * sizeof(uint64_t));
        int t = 0;
        for (int64_t a = 0; a < g->kh; a++) {
            const int64_t ih = oh * g->sh - g->pt + a * g->dh;
            for (int64_t b = 0; b < g->kw_; b++, t++) {
                const int64_t iw = ow * g->sw - g->pl + b * g->dw;
                if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
                const uint64_t *src = cv->x + ((nb * g->h + ih) * g->w + iw) * g->wpp_in +
                                      (int64_t)grp * g->cw_g;
                append_bits(dst, (int64_t)t * g->cin_g, src, (int)g->cin_g);
            }
        }
        rows[i] = dst;
    }
}

/* Subtracts, for padding with zeros, the contribution the padded taps got as +1. */
static void pad_correction(const conv_t *cv, int64_t r, int32_t *d) {
    const geom_t *g = cv->g;
    const int64_t ow = r % g->ow;
    const int64_t oh = (r / g->ow) % g->oh;
    int t = 0;
    for (int64_t a = 0; a < g->kh; a++) {
        const int64_t ih = oh * g->sh - g->pt + a * g->dh;
        for (int64_t b = 0; b < g->kw_; b++, t++) {
            const int64_t iw = ow * g->sw - g->pl + b * g->dw;
            if (ih >= 0 && ih < g->h && iw >= 0 && iw < g->w) continue;
            const int32_t *ws = cv->wsum + (size_t)t * g->cout;
            for (int grp = 0; grp < g->groups; grp++) {
                int32_t *dg = d + (size_t)grp * cv->npan_g * 4;
                const int32_t *wg = ws + (size_t)grp * cv->ng;
                for (int j = 0; j < cv->ng; j++) dg[j] -= wg[j];
            }
        }
    }
}

/* Dot products of rows [r0, r0+mb) against panels [p0, p1) of group grp. */
static void compute_block(const conv_t *cv, int64_t r0, int mb, int grp, int p0,
                          int p1, uint64_t *abuf, int32_t *dots, int ldd) {
    const uint64_t *rows[ROW_BLOCK];
    gather_rows(cv, r0, mb, grp, abuf, rows);
    const uint64_t *pan = cv->panels + ((size_t)grp * cv->npan_g + p0) * cv->kwords * 4;
    for (int i = 0; i < mb; i += 4) {
        const int mr = mb - i < 4 ? mb - i : 4;
        int32_t *d = dots + (size_t)i * ldd + ((size_t)grp * cv->npan_g + p0) * 4;
        cv->mk(rows + i, mr, pan, p1 - p0, cv->kwords, cv->kbits, d, ldd);
    }
}

static int row_needs_correction(const conv_t *cv, int64_t r) {
    const geom_t *g = cv->g;
    if (!cv->has_pad) return 0;
    const int64_t ow = r % g->ow;
    const int64_t oh = (r / g->ow) % g->oh;
    const int64_t ih0 = oh * g->sh - g->pt, ih1 = ih0 + (g->kh - 1) * g->dh;
    const int64_t iw0 = ow * g->sw - g->pl, iw1 = iw0 + (g->kw_ - 1) * g->dw;
    return ih0 < 0 || ih1 >= g->h || iw0 < 0 || iw1 >= g->w;
}

/* Epilogue of one row whose dots (panel layout) are in d. */
static void finish_row(const conv_t *cv, const epilogue_t *e, int64_t r, int32_t *d,
                       float *t) {
    if (cv->wsum && row_needs_correction(cv, r)) pad_correction(cv, r, d);
    const int ng = cv->ng;
    for (int grp = 0; grp < cv->g->groups; grp++) {
        const int32_t *dg = d + (size_t)grp * cv->npan_g * 4;
        float *tg = t + (size_t)grp * ng;
        for (int j = 0; j < ng; j++) tg[j] = (float)dg[j];
    }
    run_epilogue_row(e, r, t);
}

static int run_conv(const conv_t *cv, const epilogue_t *e, int threads) {
    const geom_t *g = cv->g;
    const int64_t m = g->n * g->oh * g->ow;
    const int ldd = (int)(g->groups * cv->npan_g * 4);
    const int64_t nrb = (m + ROW_BLOCK - 1) / ROW_BLOCK;
    if (threads < 1) threads = 1;
    /* Few row blocks (dense layers, small images): also split the channels. */
    int nsplit = 1;
    if (threads > 1 && nrb < 4 * threads) {
        nsplit = (int)((4 * threads + nrb - 1) / nrb);
        if (nsplit > cv->npan_g) nsplit = cv->npan_g;
        if (nsplit < 1) nsplit = 1;
    }
    const int splits = nsplit * (int)g->groups;
    const size_t abuf_words = (size_t)ROW_BLOCK * cv->kwords + 1;
    int failed = 0;
    if (nsplit == 1) {
        /* Row blocks are independent: gather, multiply, finish, all per thread. */
#pragma omp parallel num_threads(threads) if (threads > 1 && nrb > 1)
        {
            uint64_t *abuf = (uint64_t *)malloc(abuf_words * sizeof(uint64_t));
            int32_t *dots = (int32_t *)malloc((size_t)ROW_BLOCK * ldd * sizeof(int32_t));
            float *t = (float *)malloc((size_t)g->cout * sizeof(float));
            const int ok = abuf && dots && t;
            if (!ok) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t rb = 0; rb < nrb; rb++) {
                if (!ok) continue;
                const int64_t r0 = rb * ROW_BLOCK;
                const int mb = (int)(m - r0 < ROW_BLOCK ? m - r0 : ROW_BLOCK);
                for (int grp = 0; grp < g->groups; grp++)
                    compute_block(cv, r0, mb, grp, 0, cv->npan_g, abuf, dots, ldd);
                for (int i = 0; i < mb; i++)
                    finish_row(cv, e, r0 + i, dots + (size_t)i * ldd, t);
            }
            free(abuf);
            free(dots);
            free(t);
        }
        return failed ? -1 : 0;
    }
    /* Split channels too: dots of all rows go to a shared buffer first. */
    int32_t *all = (int32_t *)malloc((size_t)m * ldd * sizeof(int32_t));
    if (!all) return -1;
    const int per = (cv->npan_g + nsplit - 1) / nsplit;
    const int64_t items = nrb * splits;
#pragma omp parallel num_threads(threads)
    {
        uint64_t *abuf = (uint64_t *)malloc(abuf_words * sizeof(uint64_t));
        float *t = (float *)malloc((size_t)g->cout * sizeof(float));
        if (!abuf || !t) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            if (!abuf || !t) continue;
            const int64_t rb = it / splits;
            const int s = (int)(it % splits);
            const int grp = s / nsplit;
            const int p0 = (s % nsplit) * per;
            const int p1 = p0 + per < cv->npan_g ? p0 + per : cv->npan_g;
            if (p0 >= p1) continue;
            const int64_t r0 = rb * ROW_BLOCK;
            const int mb = (int)(m - r0 < ROW_BLOCK ? m - r0 : ROW_BLOCK);
            compute_block(cv, r0, mb, grp, p0, p1, abuf, all + (size_t)r0 * ldd, ldd);
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++) {
            if (!t) continue;
            finish_row(cv, e, r, all + (size_t)r * ldd, t);
        }
        free(abuf);
        free(t);
    }
    free(all);
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Python glue                                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    Py_buffer views[2 * MAX_OPS + 8];
    int count;
} views_t;

static void release_views(views_t *vs) {
    for (int i = 0; i < vs->count; i++) PyBuffer_Release(&vs->views[i]);
    vs->count = 0;
}

/* Gets a C-contiguous buffer of at least min_bytes; NULL (with an exception
 * set) on failure. obj == Py_None gives NULL with no exception when allowed. */
static void *get_buffer(views_t *vs, PyObject *obj, int writable, Py_ssize_t min_bytes,
                        const char *name) {
    Py_buffer *view = &vs->views[vs->count];
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a C-contiguous%s buffer (e.g. a NumPy array)", name,
                     writable ? " writable" : "");
        return NULL;
    }
    vs->count++;
    if (view->len < min_bytes) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes; at least %zd are needed",
                     name, view->len, min_bytes);
        return NULL;
    }
    return view->buf;
}

static int parse_geometry(PyObject *tuple, int64_t *out, int count, const char *name) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != count) {
        PyErr_Format(PyExc_ValueError, "%s must be a tuple of %d integers", name, count);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, i));
        if (v == -1 && PyErr_Occurred()) return -1;
        out[i] = (int64_t)v;
    }
    return 0;
}

static int parse_ops(PyObject *list, epilogue_t *e, views_t *vs, int cout) {
    if (!PyList_Check(list) && !PyTuple_Check(list)) {
        PyErr_SetString(PyExc_ValueError, "ops must be a list of tuples");
        return -1;
    }
    PyObject *seq = PySequence_Fast(list, "ops must be a sequence");
    if (!seq) return -1;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_OPS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "at most %d epilogue ops are supported, got %zd",
                     MAX_OPS, n);
        return -1;
    }
    e->nops = (int)n;
    const Py_ssize_t vec = (Py_ssize_t)cout * (Py_ssize_t)sizeof(float);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *a1 = Py_None, *a2 = Py_None;
        int code;
        if (!PyArg_ParseTuple(item, "i|OO", &code, &a1, &a2)) {
            Py_DECREF(seq);
            return -1;
        }
        epi_op *op = &e->ops[i];
        memset(op, 0, sizeof(*op));
        op->code = code;
        switch (code) {
            case OP_SCALE:
            case OP_BIAS:
                op->v = (const float *)get_buffer(vs, a1, 0, vec, "op vector");
                if (!op->v) goto fail;
                break;
            case OP_MULADD:
                op->v = (const float *)get_buffer(vs, a1, 0, vec, "op multiplier");
                if (!op->v) goto fail;
                op->u = (const float *)get_buffer(vs, a2, 0, vec, "op offset");
                if (!op->u) goto fail;
                break;
            case OP_CLIP:
                op->lo = (float)PyFloat_AsDouble(a1);
                op->hi = (float)PyFloat_AsDouble(a2);
                if (PyErr_Occurred()) goto fail;
                break;
            case OP_RELU:
            case OP_SIGN:
                break;
            case OP_RESIDUAL:
                if (!e->residual) {
                    PyErr_SetString(PyExc_ValueError,
                                    "a residual op needs the residual argument");
                    goto fail;
                }
                break;
            default:
                PyErr_Format(PyExc_ValueError, "unknown epilogue op code %d", code);
                goto fail;
        }
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

enum {
    G_N, G_H, G_W, G_WPP, G_GROUPS, G_CING, G_CWG, G_KH, G_KW, G_SH, G_SW, G_DH, G_DW,
    G_PT, G_PL, G_OH, G_OW, G_COUT, G_PADMODE, G_GOUT, G_CWOUTG, G_WPPOUT, G_COUNT
};

static PyObject *py_bconv(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *w_obj, *geom_obj, *ops_obj, *y_obj, *yp_obj, *res_obj;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOOOOOi", &x_obj, &w_obj, &geom_obj, &ops_obj,
                          &y_obj, &yp_obj, &res_obj, &threads))
        return NULL;
    int64_t gv[G_COUNT];
    if (parse_geometry(geom_obj, gv, G_COUNT, "geometry") != 0) return NULL;
    for (int i = 0; i < G_COUNT; i++) {
        const int may_be_zero = i == G_PT || i == G_PL || i == G_PADMODE;
        if (gv[i] < (may_be_zero ? 0 : 1)) {
            PyErr_Format(PyExc_ValueError, "geometry field %d is %lld; must be %s", i,
                         (long long)gv[i], may_be_zero ? ">= 0" : ">= 1");
            return NULL;
        }
    }
    geom_t g = {gv[G_N], gv[G_H], gv[G_W], gv[G_WPP], gv[G_GROUPS], gv[G_CING],
                gv[G_CWG], gv[G_KH], gv[G_KW], gv[G_SH], gv[G_SW], gv[G_DH], gv[G_DW],
                gv[G_PT], gv[G_PL], gv[G_OH], gv[G_OW], gv[G_COUT], gv[G_PADMODE]};
    if (g.cout % g.groups || g.cout % gv[G_GOUT] || g.cw_g * 64 < g.cin_g ||
        g.wpp_in < g.groups * g.cw_g || gv[G_CWOUTG] * 64 < g.cout / gv[G_GOUT] ||
        gv[G_WPPOUT] < gv[G_GOUT] * gv[G_CWOUTG] || g.pad_mode > 1) {
        PyErr_SetString(PyExc_ValueError, "inconsistent convolution geometry");
        return NULL;
    }
    const int64_t taps = g.kh * g.kw_;
    const int64_t kbits = taps * g.cin_g;
    if (kbits >= (1 << 24) || g.cout > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "dot product length must stay below 2**24");
        return NULL;
    }
    const int64_t rows = g.n * g.oh * g.ow;
    conv_t cv;
    memset(&cv, 0, sizeof(cv));
    cv.g = &g;
    cv.taps = (int)taps;
    cv.kbits = (int)kbits;
    cv.kwords = (int)((kbits + 63) / 64);
    cv.ng = (int)(g.cout / g.groups);
    cv.npan_g = (cv.ng + 3) / 4;
    const int64_t ih_last = (g.oh - 1) * g.sh - g.pt + (g.kh - 1) * g.dh;
    const int64_t iw_last = (g.ow - 1) * g.sw - g.pl + (g.kw_ - 1) * g.dw;
    cv.has_pad = g.pt > 0 || g.pl > 0 || ih_last >= g.h || iw_last >= g.w;
    cv.direct = taps == 1 && !cv.has_pad;
    cv.mk = select_microkernel(active_kernel());

    views_t vs;
    vs.count = 0;
    epilogue_t e;
    memset(&e, 0, sizeof(e));
    int32_t *wsum = NULL;
    PyObject *result = NULL;
    cv.x = (const uint64_t *)get_buffer(&vs, x_obj, 0,
                                        (Py_ssize_t)(g.n * g.h * g.w * g.wpp_in * 8), "x");
    if (!cv.x) goto done;
    cv.panels = (const uint64_t *)get_buffer(
        &vs, w_obj, 0, (Py_ssize_t)g.groups * cv.npan_g * cv.kwords * 4 * 8, "weights");
    if (!cv.panels) goto done;
    e.cout = (int)g.cout;
    e.gout = (int)gv[G_GOUT];
    e.cw_out_g = (int)gv[G_CWOUTG];
    e.wpp_out = (int)gv[G_WPPOUT];
    if (res_obj != Py_None) {
        e.residual = (const float *)get_buffer(&vs, res_obj, 0,
                                               (Py_ssize_t)(rows * g.cout * 4), "residual");
        if (!e.residual) goto done;
    }
    if (y_obj != Py_None) {
        e.y = (float *)get_buffer(&vs, y_obj, 1, (Py_ssize_t)(rows * g.cout * 4), "y");
        if (!e.y) goto done;
    }
    if (yp_obj != Py_None) {
        e.yp = (uint64_t *)get_buffer(&vs, yp_obj, 1,
                                      (Py_ssize_t)(rows * e.wpp_out * 8), "y_packed");
        if (!e.yp) goto done;
    }
    if (parse_ops(ops_obj, &e, &vs, (int)g.cout) != 0) goto done;

    if (g.pad_mode == 0 && cv.has_pad) {
        wsum = (int32_t *)malloc((size_t)taps * g.cout * sizeof(int32_t));
        if (!wsum) {
            PyErr_NoMemory();
            goto done;
        }
        for (int64_t c = 0; c < g.cout; c++) {
            const int64_t grp = c / cv.ng, j = c % cv.ng;
            const uint64_t *pan = cv.panels + ((size_t)grp * cv.npan_g + j / 4) * cv.kwords * 4;
            for (int64_t t = 0; t < taps; t++) {
                const int neg = panel_range_popcount(pan, (int)(j % 4), t * g.cin_g,
                                                     (int)g.cin_g);
                wsum[t * g.cout + c] = (int32_t)g.cin_g - 2 * neg;
            }
        }
        cv.wsum = wsum;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = run_conv(&cv, &e, threads);
    Py_END_ALLOW_THREADS if (rc != 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    free(wsum);
    release_views(&vs);
    return result;
}

/* pack(x, out, rows, channels, groups, words_per_group, threads) */
static PyObject *py_pack(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *out_obj;
    long long rows, ch, groups, cwg;
    int threads;
    if (!PyArg_ParseTuple(args, "OOLLLLi", &x_obj, &out_obj, &rows, &ch, &groups, &cwg,
                          &threads))
        return NULL;
    if (rows < 0 || ch < 1 || groups < 1 || ch % groups || cwg * 64 < ch / groups) {
        PyErr_SetString(PyExc_ValueError, "inconsistent packing layout");
        return NULL;
    }
    views_t vs;
    vs.count = 0;
    const float *x = (const float *)get_buffer(&vs, x_obj, 0, (Py_ssize_t)(rows * ch * 4), "x");
    uint64_t *out = x ? (uint64_t *)get_buffer(&vs, out_obj, 1,
                                               (Py_ssize_t)(rows * groups * cwg * 8), "out")
                      : NULL;
    if (!x || !out) {
        release_views(&vs);
        return NULL;
    }
    const int64_t cg = ch / groups, wpp = groups * cwg;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(static) \
    if (threads > 1 && rows * ch > 65536)
    for (int64_t r = 0; r < rows; r++) {
        uint64_t *o = out + r * wpp;
        const float *xr = x + r * ch;
        memset(o, 0, (size_t)wpp * sizeof(uint64_t));
        for (int64_t g = 0; g < groups; g++) {
            uint64_t *og = o + g * cwg;
            const float *xg = xr + g * cg;
            for (int64_t w = 0; w * 64 < cg; w++) {
                const int64_t n = cg - w * 64 < 64 ? cg - w * 64 : 64;
                uint64_t bits = 0;
                for (int64_t b = 0; b < n; b++)
                    bits |= (uint64_t)(xg[w * 64 + b] < 0.0f) << b;
                og[w] = bits;
            }
        }
    }
    Py_END_ALLOW_THREADS release_views(&vs);
    Py_RETURN_NONE;
}

/* unpack(words, out, rows, channels, groups, words_per_group) -> +-1 floats */
static PyObject *py_unpack(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *out_obj;
    long long rows, ch, groups, cwg;
    if (!PyArg_ParseTuple(args, "OOLLLL", &x_obj, &out_obj, &rows, &ch, &groups, &cwg))
        return NULL;
    if (rows < 0 || ch < 1 || groups < 1 || ch % groups || cwg * 64 < ch / groups) {
        PyErr_SetString(PyExc_ValueError, "inconsistent packing layout");
        return NULL;
    }
    views_t vs;
    vs.count = 0;
    const uint64_t *x = (const uint64_t *)get_buffer(
        &vs, x_obj, 0, (Py_ssize_t)(rows * groups * cwg * 8), "words");
    float *out = x ? (float *)get_buffer(&vs, out_obj, 1, (Py_ssize_t)(rows * ch * 4), "out")
                   : NULL;
    if (!x || !out) {
        release_views(&vs);
        return NULL;
    }
    const int64_t cg = ch / groups, wpp = groups * cwg;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++)
            for (int64_t c = 0; c < cg; c++) {
                const uint64_t word = x[r * wpp + g * cwg + (c >> 6)];
                out[r * ch + g * cg + c] = (word >> (c & 63)) & 1 ? -1.0f : 1.0f;
            }
    release_views(&vs);
    Py_RETURN_NONE;
}

/*
 * maxpool(x, out, geometry, or_mask, threads): max pooling of +-1 values on
 * packed bits. geometry = (n, h, w, wpp, ph, pw, sh, sw, pt, pl, oh, ow).
 * The max of +-1 values is -1 only if all are -1: AND of the bits. Channels
 * whose bit in or_mask (wpp words) is set take the OR (the min) instead, for
 * a monotone decreasing map applied before the sign.
 */
static PyObject *py_maxpool(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *out_obj, *geom_obj, *mask_obj;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOOi", &x_obj, &out_obj, &geom_obj, &mask_obj, &threads))
        return NULL;
    int64_t g[12];
    if (parse_geometry(geom_obj, g, 12, "geometry") != 0) return NULL;
    const int64_t n = g[0], h = g[1], w = g[2], wpp = g[3], ph = g[4], pw = g[5], sh = g[6],
                  sw = g[7], pt = g[8], pl = g[9], oh = g[10], ow = g[11];
    if (n < 1 || h < 1 || w < 1 || wpp < 1 || ph < 1 || pw < 1 || sh < 1 || sw < 1 ||
        pt < 0 || pl < 0 || oh < 1 || ow < 1) {
        PyErr_SetString(PyExc_ValueError, "inconsistent pooling geometry");
        return NULL;
    }
    views_t vs;
    vs.count = 0;
    const uint64_t *x =
        (const uint64_t *)get_buffer(&vs, x_obj, 0, (Py_ssize_t)(n * h * w * wpp * 8), "x");
    uint64_t *out = x ? (uint64_t *)get_buffer(&vs, out_obj, 1,
                                               (Py_ssize_t)(n * oh * ow * wpp * 8), "out")
                      : NULL;
    const uint64_t *mask = NULL;
    if (out && mask_obj != Py_None)
        mask = (const uint64_t *)get_buffer(&vs, mask_obj, 0, (Py_ssize_t)(wpp * 8), "or_mask");
    if (!x || !out || (mask_obj != Py_None && !mask)) {
        release_views(&vs);
        return NULL;
    }
    const int64_t total = n * oh * ow;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(static) \
    if (threads > 1 && total * wpp > 16384)
    for (int64_t r = 0; r < total; r++) {
        const int64_t b = r / (oh * ow), y = (r / ow) % oh, xo = r % ow;
        uint64_t *o = out + r * wpp;
        for (int64_t k = 0; k < wpp; k++) {
            uint64_t all = ~(uint64_t)0, any = 0;
            for (int64_t i = 0; i < ph; i++) {
                const int64_t ih = y * sh - pt + i;
                if (ih < 0 || ih >= h) continue;
                for (int64_t j = 0; j < pw; j++) {
                    const int64_t iw = xo * sw - pl + j;
                    if (iw < 0 || iw >= w) continue;
                    const uint64_t v = x[((b * h + ih) * w + iw) * wpp + k];
                    all &= v;
                    any |= v;
                }
            }
            const uint64_t m = mask ? mask[k] : 0;
            o[k] = (all & ~m) | (any & m);
        }
    }
    Py_END_ALLOW_THREADS release_views(&vs);
    Py_RETURN_NONE;
}

static const char *kernel_name(int k) {
    switch (k) {
        case KERNEL_AVX2:
            return "avx2";
        case KERNEL_POPCNT:
            return "popcnt";
        default:
            return "generic";
    }
}

static PyObject *py_set_kernel(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    int k;
    if (strcmp(name, "auto") == 0)
        k = KERNEL_AUTO;
    else if (strcmp(name, "avx2") == 0)
        k = KERNEL_AVX2;
    else if (strcmp(name, "popcnt") == 0)
        k = KERNEL_POPCNT;
    else if (strcmp(name, "generic") == 0)
        k = KERNEL_GENERIC;
    else {
        PyErr_Format(PyExc_ValueError,
                     "Expected one of 'auto', 'avx2', 'popcnt', 'generic'. Received: "
                     "kernel=%R",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if ((k == KERNEL_AVX2 && !cpu_has_avx2()) || (k == KERNEL_POPCNT && !cpu_has_popcnt())) {
        PyErr_Format(PyExc_ValueError, "kernel=%s is not supported by this CPU", name);
        return NULL;
    }
    g_kernel = k;
    Py_RETURN_NONE;
}

static PyObject *py_kernel(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(kernel_name(active_kernel()));
}

static PyObject *py_features(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
#ifdef _OPENMP
    const int omp = 1;
    const int max_threads = omp_get_max_threads();
#else
    const int omp = 0;
    const int max_threads = 1;
#endif
    return Py_BuildValue("{s:O,s:O,s:O,s:i}", "avx2", cpu_has_avx2() ? Py_True : Py_False,
                         "popcnt", cpu_has_popcnt() ? Py_True : Py_False, "openmp",
                         omp ? Py_True : Py_False, "max_threads", max_threads);
}

/* spin(n): n iterations of 8 dependent integer additions (~8 cycles each on
 * x86-64), for estimating the clock rate; returns the final counter. */
static PyObject *py_spin(PyObject *self, PyObject *args) {
    (void)self;
    long long n;
    if (!PyArg_ParseTuple(args, "L", &n)) return NULL;
    uint64_t acc = 0;
    Py_BEGIN_ALLOW_THREADS
#if BNN_X86
    for (long long i = 0; i < n; i++) {
        __asm__ volatile(
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
            : "+r"(acc));
    }
#else
    for (long long i = 0; i < n; i++) {
        acc += 8;
        __asm__ volatile("" : "+r"(acc));
    }
#endif
    Py_END_ALLOW_THREADS return PyLong_FromUnsignedLongLong(acc);
}

static PyMethodDef methods[] = {
    {"spin", py_spin, METH_VARARGS,
     "spin(n): n x 8 dependent additions (about 8n cycles), for clock estimates."},
    {"bconv", py_bconv, METH_VARARGS,
     "bconv(x, weights, geometry, ops, y, y_packed, residual, threads): binary "
     "convolution on packed bits with a fused float epilogue."},
    {"pack", py_pack, METH_VARARGS,
     "pack(x, out, rows, channels, groups, words_per_group, threads): sign bits."},
    {"unpack", py_unpack, METH_VARARGS,
     "unpack(words, out, rows, channels, groups, words_per_group): bits to +-1."},
    {"maxpool", py_maxpool, METH_VARARGS,
     "maxpool(x, out, geometry, or_mask, threads): max pooling on packed bits."},
    {"set_kernel", py_set_kernel, METH_VARARGS,
     "set_kernel(name): force 'avx2', 'popcnt' or 'generic'; 'auto' to detect."},
    {"kernel", py_kernel, METH_NOARGS, "kernel(): name of the micro-kernel in use."},
    {"features", py_features, METH_NOARGS, "features(): CPU and build features."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "Bit-packed binary kernels of bnncore.engine.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
