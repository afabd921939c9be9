/*
 * Float convolutions that round exactly like TensorFlow's CPU kernels for the
 * shapes the planner verifies (it compares against the Keras layer on a probe
 * input before using them):
 *
 * - convolution: each output is a chain of fused multiply-adds over the taps
 *   in row-major order and, within a tap, over the input channels in order,
 *   starting from 0.0f;
 * - depthwise convolution: a product then an add (no fusion) per tap, taps in
 *   row-major order, starting from 0.0f.
 *
 * Padded positions read a row filled with the padding value (0 for Keras's
 * "same" padding), which leaves every sum unchanged up to the sign of zero.
 *
 * Only the grouping of outputs changes between code paths (which outputs share
 * a vector, a register tile, a thread); the operations that produce one output
 * are the same everywhere, so the AVX2/FMA kernels and the portable scalar
 * fallback give identical bits. Work is handed to the pool in items of about
 * 8 us (blocks of output pixels, and of channels when pixels are few), as many
 * as a multiple of the thread count when possible.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "pool.h"

#if BNN_X86
#include <immintrin.h>
#endif

#define PMAX 6                /* output pixels per register tile (at most) */
/* Pool items: about ITEM_NS of work each (single-thread estimate), and no
 * threads for jobs under MIN_PARALLEL_NS (a spinning worker joins within a
 * microsecond or so; a sleeping one much later, and the pool learns that). */
#define ITEM_NS 8000.0
#define MIN_PARALLEL_NS 5000.0
/* Throughput estimates (per ns, one thread, Zen3 at ~2.8 GHz): FMA tiles,
 * depthwise products+adds, max-pool comparisons. */
#define CONV_MACS_PER_NS 35.0
#define DW_MACS_PER_NS 9.0
#define POOL_CMPS_PER_NS 16.0
#define KBLOCK_BYTES (64 << 10) /* kernel bytes per channel block */
#define PACK_MIN_COUT 512        /* pack kernel panels from this many channels */
#define PACK_KBLOCK_BYTES (16 << 10) /* kernel bytes per channel block (L2) */

/* Number of items for `ns` of work: about one per ITEM_NS, a multiple of
 * `threads` when there is enough work for threads at all. */
static int64_t item_target(double ns, int threads) {
    int64_t n = (int64_t)(ns / ITEM_NS) + 1;
    if (threads > 1 && ns >= MIN_PARALLEL_NS) {
        if (n < threads) n = threads;
        n = (n + threads - 1) / threads * threads;
    }
    return n;
}

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

typedef struct {
    const float *x, *k;
    float *out;
    const int64_t *g; /* n h w cin kh kw sh sw dh dw pt pl oh ow cout depth_mult */
    const float *pad; /* a row of max(cin, seg_len) padding values */
    int simd;
    /* Regular convolution: each pixel's receptive field is nseg segments of
     * seg_len contiguous floats (a kernel row of kw*cin values when the width
     * is not dilated, else one tap of cin values), kernel rows in the same
     * order: segment s, element e is kernel row s*seg_len + e. */
    int64_t nseg, seg_len;
    int tile_p, tile_nv;  /* register tile: tile_p pixels x tile_nv*8 channels */
    int64_t rows;         /* output pixels (n*oh*ow) */
    int64_t ptiles, pblocks, ctiles, cblocks;
    int64_t tpr;          /* pixel tiles per output row (0: tiles of the
                           * flattened pixels, crossing rows) */
    const float **segs;   /* per slot: PMAX*nseg segment pointers (or taps) */
    float *gather;        /* per slot: PMAX*kh*seg_len floats, partly padded rows */
    int64_t gather_len;
    int flat;             /* 1x1, stride 1, unpadded: pixels contiguous */
    int pack;             /* pack kernel panels per item */
    float *packbuf;       /* per slot: pack_len floats */
    int64_t pack_len;
} fconv_job_t;

/* Position of output pixel r: image offset and top-left input coordinates. */
typedef struct {
    int64_t base;
    int64_t iy, ix;
} pix_t;

/* Walks output pixels in order without a division per pixel. */
typedef struct {
    int64_t n, y, x;
} cursor_t;

static cursor_t cursor_at(const int64_t *g, int64_t r) {
    cursor_t c = {r / (g[12] * g[13]), (r / g[13]) % g[12], r % g[13]};
    return c;
}

static inline pix_t cursor_pix(const int64_t *g, cursor_t *c) {
    pix_t p = {c->n * g[1] * g[2] * g[3], c->y * g[6] - g[10], c->x * g[7] - g[11]};
    if (++c->x == g[13]) {
        c->x = 0;
        if (++c->y == g[12]) {
            c->y = 0;
            c->n++;
        }
    }
    return p;
}

/* Walks pixel tiles of P output pixels: tpr per output row (the last one
 * partial), or, when tpr is 0, tiles of the flattened pixels (crossing rows
 * and images). Divides only at the start. */
typedef struct {
    int64_t P, tpr, oh, ow, rows;
    int64_t r;    /* first pixel of the current tile */
    cursor_t cur; /* its coordinates */
} walk_t;

static inline void walk_start(walk_t *w, const int64_t *g, int64_t P, int64_t tpr,
                              int64_t t) {
    w->P = P;
    w->tpr = tpr;
    w->oh = g[12];
    w->ow = g[13];
    w->rows = g[0] * g[12] * g[13];
    if (tpr) {
        const int64_t row = t / tpr;
        w->cur.n = row / w->oh;
        w->cur.y = row % w->oh;
        w->cur.x = t % tpr * P;
        w->r = row * w->ow + w->cur.x;
    } else {
        w->r = t * P;
        w->cur = cursor_at(g, w->r);
    }
}

/* Pixels of the current tile; *full: full tiles from it on in its row (or
 * in all, when tpr is 0). */
