/*
 * Float convolutions that round exactly like TensorFlow's CPU kernels for the
 * shapes the planner verifies (it compares against the Keras layer on a probe
 * input before using them):
 *
 * - convolution: each output is a chain of fused multiply-adds over the taps
 *   in row-major order and, within a tap, over the input channels in order;
 * - depthwise convolution: a product then an add (no fusion) per tap, taps in
 *   row-major order.
 *
 * Padded positions read a row filled with the padding value (0 for Keras's
 * "same" padding), which leaves every sum unchanged up to the sign of zero.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#define BNN_X86 1
#include <immintrin.h>
#else
#define BNN_X86 0
#endif

#define PIX 4 /* output pixels per micro-tile */

typedef struct {
    const float *x, *k;
    float *out;
    const int64_t *g; /* n h w cin kh kw sh sw dh dw pt pl oh ow cout depth_mult */
    const float *pad; /* a row of cin padding values */
    int fma_ok;       /* AVX2 + FMA available */
} fconv_job_t;

/* Position of output pixel r: image index and top-left input coordinates. */
typedef struct {
    int64_t base; /* offset of image n */
    int64_t iy, ix;
} pix_t;

static inline pix_t pixel(const fconv_job_t *j, int64_t r) {
    const int64_t *g = j->g;
    const int64_t h = g[1], w = g[2], cin = g[3], sh = g[6], sw = g[7], pt = g[10],
                  pl = g[11], oh = g[12], ow = g[13];
    const int64_t n = r / (oh * ow), y = (r / ow) % oh, xo = r % ow;
    pix_t p = {n * h * w * cin, y * sh - pt, xo * sw - pl};
    return p;
}

/* Input row (cin values) of a pixel at tap (a, b), or the padding row. */
static inline const float *tap_at(const fconv_job_t *j, pix_t p, int64_t a, int64_t b) {
    const int64_t *g = j->g;
    const int64_t ih = p.iy + a * g[8], iw = p.ix + b * g[9];
    if (ih < 0 || ih >= g[1] || iw < 0 || iw >= g[2]) return j->pad;
    return j->x + p.base + (ih * g[2] + iw) * g[3];
}

/* Channels [c0, c1) of np pixels from r0, scalar fmaf (exact everywhere). */
static void conv_scalar(const fconv_job_t *j, int64_t r0, int np, int64_t c0,
                        int64_t c1) {
    const int64_t *g = j->g;
    const int64_t cin = g[3], kh = g[4], kw = g[5], cout = g[14];
    for (int p = 0; p < np; p++) {
        const pix_t px = pixel(j, r0 + p);
        float *o = j->out + (r0 + p) * cout;
        for (int64_t c = c0; c < c1; c++) o[c] = 0.0f;
        for (int64_t a = 0; a < kh; a++)
            for (int64_t b = 0; b < kw; b++) {
                const float *xr = tap_at(j, px, a, b);
                const float *kr = j->k + (a * kw + b) * cin * cout;
                for (int64_t ci = 0; ci < cin; ci++)
                    for (int64_t c = c0; c < c1; c++)
                        o[c] = fmaf(xr[ci], kr[ci * cout + c], o[c]);
            }
    }
}

#if BNN_X86
/* PIX (4) pixels x 16 channels in registers (named accumulators: an array
 * would be kept in memory by the compiler). */
__attribute__((target("avx2,fma"))) static void conv_tile16(const fconv_job_t *j,
                                                           const pix_t *px, int64_t r0,
                                                           int np, int64_t c0) {
    const int64_t *g = j->g;
    const int64_t cin = g[3], kh = g[4], kw = g[5], cout = g[14];
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
    __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int64_t a = 0; a < kh; a++)
        for (int64_t b = 0; b < kw; b++) {
            const float *x0 = tap_at(j, px[0], a, b);
            const float *x1 = tap_at(j, px[np > 1 ? 1 : 0], a, b);
            const float *x2 = tap_at(j, px[np > 2 ? 2 : 0], a, b);
            const float *x3 = tap_at(j, px[np > 3 ? 3 : 0], a, b);
            const float *kr = j->k + (a * kw + b) * cin * cout + c0;
            for (int64_t ci = 0; ci < cin; ci++) {
                const __m256 w0 = _mm256_loadu_ps(kr + ci * cout);
                const __m256 w1 = _mm256_loadu_ps(kr + ci * cout + 8);
                __m256 xv = _mm256_broadcast_ss(x0 + ci);
                a00 = _mm256_fmadd_ps(xv, w0, a00);
                a01 = _mm256_fmadd_ps(xv, w1, a01);
                xv = _mm256_broadcast_ss(x1 + ci);
                a10 = _mm256_fmadd_ps(xv, w0, a10);
                a11 = _mm256_fmadd_ps(xv, w1, a11);
                xv = _mm256_broadcast_ss(x2 + ci);
                a20 = _mm256_fmadd_ps(xv, w0, a20);
                a21 = _mm256_fmadd_ps(xv, w1, a21);
                xv = _mm256_broadcast_ss(x3 + ci);
                a30 = _mm256_fmadd_ps(xv, w0, a30);
                a31 = _mm256_fmadd_ps(xv, w1, a31);
            }
        }
    float *o = j->out + r0 * cout + c0;
    _mm256_storeu_ps(o, a00);
    _mm256_storeu_ps(o + 8, a01);
    if (np > 1) {
        _mm256_storeu_ps(o + cout, a10);
        _mm256_storeu_ps(o + cout + 8, a11);
    }
    if (np > 2) {
        _mm256_storeu_ps(o + 2 * cout, a20);
        _mm256_storeu_ps(o + 2 * cout + 8, a21);
    }
    if (np > 3) {
        _mm256_storeu_ps(o + 3 * cout, a30);
        _mm256_storeu_ps(o + 3 * cout + 8, a31);
    }
}

/* Small receptive fields (the first layer of a network: 3x3x3): each pixel's
 * kh*kw*cin inputs (padding included) are gathered first, then reduced as one
 * tap; the order of the multiply-adds is the same. */
#define PATCH_MAX 64

static void gather_patch(const fconv_job_t *j, pix_t px, float *patch) {
    const int64_t *g = j->g;
    const int64_t cin = g[3], kh = g[4], kw = g[5];
    for (int64_t a = 0; a < kh; a++)
        for (int64_t b = 0; b < kw; b++) {
            const float *xr = tap_at(j, px, a, b);
            for (int64_t ci = 0; ci < cin; ci++) *patch++ = xr[ci];
        }
}

__attribute__((target("avx2,fma"))) static void patch_tile16(const fconv_job_t *j,
                                                            const float *p0,
                                                            const float *p1,
                                                            const float *p2,
                                                            const float *p3, int64_t r0,
                                                            int np, int64_t c0) {
    const int64_t *g = j->g;
    const int64_t k = g[3] * g[4] * g[5], cout = g[14];
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
    __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    const float *kr = j->k + c0;
    for (int64_t i = 0; i < k; i++) {
        const __m256 w0 = _mm256_loadu_ps(kr + i * cout);
        const __m256 w1 = _mm256_loadu_ps(kr + i * cout + 8);
        __m256 xv = _mm256_broadcast_ss(p0 + i);
        a00 = _mm256_fmadd_ps(xv, w0, a00);
        a01 = _mm256_fmadd_ps(xv, w1, a01);
        xv = _mm256_broadcast_ss(p1 + i);
        a10 = _mm256_fmadd_ps(xv, w0, a10);
        a11 = _mm256_fmadd_ps(xv, w1, a11);
        xv = _mm256_broadcast_ss(p2 + i);
        a20 = _mm256_fmadd_ps(xv, w0, a20);
        a21 = _mm256_fmadd_ps(xv, w1, a21);
        xv = _mm256_broadcast_ss(p3 + i);
        a30 = _mm256_fmadd_ps(xv, w0, a30);
        a31 = _mm256_fmadd_ps(xv, w1, a31);
    }
    float *o = j->out + r0 * cout + c0;
    _mm256_storeu_ps(o, a00);
    _mm256_storeu_ps(o + 8, a01);
    if (np > 1) {
        _mm256_storeu_ps(o + cout, a10);
        _mm256_storeu_ps(o + cout + 8, a11);
    }
    if (np > 2) {
        _mm256_storeu_ps(o + 2 * cout, a20);
        _mm256_storeu_ps(o + 2 * cout + 8, a21);
    }
    if (np > 3) {
        _mm256_storeu_ps(o + 3 * cout, a30);
        _mm256_storeu_ps(o + 3 * cout + 8, a31);
    }
}