static inline int walk_pixels(const walk_t *w, int64_t *full) {
    const int64_t left = w->tpr ? w->ow - w->cur.x : w->rows - w->r;
    *full = left / w->P;
    return (int)(left < w->P ? left : w->P);
}

/* Moves on by k tiles (within the row when tpr). */
static inline void walk_next(walk_t *w, int64_t k) {
    int64_t step = k * w->P;
    if (w->tpr && w->cur.x + step >= w->ow) step = w->ow - w->cur.x; /* row end */
    w->r += step;
    w->cur.x += step;
    if (w->cur.x >= w->ow) {
        int64_t rows = w->cur.x / w->ow;
        w->cur.x -= rows * w->ow;
        w->cur.y += rows;
        if (w->cur.y >= w->oh) {
            w->cur.n += w->cur.y / w->oh;
            w->cur.y %= w->oh;
        }
    }
}

/* Input row (cin values) of a pixel at tap (a, b), or the padding row. */
static inline const float *tap_at(const fconv_job_t *j, pix_t p, int64_t a, int64_t b) {
    const int64_t *g = j->g;
    const int64_t ih = p.iy + a * g[8], iw = p.ix + b * g[9];
    if (ih < 0 || ih >= g[1] || iw < 0 || iw >= g[2]) return j->pad;
    return j->x + p.base + (ih * g[2] + iw) * g[3];
}