/* One pixel x 32 channels in registers (dense layers at small batch). */
__attribute__((target("avx2,fma"))) static void conv_row32(const fconv_job_t *j,
                                                          pix_t px, int64_t r,
                                                          int64_t c0) {
    const int64_t *g = j->g;
    const int64_t cin = g[3], kh = g[4], kw = g[5], cout = g[14];
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t a = 0; a < kh; a++)
        for (int64_t b = 0; b < kw; b++) {
            const float *xr = tap_at(j, px, a, b);
            const float *kr = j->k + (a * kw + b) * cin * cout + c0;
            for (int64_t ci = 0; ci < cin; ci++) {
                const __m256 xv = _mm256_broadcast_ss(xr + ci);
                const float *w = kr + ci * cout;
                a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w), a0);
                a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 8), a1);
                a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 16), a2);
                a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 24), a3);
            }
        }
    float *o = j->out + r * cout + c0;
    _mm256_storeu_ps(o, a0);
    _mm256_storeu_ps(o + 8, a1);
    _mm256_storeu_ps(o + 16, a2);
    _mm256_storeu_ps(o + 24, a3);
}
#endif

#define ROWS_PER_ITEM 16
#define CHANNELS_PER_ITEM 64

/* Item = (block of ROWS_PER_ITEM output pixels, block of 64 channels). */
static void fconv_task(void *ctx, int64_t item, int slot) {
    (void)slot;
    const fconv_job_t *j = (const fconv_job_t *)ctx;
    const int64_t cout = j->g[14];
    const int64_t rows = j->g[0] * j->g[12] * j->g[13];
    const int64_t cblocks = (cout + CHANNELS_PER_ITEM - 1) / CHANNELS_PER_ITEM;
    const int64_t rb = item / cblocks, cb = item % cblocks;
    const int64_t c0 = cb * CHANNELS_PER_ITEM;
    const int64_t c1 = c0 + CHANNELS_PER_ITEM < cout ? c0 + CHANNELS_PER_ITEM : cout;
    const int64_t r1 = (rb + 1) * ROWS_PER_ITEM < rows ? (rb + 1) * ROWS_PER_ITEM : rows;
    /* Output coordinates advance incrementally (no division per pixel). */
    const int64_t *g = j->g;
    const int64_t r_start = rb * ROWS_PER_ITEM;
    int64_t xo = r_start % g[13], yo = (r_start / g[13]) % g[12], no = r_start / (g[12] * g[13]);
    for (int64_t r = r_start; r < r1; r += PIX) {
        const int np = (int)(r1 - r < PIX ? r1 - r : PIX);
        int64_t c = c0;
        pix_t px[PIX];
        for (int p = 0; p < np; p++) {
            px[p].base = no * g[1] * g[2] * g[3];
            px[p].iy = yo * g[6] - g[10];
            px[p].ix = xo * g[7] - g[11];
            if (++xo == g[13]) {
                xo = 0;
                if (++yo == g[12]) {
                    yo = 0;
                    no++;
                }
            }
        }
#if BNN_X86
        if (j->fma_ok) {
            const int64_t taps = j->g[4] * j->g[5];
            if (taps > 1 && taps * j->g[3] <= PATCH_MAX && c + 16 <= c1) {
                float patch[PIX][PATCH_MAX];
                for (int p = 0; p < np; p++) gather_patch(j, px[p], patch[p]);
                for (; c + 16 <= c1; c += 16)
                    patch_tile16(j, patch[0], patch[np > 1 ? 1 : 0], patch[np > 2 ? 2 : 0],
                                 patch[np > 3 ? 3 : 0], r, np, c);
            }
            if (np == 1) {
                for (; c + 32 <= c1; c += 32) conv_row32(j, px[0], r, c);
            }
            for (; c + 16 <= c1; c += 16) conv_tile16(j, px, r, np, c);
        }
#endif
        if (c < c1) conv_scalar(j, r, np, c, c1);
    }
}

static void dwconv_task(void *ctx, int64_t r, int slot) {
    (void)slot;
    const fconv_job_t *j = (const fconv_job_t *)ctx;
    const int64_t *g = j->g;
    const int64_t cin = g[3], kh = g[4], kw = g[5], cout = g[14], dm = g[15];
    float *o = j->out + r * cout;
    const pix_t px = pixel(j, r);
    for (int64_t c = 0; c < cout; c++) o[c] = 0.0f;
    for (int64_t a = 0; a < kh; a++)
        for (int64_t b = 0; b < kw; b++) {
            const float *xr = tap_at(j, px, a, b);
            const float *kr = j->k + (a * kw + b) * cout; /* (kh, kw, cin, dm) */
            if (dm == 1) {
                for (int64_t c = 0; c < cin; c++) {
                    const float m = xr[c] * kr[c];
                    o[c] = o[c] + m;
                }
            } else {
                for (int64_t c = 0; c < cin; c++)
                    for (int64_t q = 0; q < dm; q++) {
                        const float m = xr[c] * kr[c * dm + q];
                        o[c * dm + q] = o[c * dm + q] + m;
                    }
            }
        }
}

int bnn_fconv(const float *x, const float *k, float *out, const int64_t *g,
              float pad_value, int depthwise, int threads) {
    const int64_t cin = g[3];
    float *pad = (float *)malloc((size_t)(cin > 0 ? cin : 1) * sizeof(float));
    if (!pad) return -1;
    for (int64_t c = 0; c < cin; c++) pad[c] = pad_value;
    fconv_job_t j = {x, k, out, g, pad, 0};
#if BNN_X86
    __builtin_cpu_init();
    j.fma_ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    const int64_t rows = g[0] * g[12] * g[13];
    if (depthwise)
        pool_run(rows, dwconv_task, &j, rows * g[14] > 8192 ? threads : 1);
    else
        pool_run((rows + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM *
                     ((g[14] + CHANNELS_PER_ITEM - 1) / CHANNELS_PER_ITEM),
                 fconv_task, &j, threads);
    free(pad);
    return 0;
}

/* ---- float max pooling (NHWC) -------------------------------------------- */

typedef struct {
    const float *x;
    float *out;
    const int64_t *g;
} fpool_job_t;

static void fmaxpool_task(void *ctx, int64_t r, int slot) {
    (void)slot;
    const fpool_job_t *p = (const fpool_job_t *)ctx;
    const int64_t h = p->g[1], w = p->g[2], c = p->g[3], ph = p->g[4], pw = p->g[5],
                  sh = p->g[6], sw = p->g[7], pt = p->g[8], pl = p->g[9], oh = p->g[10],
                  ow = p->g[11];
    const int64_t b = r / (oh * ow), y = (r / ow) % oh, xo = r % ow;
    float *o = p->out + r * c;
    int first = 1;
    for (int64_t i = 0; i < ph; i++) {
        const int64_t ih = y * sh - pt + i;
        if (ih < 0 || ih >= h) continue;
        for (int64_t j = 0; j < pw; j++) {
            const int64_t iw = xo * sw - pl + j;
            if (iw < 0 || iw >= w) continue;
            const float *v = p->x + ((b * h + ih) * w + iw) * c;
            if (first) {
                memcpy(o, v, (size_t)c * sizeof(float));
                first = 0;
            } else {
                for (int64_t k = 0; k < c; k++) o[k] = v[k] > o[k] ? v[k] : o[k];
            }
        }
    }
}

void bnn_fmaxpool(const float *x, float *out, const int64_t *g, int threads) {
    fpool_job_t p = {x, out, g};
    const int64_t rows = g[0] * g[10] * g[11];
    pool_run(rows, fmaxpool_task, &p, rows * g[3] > 16384 ? threads : 1);
}