/* Channels [c0, c1) of np pixels from r0, scalar fmaf (the portable path). */
static void conv_scalar(const fconv_job_t *j, int64_t r0, int np, int64_t c0,
                        int64_t c1) {
    const int64_t *g = j->g;
    const int64_t cin = g[3], kh = g[4], kw = g[5], cout = g[14];
    cursor_t cur = cursor_at(g, r0);
    for (int p = 0; p < np; p++) {
        const pix_t px = cursor_pix(g, &cur);
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

/* Segment pointers of one pixel (see fconv_job_t); partly padded kernel rows
 * are copied to `gather` with their padding. */
static inline void pixel_segments(const fconv_job_t *j, pix_t px, const float **seg,
                                  float *gather) {
    const int64_t *g = j->g;
    const int64_t h = g[1], w = g[2], cin = g[3], kh = g[4], kw = g[5], dh = g[8];
    if (j->nseg == kh) { /* rows of kw*cin contiguous floats */
        const int inside = px.ix >= 0 && px.ix + kw <= w;
        for (int64_t a = 0; a < kh; a++) {
            const int64_t ih = px.iy + a * dh;
            if (ih < 0 || ih >= h) {
                seg[a] = j->pad;
            } else if (inside) {
                seg[a] = j->x + px.base + (ih * w + px.ix) * cin;
            } else {
                float *d = gather + a * j->seg_len;
                for (int64_t b = 0; b < kw; b++) {
                    const int64_t iw = px.ix + b;
                    const float *src = iw >= 0 && iw < w
                                           ? j->x + px.base + (ih * w + iw) * cin
                                           : j->pad;
                    memcpy(d + b * cin, src, (size_t)cin * sizeof(float));
                }
                seg[a] = d;
            }
        }
    } else { /* dilated width: one segment per tap */
        for (int64_t a = 0; a < kh; a++)
            for (int64_t b = 0; b < kw; b++) seg[a * kw + b] = tap_at(j, px, a, b);
    }
}

#if BNN_X86
/* One register tile of P pixels x NV vectors of 8 channels, each output one
 * FMA chain over its segments' elements in order (taps row-major, then input
 * channels), from 0. Segment s of pixel p: seg[p * nseg + s], or if STEP,
 * seg[s] + off + p * step. Kernel rows kld floats apart; the last vector is
 * masked when MASKED (channel tail). */
static inline __attribute__((always_inline, target("avx2,fma"))) void conv_tile1(
    const float *const *seg, int64_t nseg, int64_t len, int64_t step, int64_t off,
    const float *k, int64_t kld, int64_t cout, float *o, __m256i mask, const int P,
    const int NV, const int MASKED, const int STEP) {
    __m256 acc[PMAX][4];
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[p][v] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nseg; s++) {
        const float *xp[PMAX];
#pragma GCC unroll 8
        for (int p = 0; p < P; p++)
            xp[p] = STEP ? seg[s] + (off + p * step) : seg[p * nseg + s];
        const float *w = k + s * len * kld;
        for (int64_t e = 0; e < len; e++, w += kld) {
            __m256 wv[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                wv[v] = MASKED && v == NV - 1 ? _mm256_maskload_ps(w + 8 * v, mask)
                                              : _mm256_loadu_ps(w + 8 * v);
#pragma GCC unroll 8
            for (int p = 0; p < P; p++) {
                const __m256 xv = _mm256_broadcast_ss(xp[p] + e);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    acc[p][v] = _mm256_fmadd_ps(xv, wv[v], acc[p][v]);
            }
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            if (MASKED && v == NV - 1)
                _mm256_maskstore_ps(o + p * cout + 8 * v, mask, acc[p][v]);
            else
                _mm256_storeu_ps(o + p * cout + 8 * v, acc[p][v]);
        }
}

/* ntiles consecutive tiles if STEP (pixels of one row, or contiguous), else
 * one tile. */
static inline __attribute__((always_inline, target("avx2,fma"))) void conv_tile(
    const float *const *seg, int64_t nseg, int64_t len, int64_t step, int64_t ntiles,
    const float *k, int64_t kld, int64_t cout, float *o, __m256i mask, const int P,
    const int NV, const int MASKED, const int STEP) {
    if (!STEP) {
        conv_tile1(seg, nseg, len, 0, 0, k, kld, cout, o, mask, P, NV, MASKED, 0);
        return;
    }
    for (int64_t tt = 0; tt < ntiles; tt++)
        conv_tile1(seg, nseg, len, step, tt * P * step, k, kld, cout, o + tt * P * cout,
                   mask, P, NV, MASKED, 1);
}

typedef void (*tile_fn)(const float *const *, int64_t, int64_t, int64_t, int64_t,
                        const float *, int64_t, int64_t, float *, __m256i);

#define TILE_FN(P, NV, M, S)                                                           \
    __attribute__((target("avx2,fma"))) static void tile_##P##_##NV##_##M##_##S(     \
        const float *const *seg, int64_t nseg, int64_t len, int64_t step,             \
        int64_t ntiles, const float *k, int64_t kld, int64_t cout, float *o,           \
        __m256i mask) {                                                                \
        conv_tile(seg, nseg, len, step, ntiles, k, kld, cout, o, mask, P, NV, M, S);   \
    }
#define TILE_FNS_P(P, S)                                                               \
    TILE_FN(P, 1, 0, S)                                                                \
    TILE_FN(P, 1, 1, S) TILE_FN(P, 2, 0, S) TILE_FN(P, 2, 1, S) TILE_FN(P, 3, 0, S)    \
        TILE_FN(P, 3, 1, S) TILE_FN(P, 4, 0, S) TILE_FN(P, 4, 1, S)
TILE_FNS_P(1, 0)
TILE_FNS_P(2, 0)
TILE_FNS_P(3, 0)
TILE_FNS_P(4, 0)
TILE_FNS_P(5, 0)
TILE_FNS_P(6, 0)
TILE_FNS_P(6, 1)
#define TILE_ROW(P, S)                                                                 \
    {{tile_##P##_1_0_##S, tile_##P##_1_1_##S},                                         \
     {tile_##P##_2_0_##S, tile_##P##_2_1_##S},                                         \
     {tile_##P##_3_0_##S, tile_##P##_3_1_##S},                                         \
     {tile_##P##_4_0_##S, tile_##P##_4_1_##S}}
/* tiles[P - 1][NV - 1][masked]: segments per pixel; step_tiles: PMAX pixels
 * of one row, segments of pixel 0 plus steps. */
static const tile_fn tiles[PMAX][4][2] = {TILE_ROW(1, 0), TILE_ROW(2, 0), TILE_ROW(3, 0),
                                          TILE_ROW(4, 0), TILE_ROW(5, 0), TILE_ROW(6, 0)};
static const tile_fn step_tiles[4][2] = TILE_ROW(6, 1);

__attribute__((target("avx2"))) static __m256i tail_mask(int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
}

/* Runs of PMAX-pixel tiles whose receptive fields lie inside the input (no
 * padding) and whose pixels are one stride apart: those of one output row, or
 * any when flat. Sets the segment pointers of the first pixel (pixel p's are
 * these plus p * step) and returns the number of such tiles from cur, at most
 * max_tiles (0: the next tile is not such a tile). */
static int64_t row_run(const fconv_job_t *j, const cursor_t *cur, int64_t max_tiles,
                       const float **seg, int64_t *step) {
    const int64_t *g = j->g;
    const int64_t h = g[1], w = g[2], cin = g[3], kh = g[4], kw = g[5], sw = g[7],
                  dh = g[8], dw = g[9], pl = g[11], ow = g[13], nseg = j->nseg;
    if (j->flat) { /* 1x1, stride 1, no padding: pixel r at x + r * cin */
        seg[0] = j->x + ((cur->n * g[12] + cur->y) * ow + cur->x) * cin;
        *step = cin;
        return max_tiles;
    }
    const int64_t iy = cur->y * g[6] - g[10], ix = cur->x * sw - pl;
    if (ix < 0 || iy < 0 || iy + (kh - 1) * dh >= h) return 0;
    /* last output column whose window ends inside the row */
    const int64_t last = imin(ow - 1, (w - 1 - (kw - 1) * dw + pl) / sw);
    const int64_t n = imin(max_tiles, (last - cur->x + 1) / PMAX);
    if (n <= 0) return 0;
    const float *x0 = j->x + ((cur->n * h + iy) * w + ix) * cin;
    if (nseg == kh) {
        for (int64_t a = 0; a < kh; a++) seg[a] = x0 + a * dh * w * cin;
    } else {
        for (int64_t a = 0; a < kh; a++)
            for (int64_t b = 0; b < kw; b++)
                seg[a * kw + b] = x0 + (a * dh * w + b * dw) * cin;
    }
    *step = sw * cin;
    return n;
}

/* Pixel tiles [t0, t1) x channel tiles [u0, u1) with the AVX2/FMA tiles. */
__attribute__((target("avx2,fma"))) static void conv_block_simd(const fconv_job_t *j,
                                                              int slot, int64_t t0,
                                                              int64_t t1, int64_t u0,
                                                              int64_t u1) {
    const int64_t *g = j->g;
    const int64_t cout = g[14], nseg = j->nseg, len = j->seg_len, P = j->tile_p,
                  W = 8 * j->tile_nv;
    const float **seg = j->segs + (size_t)slot * PMAX * nseg;
    float *gather = j->gather + (size_t)slot * j->gather_len;
    const int64_t row_len = j->gather_len / PMAX;
    const int64_t c0 = u0 * W, c1 = imin(u1 * W, cout);
    const float *k = j->k;
    float *out = j->out;
    /* Full-width channel tiles of the block packed as contiguous K x W panels
     * (kernel rows cout floats apart share few L1 sets when cout is large). */
    float *panels = NULL;
    const int64_t K = nseg * len;
    if (j->pack) {
        panels = j->packbuf + (size_t)slot * j->pack_len;
        for (int64_t c = c0; c + W <= c1; c += W) {
            float *d = panels + (c - c0) * K;
            const float *src = k + c;
            for (int64_t i = 0; i < K; i++, d += W, src += cout)
                for (int64_t v = 0; v < W; v += 8)
                    _mm256_storeu_ps(d + v, _mm256_loadu_ps(src + v));
        }
    }
    const __m256i tail = tail_mask(cout % 8);
    walk_t wk;
    walk_start(&wk, g, P, j->tpr, t0);
    for (int64_t t = t0; t < t1;) {
        int64_t full;
        const int np = walk_pixels(&wk, &full);
        const int64_t r = wk.r;
        int64_t step = 0, ntiles = 0;
        if (P == PMAX && np == PMAX)
            ntiles = row_run(j, &wk.cur, imin(t1 - t, full), seg, &step);
        if (ntiles == 0) {
            cursor_t cur = wk.cur;
            for (int p = 0; p < np; p++)
                pixel_segments(j, cursor_pix(g, &cur), seg + p * nseg,
                               gather + p * row_len);
        }
        float *o = out + r * cout;
        for (int64_t c = c0; c < c1; c += W) {
            const int64_t left = imin(W, c1 - c);
            const int nv = (int)((left + 7) / 8);
            const int masked = left % 8 != 0;
            const float *kc = k + c;
            int64_t kld = cout;
            if (panels && left == W) {
                kc = panels + (c - c0) * K;
                kld = W;
            }
            if (ntiles > 0)
                step_tiles[nv - 1][masked](seg, nseg, len, step, ntiles, kc, kld, cout,
                                           o + c, tail);
            else
                tiles[np - 1][nv - 1][masked](seg, nseg, len, 0, 1, kc, kld, cout, o + c,
                                              tail);
        }
        t += ntiles > 0 ? ntiles : 1;
        walk_next(&wk, ntiles > 0 ? ntiles : 1);
    }
}
#endif

/* Item = (block of pixel tiles, block of channel tiles). */
static void fconv_task(void *ctx, int64_t item, int slot) {
    const fconv_job_t *j = (const fconv_job_t *)ctx;
    const int64_t pb = item / j->cblocks, cb = item % j->cblocks;
    const int64_t t0 = pb * j->ptiles / j->pblocks, t1 = (pb + 1) * j->ptiles / j->pblocks;
    const int64_t u0 = cb * j->ctiles / j->cblocks, u1 = (cb + 1) * j->ctiles / j->cblocks;
    if (t0 >= t1 || u0 >= u1) return;
#if BNN_X86
    if (j->simd) {
        conv_block_simd(j, slot, t0, t1, u0, u1);
        return;
    }
#endif
    (void)slot;
    const int64_t W = 8 * j->tile_nv;
    const int64_t c1 = imin(u1 * W, j->g[14]);
    walk_t wk;
    walk_start(&wk, j->g, j->tile_p, j->tpr, t0);
    for (int64_t t = t0; t < t1; t++, walk_next(&wk, 1)) {
        int64_t full;
        const int np = walk_pixels(&wk, &full);
        conv_scalar(j, wk.r, np, u0 * W, c1);
    }
}

static int run_conv(fconv_job_t *j, int threads) {
    const int64_t *g = j->g;
    const int64_t cin = g[3], kh = g[4], kw = g[5], cout = g[14];
    const int64_t K = kh * kw * cin;
    j->rows = g[0] * g[12] * g[13];
    /* Register tile: 6 pixels x 16 channels, 12 accumulators for the two FMA
     * pipes (as fast as 3 x 32 or faster on QuickNet's 1x1 convolutions); one
     * pixel x 32 channels for a single row (dense layers at batch 1). */
    j->tile_p = j->rows == 1 ? 1 : PMAX;
    j->tile_nv = j->rows == 1 ? 4 : cout <= 8 ? 1 : 2;
    const int64_t W = 8 * j->tile_nv;
    /* Tiles aligned to output rows when rows are long: a tile of one row
     * whose windows are inside the input needs no per-pixel pointers. */
    const int flat = kh == 1 && kw == 1 && g[6] == 1 && g[7] == 1 && g[10] == 0 &&
                     g[11] == 0 && g[12] == g[1] && g[13] == g[2];
    j->tpr = flat || g[13] < 4 * PMAX ? 0 : (g[13] + j->tile_p - 1) / j->tile_p;
    j->ptiles = j->tpr ? g[0] * g[12] * j->tpr : (j->rows + j->tile_p - 1) / j->tile_p;
    j->ctiles = (cout + W - 1) / W;
    const double work = (double)j->rows * (double)cout * (double)K;
    const int64_t n = item_target(work / CONV_MACS_PER_NS, threads);
    /* Channel blocks whose kernel columns stay in cache, then pixel blocks.
     * Kernel rows 2 KB or more apart map to few L1 sets: then each item
     * packs its columns into contiguous panels (measured: helps from 512
     * channels, costs a little below). */
    const int pack = j->simd && cout >= PACK_MIN_COUT && j->ptiles > 1;
    const int64_t kblock = pack ? PACK_KBLOCK_BYTES : KBLOCK_BYTES;
    int64_t cblocks = imin(j->ctiles, imax(1, K * cout * 4 / kblock + 1));
    int64_t pblocks = imin(j->ptiles, (n + cblocks - 1) / cblocks);
    if (pblocks * cblocks < n) cblocks = imin(j->ctiles, (n + pblocks - 1) / pblocks);
    while (threads > 1 && pblocks * cblocks > 1 && (pblocks * cblocks) % threads) {
        if (pblocks < j->ptiles)
            pblocks++;
        else if (cblocks < j->ctiles)
            cblocks++;
        else
            break;
    }
    j->pblocks = pblocks;
    j->cblocks = cblocks;
    const int slots = threads > 1 ? threads : 1;
    j->nseg = (g[9] == 1 || kw == 1) ? kh : kh * kw;
    j->seg_len = K / j->nseg;
    j->flat = flat;
    j->gather_len = j->nseg == kh ? PMAX * kh * j->seg_len : 0;
    j->segs = NULL;
    j->gather = NULL;
    j->packbuf = NULL;
    j->pack = pack;
    j->pack_len = j->pack ? K * W * ((j->ctiles + cblocks - 1) / cblocks) : 0;
    if (j->pack) {
        j->packbuf = (float *)malloc((size_t)slots * j->pack_len * sizeof(float));
        if (!j->packbuf) return -1;
    }
    if (j->simd) {
        j->segs = (const float **)malloc((size_t)slots * PMAX * j->nseg * sizeof(float *));
        j->gather = (float *)malloc((size_t)imax(1, slots * j->gather_len) * sizeof(float));
        if (!j->segs || !j->gather) {
            free((void *)j->segs);
            free(j->gather);
            free(j->packbuf);
            return -1;
        }
    }
    pool_run(pblocks * cblocks, fconv_task, j, threads);
    free((void *)j->segs);
    free(j->gather);
    free(j->packbuf);
    return 0;
}

/* ---- depthwise ----------------------------------------------------------- */

/* Each output is a chain of dependent adds (one per tap, 3 cycles each), so a
 * register tile holds Q pixels x NV vectors to keep 8 chains going: Q = 8, 4
 * or 2 for 8, 16 or 32+ channels. */
#define DW_QMAX 8

typedef struct {
    const fconv_job_t *j;
    int64_t rows, blocks;
    int q;              /* pixels per tile */
    int64_t tiles, tpr; /* pixel tiles; per output row (0: flattened pixels) */
    const float **taps; /* per slot: DW_QMAX*kh*kw tap pointers */
} dw_job_t;

/* Tap pointers of one output pixel (padding row for padded taps). */
static inline void pixel_taps(const fconv_job_t *j, pix_t px, const float **taps) {
    const int64_t *g = j->g;
    const int64_t h = g[1], w = g[2], cin = g[3], kh = g[4], kw = g[5], dh = g[8],
                  dw = g[9];
    if (px.iy >= 0 && px.iy + (kh - 1) * dh < h && px.ix >= 0 &&
        px.ix + (kw - 1) * dw < w) {
        const float *x0 = j->x + px.base + (px.iy * w + px.ix) * cin;
        for (int64_t a = 0; a < kh; a++)
            for (int64_t b = 0; b < kw; b++)
                taps[a * kw + b] = x0 + (a * dh * w + b * dw) * cin;
    } else {
        for (int64_t a = 0; a < kh; a++)
            for (int64_t b = 0; b < kw; b++) taps[a * kw + b] = tap_at(j, px, a, b);
    }
}

static void dw_pixel_scalar(const fconv_job_t *j, const float *const *taps, float *o) {
    const int64_t *g = j->g;
    const int64_t cin = g[3], ntaps = g[4] * g[5], cout = g[14], dm = g[15];
    for (int64_t c = 0; c < cout; c++) o[c] = 0.0f;
    for (int64_t t = 0; t < ntaps; t++) {
        const float *xr = taps[t];
        const float *kr = j->k + t * cout; /* (kh, kw, cin, dm) */
        for (int64_t c = 0; c < cin; c++)
            for (int64_t q = 0; q < dm; q++) {
                const float m = xr[c] * kr[c * dm + q];
                o[c * dm + q] = o[c * dm + q] + m;
            }
    }
}

#if BNN_X86
/* Channels [c, c + 8*NV) (the last vector masked when MASKED) of Q pixels
 * (only the first np are stored): per tap a product then an add, as in
 * dw_pixel_scalar. Depth multiplier 1. Tap t of pixel q: taps[t] + off +
 * q * step if STEP (pixels one stride apart, inside the input), else
 * taps[q * ntaps + t]. */
static inline __attribute__((always_inline, target("avx2"))) void dw_tile1(
    const float *const *taps, int64_t ntaps, int64_t step, int64_t off, const float *k,
    int64_t cout, int64_t c, float *o, int np, __m256i mask, const int Q, const int NV,
    const int MASKED, const int STEP) {
    __m256 acc[DW_QMAX][4];
#pragma GCC unroll 8
    for (int q = 0; q < Q; q++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[q][v] = _mm256_setzero_ps();
    for (int64_t t = 0; t < ntaps; t++) {
        const float *kr = k + t * cout + c;
        __m256 kv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            kv[v] = MASKED && v == NV - 1 ? _mm256_maskload_ps(kr + 8 * v, mask)
                                          : _mm256_loadu_ps(kr + 8 * v);
#pragma GCC unroll 8
        for (int q = 0; q < Q; q++) {
            const float *xr = (STEP ? taps[t] + (off + q * step) : taps[q * ntaps + t]) + c;
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                const __m256 xv = MASKED && v == NV - 1
                                      ? _mm256_maskload_ps(xr + 8 * v, mask)
                                      : _mm256_loadu_ps(xr + 8 * v);
                acc[q][v] = _mm256_add_ps(acc[q][v], _mm256_mul_ps(xv, kv[v]));
            }
        }
    }
#pragma GCC unroll 8
    for (int q = 0; q < Q; q++) {
        if (!STEP && q >= np) break;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            if (MASKED && v == NV - 1)
                _mm256_maskstore_ps(o + q * cout + c + 8 * v, mask, acc[q][v]);
            else
                _mm256_storeu_ps(o + q * cout + c + 8 * v, acc[q][v]);
        }
    }
}

/* STEP: n consecutive full tiles; else one tile of n pixels. */
static inline __attribute__((always_inline, target("avx2"))) void dw_tile(
    const float *const *taps, int64_t ntaps, int64_t step, int64_t n, const float *k,
    int64_t cout, int64_t c, float *o, __m256i mask, const int Q, const int NV,
    const int MASKED, const int STEP) {
    if (!STEP) {
        dw_tile1(taps, ntaps, 0, 0, k, cout, c, o, (int)n, mask, Q, NV, MASKED, 0);
        return;
    }
    for (int64_t tt = 0; tt < n; tt++)
        dw_tile1(taps, ntaps, step, tt * Q * step, k, cout, c, o + tt * Q * cout, Q, mask,
                 Q, NV, MASKED, 1);
}

typedef void (*dw_fn)(const float *const *, int64_t, int64_t, int64_t, const float *,
                      int64_t, int64_t, float *, __m256i);
#define DW_FN(Q, NV, M, S)                                                             \
    __attribute__((target("avx2"))) static void dw_##Q##_##NV##_##M##_##S(           \
        const float *const *taps, int64_t ntaps, int64_t step, int64_t n,              \
        const float *k, int64_t cout, int64_t c, float *o, __m256i mask) {              \
        dw_tile(taps, ntaps, step, n, k, cout, c, o, mask, Q, NV, M, S);                \
    }
#define DW_FNS(S)                                                                      \
    DW_FN(8, 1, 0, S)                                                                  \
    DW_FN(8, 1, 1, S) DW_FN(4, 1, 0, S) DW_FN(4, 1, 1, S) DW_FN(4, 2, 0, S)            \
        DW_FN(2, 1, 0, S) DW_FN(2, 1, 1, S) DW_FN(2, 4, 0, S)
DW_FNS(0)
DW_FNS(1)
/* [step][Q == 8 ? 0 : Q == 4 ? 1 : 2][0: widest, 1: one vector, 2: masked] */
static const dw_fn dw_fns[2][3][3] = {
    {{dw_8_1_0_0, dw_8_1_0_0, dw_8_1_1_0},
     {dw_4_2_0_0, dw_4_1_0_0, dw_4_1_1_0},
     {dw_2_4_0_0, dw_2_1_0_0, dw_2_1_1_0}},
    {{dw_8_1_0_1, dw_8_1_0_1, dw_8_1_1_1},
     {dw_4_2_0_1, dw_4_1_0_1, dw_4_1_1_1},
     {dw_2_4_0_1, dw_2_1_0_1, dw_2_1_1_1}}};

/* All channels of n full tiles (use_step) or of one tile of n pixels, depth
 * multiplier 1 (see dw_tile1 for taps, step). */
__attribute__((target("avx2"))) static void dw_pixels_simd(const fconv_job_t *j,
                                                          const float *const *taps,
                                                          int64_t step, int use_step,
                                                          int64_t n, float *o, int Q) {
    const int64_t ntaps = j->g[4] * j->g[5], cout = j->g[14];
    const float *k = j->k;
    const __m256i none = _mm256_setzero_si256();
    const dw_fn *f = dw_fns[use_step][Q == 8 ? 0 : Q == 4 ? 1 : 2];
    const int64_t wide = Q == 8 ? 8 : Q == 4 ? 16 : 32;
    int64_t c = 0;
    for (; c + wide <= cout; c += wide) f[0](taps, ntaps, step, n, k, cout, c, o, none);
    for (; c + 8 <= cout; c += 8) f[1](taps, ntaps, step, n, k, cout, c, o, none);
    if (c < cout) f[2](taps, ntaps, step, n, k, cout, c, o, tail_mask(cout - c));
}

/* Output channels [c, c + 8*NV) of one pixel, depth multiplier a multiple of
 * 8 (each vector reads one input channel). */
static inline __attribute__((always_inline, target("avx2"))) void dw_chunk_bcast(
    const float *const *taps, int64_t ntaps, const float *k, int64_t cout, int64_t dm,
    int64_t c, float *o, const int NV) {
    __m256 acc[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[v] = _mm256_setzero_ps();
    for (int64_t t = 0; t < ntaps; t++) {
        const float *xr = taps[t], *kr = k + t * cout + c;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            const __m256 xv = _mm256_broadcast_ss(xr + (c + 8 * v) / dm);
            acc[v] = _mm256_add_ps(acc[v], _mm256_mul_ps(xv, _mm256_loadu_ps(kr + 8 * v)));
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) _mm256_storeu_ps(o + c + 8 * v, acc[v]);
}

__attribute__((target("avx2"))) static void dw_pixel_bcast(const fconv_job_t *j,
                                                          const float *const *taps,
                                                          float *o) {
    const int64_t ntaps = j->g[4] * j->g[5], cout = j->g[14], dm = j->g[15];
    int64_t c = 0;
    for (; c + 32 <= cout; c += 32) dw_chunk_bcast(taps, ntaps, j->k, cout, dm, c, o, 4);
    for (; c < cout; c += 8) dw_chunk_bcast(taps, ntaps, j->k, cout, dm, c, o, 1);
}
#endif

#if BNN_X86
/* Runs of full tiles (Q pixels) in one output row whose windows lie inside
 * the input, from cur: sets the tap pointers of the first pixel (pixel q's
 * are these plus q * step) and returns the number of tiles, at most
 * max_tiles (0: the next tile is not such a tile). */
static int64_t dw_row_run(const fconv_job_t *j, const cursor_t *cur, int Q,
                          int64_t max_tiles, const float **taps, int64_t *step) {
    const int64_t *g = j->g;
    const int64_t h = g[1], w = g[2], cin = g[3], kh = g[4], kw = g[5], sw = g[7],
                  dh = g[8], dw = g[9], pl = g[11];
    const int64_t iy = cur->y * g[6] - g[10], ix = cur->x * sw - pl;
    if (ix < 0 || iy < 0 || iy + (kh - 1) * dh >= h) return 0;
    const int64_t last = imin(g[13] - 1, (w - 1 - (kw - 1) * dw + pl) / sw);
    const int64_t n = imin(max_tiles, (last - cur->x + 1) / Q);
    if (n <= 0) return 0;
    const float *x0 = j->x + ((cur->n * h + iy) * w + ix) * cin;
    for (int64_t a = 0; a < kh; a++)
        for (int64_t b = 0; b < kw; b++)
            taps[a * kw + b] = x0 + (a * dh * w + b * dw) * cin;
    *step = sw * cin;
    return n;
}
#endif

/* Item = a block of pixel tiles. */
static void dwconv_task(void *ctx, int64_t item, int slot) {
    const dw_job_t *d = (const dw_job_t *)ctx;
    const fconv_job_t *j = d->j;
    const int64_t *g = j->g;
    const int64_t cout = g[14], ntaps = g[4] * g[5];
    const int64_t t0 = item * d->tiles / d->blocks, t1 = (item + 1) * d->tiles / d->blocks;
    const float **taps = d->taps + (size_t)slot * DW_QMAX * ntaps;
    const int Q = d->q;
#if BNN_X86
    const int simd1 = j->simd && g[15] == 1, bcast = j->simd && g[15] % 8 == 0;
#endif
    walk_t wk;
    walk_start(&wk, g, Q, d->tpr, t0);
    for (int64_t t = t0; t < t1;) {
        int64_t full;
        const int np = walk_pixels(&wk, &full);
        cursor_t cur = wk.cur;
        float *o = j->out + wk.r * cout;
#if BNN_X86
        if (simd1) {
            int64_t step = 0;
            const int64_t n =
                np == Q ? dw_row_run(j, &cur, Q, imin(t1 - t, full), taps, &step) : 0;
            if (n > 0) {
                dw_pixels_simd(j, taps, step, 1, n, o, Q);
                t += n;
                walk_next(&wk, n);
                continue;
            }
            for (int q = 0; q < np; q++)
                pixel_taps(j, cursor_pix(g, &cur), taps + q * ntaps);
            /* Missing pixels of a partial tile repeat the last one (not stored). */
            for (int q = np; q < Q; q++)
                memcpy(taps + q * ntaps, taps + (np - 1) * ntaps,
                       (size_t)ntaps * sizeof(*taps));
            dw_pixels_simd(j, taps, 0, 0, np, o, Q);
            t++;
            walk_next(&wk, 1);
            continue;
        }
#endif
        for (int q = 0; q < np; q++, o += cout) {
            pixel_taps(j, cursor_pix(g, &cur), taps);
#if BNN_X86
            if (bcast) {
                dw_pixel_bcast(j, taps, o);
                continue;
            }
#endif
            dw_pixel_scalar(j, taps, o);
        }
        t++;
        walk_next(&wk, 1);
    }
}

static int run_dwconv(fconv_job_t *j, int threads) {
    const int64_t *g = j->g;
    dw_job_t d;
    d.j = j;
    d.rows = g[0] * g[12] * g[13];
    const int64_t ntaps = g[4] * g[5], cout = g[14];
    d.q = cout <= 8 ? 8 : cout <= 16 ? 4 : 2;
    d.tpr = g[13] < 4 * d.q ? 0 : (g[13] + d.q - 1) / d.q;
    d.tiles = d.tpr ? g[0] * g[12] * d.tpr : (d.rows + d.q - 1) / d.q;
    const double work = (double)d.rows * (double)cout * (double)ntaps;
    d.blocks = imin(d.tiles, item_target(work / DW_MACS_PER_NS, threads));
    const int slots = threads > 1 ? threads : 1;
    d.taps = (const float **)malloc((size_t)slots * DW_QMAX * ntaps * sizeof(float *));
    if (!d.taps) return -1;
    pool_run(d.blocks, dwconv_task, &d, threads);
    free((void *)d.taps);
    return 0;
}

int bnn_fconv(const float *x, const float *k, float *out, const int64_t *g,
              float pad_value, int depthwise, int threads) {
    const int64_t cin = g[3], kw = g[5];
    const int64_t pad_len = (cin > 0 ? cin : 1) * (kw > 0 ? kw : 1);
    float *pad = (float *)malloc((size_t)pad_len * sizeof(float));
    if (!pad) return -1;
    for (int64_t c = 0; c < pad_len; c++) pad[c] = pad_value;
    fconv_job_t j;
    memset(&j, 0, sizeof j);
    j.x = x;
    j.k = k;
    j.out = out;
    j.g = g;
    j.pad = pad;
    j.simd = bnn_config()->float_simd; /* AVX2/FMA tiles (avx2 level and up) */
    if (threads < 1) threads = 1;
    const int rc = depthwise ? run_dwconv(&j, threads) : run_conv(&j, threads);
    free(pad);
    return rc;
}

/* ---- float max pooling (NHWC) -------------------------------------------- */

#define POOL_WINDOW_MAX 64

typedef struct {
    const float *x;
    float *out;
    const int64_t *g;
    int64_t rows, blocks;
    int simd;
    int nwin;                       /* ph * pw if <= POOL_WINDOW_MAX, else 0 */
    int64_t off[POOL_WINDOW_MAX];   /* window element offsets (floats) */
} fpool_job_t;

/* First valid input, then o = v > o ? v : o in row-major order. */
static void maxpool_scalar(const fpool_job_t *p, int64_t b, int64_t y, int64_t xo,
                           float *o) {
    const int64_t h = p->g[1], w = p->g[2], c = p->g[3], ph = p->g[4], pw = p->g[5],
                  sh = p->g[6], sw = p->g[7], pt = p->g[8], pl = p->g[9];
    int first = 1;
    for (int64_t i = 0; i < ph; i++) {
        const int64_t ih = y * sh - pt + i;
        if (ih < 0 || ih >= h) continue;
        for (int64_t jj = 0; jj < pw; jj++) {
            const int64_t iw = xo * sw - pl + jj;
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

#if BNN_X86
/* The same per lane: _mm256_max_ps(v, o) is v > o ? v : o. N: the window
 * size if known at compile time (else n). */
static inline __attribute__((always_inline, target("avx2"))) void maxpool_vec(
    const float *const *v, int n, int64_t c, float *o, const int N) {
    if (N) n = N;
    int64_t k = 0;
    for (; k + 32 <= c; k += 32) {
        __m256 m0 = _mm256_loadu_ps(v[0] + k), m1 = _mm256_loadu_ps(v[0] + k + 8);
        __m256 m2 = _mm256_loadu_ps(v[0] + k + 16), m3 = _mm256_loadu_ps(v[0] + k + 24);
#pragma GCC unroll 4
        for (int i = 1; i < n; i++) {
            m0 = _mm256_max_ps(_mm256_loadu_ps(v[i] + k), m0);
            m1 = _mm256_max_ps(_mm256_loadu_ps(v[i] + k + 8), m1);
            m2 = _mm256_max_ps(_mm256_loadu_ps(v[i] + k + 16), m2);
            m3 = _mm256_max_ps(_mm256_loadu_ps(v[i] + k + 24), m3);
        }
        _mm256_storeu_ps(o + k, m0);
        _mm256_storeu_ps(o + k + 8, m1);
        _mm256_storeu_ps(o + k + 16, m2);
        _mm256_storeu_ps(o + k + 24, m3);
    }
    for (; k + 8 <= c; k += 8) {
        __m256 m = _mm256_loadu_ps(v[0] + k);
#pragma GCC unroll 4
        for (int i = 1; i < n; i++) m = _mm256_max_ps(_mm256_loadu_ps(v[i] + k), m);
        _mm256_storeu_ps(o + k, m);
    }
    if (k < c) {
        const __m256i mask = tail_mask(c - k);
        __m256 m = _mm256_maskload_ps(v[0] + k, mask);
#pragma GCC unroll 4
        for (int i = 1; i < n; i++)
            m = _mm256_max_ps(_mm256_maskload_ps(v[i] + k, mask), m);
        _mm256_maskstore_ps(o + k, mask, m);
    }
}

__attribute__((target("avx2"))) static void maxpool_simd(const float *const *v, int n,
                                                        int64_t c, float *o) {
    maxpool_vec(v, n, c, o, 0);
}

/* 2 x 2 windows (QuickNet's transitions). */
__attribute__((target("avx2"))) static void maxpool_simd4(const float *const *v, int64_t c,
                                                         float *o) {
    maxpool_vec(v, 4, c, o, 4);
}

/* The window's valid inputs of output pixel (b, y, xo) in row-major order;
 * returns their count (at most POOL_WINDOW_MAX: p->nwin > 0). */
static int pool_window(const fpool_job_t *p, int64_t b, int64_t y, int64_t xo,
                       const float **v) {
    const int64_t h = p->g[1], w = p->g[2], c = p->g[3], ph = p->g[4], pw = p->g[5];
    const int64_t iy = y * p->g[6] - p->g[8], ix = xo * p->g[7] - p->g[9];
    const int64_t base = ((b * h + iy) * w + ix) * c; /* may be "negative" */
    if (iy >= 0 && iy + ph <= h && ix >= 0 && ix + pw <= w) {
        for (int i = 0; i < p->nwin; i++) v[i] = p->x + (base + p->off[i]);
        return p->nwin;
    }
    int n = 0;
    for (int64_t i = 0; i < ph; i++) {
        if (iy + i < 0 || iy + i >= h) continue;
        for (int64_t jj = 0; jj < pw; jj++) {
            if (ix + jj < 0 || ix + jj >= w) continue;
            v[n++] = p->x + (base + p->off[i * pw + jj]);
        }
    }
    return n;
}
#endif

/* Item = a block of output pixels. */
static void fmaxpool_task(void *ctx, int64_t item, int slot) {
    (void)slot;
    const fpool_job_t *p = (const fpool_job_t *)ctx;
    const int64_t c = p->g[3], oh = p->g[10], ow = p->g[11];
    const int64_t r0 = item * p->rows / p->blocks, r1 = (item + 1) * p->rows / p->blocks;
    int64_t b = r0 / (oh * ow), y = (r0 / ow) % oh, xo = r0 % ow;
    for (int64_t r = r0; r < r1; r++) {
        float *o = p->out + r * c;
#if BNN_X86
        const float *v[POOL_WINDOW_MAX];
        int n;
        if (p->simd && (n = pool_window(p, b, y, xo, v)) > 0) {
            if (n == 4)
                maxpool_simd4(v, c, o);
            else
                maxpool_simd(v, n, c, o);
        } else
#endif
            maxpool_scalar(p, b, y, xo, o);
        if (++xo == ow) {
            xo = 0;
            if (++y == oh) {
                y = 0;
                b++;
            }
        }
    }
}

void bnn_fmaxpool(const float *x, float *out, const int64_t *g, int threads) {
    fpool_job_t p;
    memset(&p, 0, sizeof p);
    p.x = x;
    p.out = out;
    p.g = g;
    p.rows = g[0] * g[10] * g[11];
    if (g[4] * g[5] <= POOL_WINDOW_MAX) {
        p.nwin = (int)(g[4] * g[5]);
        for (int64_t i = 0; i < g[4]; i++)
            for (int64_t jj = 0; jj < g[5]; jj++)
                p.off[i * g[5] + jj] = (i * g[2] + jj) * g[3];
    }
#if BNN_X86
    p.simd = p.nwin > 0 && bnn_config()->float_simd;
#endif
    if (threads < 1) threads = 1;
    const double work = (double)p.rows * (double)g[3] * (double)(g[4] * g[5]);
    p.blocks = imin(p.rows, item_target(work / POOL_CMPS_PER_NS, threads));
    pool_run(p.blocks, fmaxpool_task, &p, threads);
}
