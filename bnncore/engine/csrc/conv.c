/*
 * Binary convolution driver: gather receptive fields into bit-contiguous rows
 * ("im2col"), multiply them against the weight panels with a micro-kernel, and
 * finish each output row with the epilogue; plus packing and packed pooling.
 * Every layer is a 2D convolution over NHWC packed input (a dense layer has
 * one output position).
 */
#include <stdlib.h>
#include <string.h>

#include "bnn.h"
#include "pool.h"

#define ROW_BLOCK 32
#define STREAM_BYTES ((size_t)8 << 20)

/* OR nbits bits of src (bits past nbits are 0) into dst at bit offset off.
 * dst words from off/64 on hold only bits below off; one slack word past the
 * row's end may be OR-ed with zeros. */
static inline void append_bits(uint64_t *dst, int64_t off, const uint64_t *src,
                               int nbits) {
    const int nw = (nbits + 63) >> 6;
    const int64_t w = off >> 6;
    const int s = (int)(off & 63);
    if (s == 0) {
        for (int j = 0; j < nw; j++) dst[w + j] = src[j];
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


static void run_epilogue_row(const epilogue_t *e, int64_t row, float *t) {
    const int cout = e->cout;
    e->cfg->apply_ops(e, row, t);
    if (e->y && e->y + (size_t)row * cout != t)
        memcpy(e->y + (size_t)row * cout, t, (size_t)cout * sizeof(float));
    if (e->yp) {
        uint64_t *out = e->yp + (size_t)row * e->wpp_out;
        const int cg = cout / e->gout;
        for (int g = 0; g < e->gout; g++) {
            uint64_t *o = out + (size_t)g * e->cw_out_g;
            e->cfg->pack_row(t + (size_t)g * cg, cg, o);
            for (int k = (cg + 63) / 64; k < e->cw_out_g; k++) o[k] = 0;
        }
        for (int k = e->gout * e->cw_out_g; k < e->wpp_out; k++) out[k] = 0;
    }
}

#define NIBBLES 0x0f0f0f0f0f0f0f0fULL

/* The taps of a window inside the image, cin_g not a multiple of 64: each
 * tap's cin_g bits appended end to end (the layout append_bits makes), words
 * written once from an accumulator instead of cleared and OR-ed. Writes
 * exactly cv->kwords words. Bits past cin_g in a tap's last word are 0. */
static void gather_inside_unaligned(const conv_t *cv, const uint64_t *base,
                                    uint64_t *dst) {
    const int64_t cin = cv->g->cin_g;
    const int64_t full = cin >> 6;
    const int rem = (int)(cin & 63); /* > 0 here */
    uint64_t acc = 0;
    int nacc = 0; /* bits held in acc, < 64 */
    for (int t = 0; t < cv->taps; t++) {
        const uint64_t *src = base + cv->tap_offset[t];
        for (int64_t k = 0; k < full; k++) { /* 64 bits */
            const uint64_t v = src[k];
            *dst++ = acc | (v << nacc);
            acc = nacc ? v >> (64 - nacc) : 0;
        }
        const uint64_t v = src[full]; /* rem bits */
        acc |= v << nacc;
        nacc += rem;
        if (nacc >= 64) {
            *dst++ = acc;
            nacc -= 64;
            acc = nacc ? v >> (rem - nacc) : 0;
        }
    }
    if (nacc) *dst = acc;
}

/* Builds the gathered rows [r0, r0+mb) of group grp into abuf (or points
 * straight at the input); returns row pointers in rows[]. Rows whose window
 * lies inside the image copy the taps at precomputed offsets. With sbuf, the
 * rows are returned half-split (see bnn_split_row) in sbuf; inside rows are
 * split while they are gathered. */
static void gather_rows(const conv_t *cv, int64_t r0, int mb, int grp,
                        uint64_t *abuf, uint64_t *sbuf, const uint64_t **rows) {
    const geom_t *g = cv->g;
    int64_t ow = r0 % g->ow;
    int64_t oh = (r0 / g->ow) % g->oh;
    int64_t nb = r0 / (g->ow * g->oh);
    const int aligned = g->cin_g % 64 == 0;
    const int64_t cw = g->cw_g;
    for (int i = 0; i < mb; i++) {
        const int64_t ih0 = oh * g->sh - g->pt, iw0 = ow * g->sw - g->pl;
        const uint64_t *base =
            cv->x + ((nb * g->h + ih0) * g->w + iw0) * g->wpp_in + (int64_t)grp * cw;
        uint64_t *split = sbuf ? sbuf + (size_t)i * 2 * cv->kwords : NULL;
        if (cv->direct) {
            rows[i] = base;
        } else {
            uint64_t *dst = abuf + (size_t)i * cv->kwords;
            const int inside = ih0 >= 0 && iw0 >= 0 &&
                               ih0 + (g->kh - 1) * g->dh < g->h &&
                               iw0 + (g->kw_ - 1) * g->dw < g->w;
            if (inside && aligned && split && cw == 1) { /* 64 channels */
                for (int t = 0; t < cv->taps; t++) {
                    const uint64_t v = base[cv->tap_offset[t]];
                    split[2 * t] = v & NIBBLES;
                    split[2 * t + 1] = (v >> 4) & NIBBLES;
                }
                rows[i] = split;
                split = NULL; /* done */
            } else if (inside && aligned && split) {
                uint64_t *o = split;
                for (int t = 0; t < cv->taps; t++, o += 2 * cw) {
                    const uint64_t *src = base + cv->tap_offset[t];
                    for (int64_t k = 0; k < cw; k++) {
                        o[2 * k] = src[k] & NIBBLES;
                        o[2 * k + 1] = (src[k] >> 4) & NIBBLES;
                    }
                }
                rows[i] = split;
                split = NULL; /* done */
            } else if (inside && aligned) {
                uint64_t *o = dst;
                for (int t = 0; t < cv->taps; t++, o += cw) {
                    const uint64_t *src = base + cv->tap_offset[t];
                    for (int64_t k = 0; k < cw; k++) o[k] = src[k];
                }
                rows[i] = dst;
            } else if (inside) {
                gather_inside_unaligned(cv, base, dst);
                rows[i] = dst;
            } else {
                memset(dst, 0, (size_t)cv->kwords * sizeof(uint64_t));
                int t = 0;
                for (int64_t a = 0; a < g->kh; a++) {
                    const int64_t ih = ih0 + a * g->dh;
                    for (int64_t b = 0; b < g->kw_; b++, t++) {
                        const int64_t iw = iw0 + b * g->dw;
                        if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
                        append_bits(dst, (int64_t)t * g->cin_g, base + cv->tap_offset[t],
                                    (int)g->cin_g);
                    }
                }
                rows[i] = dst;
            }
        }
        if (split) {
            bnn_split_row(rows[i], cv->kwords, split);
            rows[i] = split;
        }
        if (++ow == g->ow) {
            ow = 0;
            if (++oh == g->oh) {
                oh = 0;
                nb++;
            }
        }
    }
}

/* Subtracts, for padding with zeros, the contribution the padded taps got as
 * +1, from the dots of channels [c0, c1) (d in panel layout). */
static void pad_correction(const conv_t *cv, int64_t r, int32_t *d, int c0, int c1) {
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
                const int first = grp * cv->ng;
                const int j0 = c0 > first ? c0 - first : 0;
                const int j1 = c1 - first < cv->ng ? c1 - first : cv->ng;
                int32_t *dg = d + (size_t)grp * cv->npan_g * 4;
                for (int j = j0; j < j1; j++) dg[j] -= ws[first + j];
            }
        }
    }
}

/* Dot products of rows [r0, r0+mb) against panels [p0, p1) of group grp.
 * sbuf: room for ROW_BLOCK half-split rows, or NULL. */
static void compute_block(const conv_t *cv, int64_t r0, int mb, int grp, int p0,
                          int p1, uint64_t *abuf, uint64_t *sbuf, int32_t *dots,
                          int ldd) {
    const uint64_t *rows[ROW_BLOCK];
    const int half = cv->mkh && sbuf && mb >= 4;
    gather_rows(cv, r0, mb, grp, abuf, half ? sbuf : NULL, rows);
    const microkernel_t mk = half ? cv->mkh : cv->mk;
    /* Panels in chunks of ~16 KiB, each reused by all rows of the block; a
     * multiple of 4 panels (the AVX2 kernel's step is 2, the AVX-512's 4). */
    int chunk = (int)(16384 / ((size_t)cv->kwords * 32));
    if (chunk < 4) chunk = 4;
    chunk &= ~3;
    for (int q0 = p0; q0 < p1; q0 += chunk) {
        const int q1 = q0 + chunk < p1 ? q0 + chunk : p1;
        const uint64_t *pan = cv->panels + ((size_t)grp * cv->npan_g + q0) * cv->kwords * 4;
        for (int i = 0; i < mb; i += 4) {
            const int mr = mb - i < 4 ? mb - i : 4;
            int32_t *d = dots + (size_t)i * ldd + ((size_t)grp * cv->npan_g + q0) * 4;
            mk(rows + i, mr, pan, q1 - q0, cv->kwords, cv->kbits, d, ldd);
        }
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
    if (cv->wsum && row_needs_correction(cv, r)) pad_correction(cv, r, d, 0, (int)cv->g->cout);
    const int ng = cv->ng;
    if ((cv->g->groups == 1 || ng % 4 == 0) && bnn_epilogue_fast(e, r, d, NULL)) return;
    for (int grp = 0; grp < cv->g->groups; grp++) {
        const int32_t *dg = d + (size_t)grp * cv->npan_g * 4;
        float *tg = t + (size_t)grp * ng;
        for (int j = 0; j < ng; j++) tg[j] = (float)dg[j];
    }
    run_epilogue_row(e, r, t);
}


void bnn_conv_init(conv_t *cv) {
    const geom_t *g = cv->g;
    cv->taps = (int)(g->kh * g->kw_);
    cv->kbits = (int)(cv->taps * g->cin_g);
    cv->kwords = (cv->kbits + 63) / 64;
    cv->ng = (int)(g->cout / g->groups);
    cv->npan_g = (cv->ng + 3) / 4;
    const int64_t ih_last = (g->oh - 1) * g->sh - g->pt + (g->kh - 1) * g->dh;
    const int64_t iw_last = (g->ow - 1) * g->sw - g->pl + (g->kw_ - 1) * g->dw;
    cv->has_pad = g->pt > 0 || g->pl > 0 || ih_last >= g->h || iw_last >= g->w;
    cv->direct = cv->taps == 1 && !cv->has_pad;
    cv->tap_offset = NULL;
}

int bnn_conv_offsets(conv_t *cv, int64_t *offsets) {
    const geom_t *g = cv->g;
    int t = 0;
    for (int64_t a = 0; a < g->kh; a++)
        for (int64_t b = 0; b < g->kw_; b++, t++)
            offsets[t] = (a * g->dh * g->w + b * g->dw) * g->wpp_in;
    cv->tap_offset = offsets;
    return 0;
}

int32_t *bnn_weight_sums(const conv_t *cv) {
    const geom_t *g = cv->g;
    int32_t *wsum = (int32_t *)malloc((size_t)cv->taps * g->cout * sizeof(int32_t));
    if (!wsum) return NULL;
    for (int64_t c = 0; c < g->cout; c++) {
        const int64_t grp = c / cv->ng, j = c % cv->ng;
        const uint64_t *pan =
            cv->panels + ((size_t)grp * cv->npan_g + j / 4) * cv->kwords * 4;
        for (int64_t t = 0; t < cv->taps; t++) {
            const int neg =
                panel_range_popcount(pan, (int)(j % 4), t * g->cin_g, (int)g->cin_g);
            wsum[t * g->cout + c] = (int32_t)g->cin_g - 2 * neg;
        }
    }
    return wsum;
}

/* Per-participant scratch. */
typedef struct {
    uint64_t *abuf;
    uint64_t *sbuf; /* half-split rows, when cv->mkh */
    int32_t *dots;
    float *t;
} scratch_t;

typedef struct {
    const conv_t *cv;
    const epilogue_t *e;
    scratch_t *scratch;
    int64_t m, nrb;
    int ldd, nsplit, splits, per;
    int32_t *all; /* shared dot products (split mode) */
    int tile_rows, tile_panels, ntiles_c; /* tile mode */
} conv_job_t;

/* A tile: rows [r0, r0 + tile_rows) x channels of panels [p0, p0 + tile_panels),
 * multiplied and finished (one group; channel slices of whole packed words). */
static void tile_task(void *ctx, int64_t item, int slot) {
    const conv_job_t *job = (const conv_job_t *)ctx;
    const conv_t *cv = job->cv;
    scratch_t *s = &job->scratch[slot];
    const int64_t r0 = (item / job->ntiles_c) * job->tile_rows;
    const int mb = (int)(job->m - r0 < job->tile_rows ? job->m - r0 : job->tile_rows);
    const int p0 = (int)(item % job->ntiles_c) * job->tile_panels;
    const int p1 = p0 + job->tile_panels < cv->npan_g ? p0 + job->tile_panels : cv->npan_g;
    compute_block(cv, r0, mb, 0, p0, p1, s->abuf, s->sbuf, s->dots, job->ldd);
    const int c0 = 4 * p0, c1 = 4 * p1 < (int)cv->g->cout ? 4 * p1 : (int)cv->g->cout;
    if (cv->wsum)
        for (int i = 0; i < mb; i++)
            if (row_needs_correction(cv, r0 + i))
                pad_correction(cv, r0 + i, s->dots + (size_t)i * job->ldd, c0, c1);
    bnn_epilogue_rows(job->e, r0, mb, s->dots, job->ldd, c0, c1);
    if (job->e->stream) bnn_store_fence();
}

/* Tile shape for tile mode: rows per tile (<= ROW_BLOCK) and 64-channel
 * slices, chosen so that the busiest thread has the least work under a simple
 * cost model (4-row micro-tiles, a gather per row and tile, a fixed cost per
 * tile). Returns 0 when tile mode does not apply. */
static int choose_tiles(const conv_t *cv, const epilogue_t *e, int64_t m, int threads,
                        int *rows_out, int *panels_out) {
    const geom_t *g = cv->g;
    if (g->groups != 1 || g->cout % 64 || (e->cout / e->gout) % 64) return 0;
    const int chunks = (int)(g->cout / 64);
    double best = -1.0;
    for (int slices = 1; slices <= chunks; slices++) {
        if (chunks % slices) continue;
        const double ch = 64.0 * chunks / slices;
        for (int rows = 1; rows <= ROW_BLOCK; rows++) {
            if (rows > m) break;
            const int64_t nr = (m + rows - 1) / rows;
            const int64_t items = nr * slices;
            const int64_t rounds = (items + threads - 1) / threads;
            const double tiles4 = (rows + 3) / 4;
            /* ~40 cycles per 64x64 bit-MACs per word; gather ~4 per word. */
            const double cost = cv->kwords * (tiles4 * 4.0 * ch * 40.0 / 64.0 + rows * 4.0)
                                + 600.0;
            const double total = (double)rounds * cost;
            if (best < 0 || total < best * 0.999) {
                best = total;
                *rows_out = rows;
                *panels_out = (int)(ch / 4);
            }
        }
    }
    return best >= 0;
}

/* Whole row blocks: gather, multiply, finish. */
static void rows_task(void *ctx, int64_t rb, int slot) {
    const conv_job_t *job = (const conv_job_t *)ctx;
    const conv_t *cv = job->cv;
    scratch_t *s = &job->scratch[slot];
    const int64_t r0 = rb * ROW_BLOCK;
    const int mb = (int)(job->m - r0 < ROW_BLOCK ? job->m - r0 : ROW_BLOCK);
    for (int grp = 0; grp < cv->g->groups; grp++)
        compute_block(cv, r0, mb, grp, 0, cv->npan_g, s->abuf, s->sbuf, s->dots, job->ldd);
    for (int i = 0; i < mb; i++)
        finish_row(cv, job->e, r0 + i, s->dots + (size_t)i * job->ldd, s->t);
}

/* A row block against a slice of one group's panels, into the shared buffer. */
static void split_task(void *ctx, int64_t item, int slot) {
    const conv_job_t *job = (const conv_job_t *)ctx;
    const conv_t *cv = job->cv;
    const int64_t rb = item / job->splits;
    const int s = (int)(item % job->splits);
    const int grp = s / job->nsplit;
    const int p0 = (s % job->nsplit) * job->per;
    const int p1 = p0 + job->per < cv->npan_g ? p0 + job->per : cv->npan_g;
    if (p0 >= p1) return;
    const int64_t r0 = rb * ROW_BLOCK;
    const int mb = (int)(job->m - r0 < ROW_BLOCK ? job->m - r0 : ROW_BLOCK);
    compute_block(cv, r0, mb, grp, p0, p1, job->scratch[slot].abuf,
                  job->scratch[slot].sbuf, job->all + (size_t)r0 * job->ldd, job->ldd);
}

static void finish_task(void *ctx, int64_t rb, int slot) {
    const conv_job_t *job = (const conv_job_t *)ctx;
    const int64_t r0 = rb * ROW_BLOCK;
    const int64_t r1 = r0 + ROW_BLOCK < job->m ? r0 + ROW_BLOCK : job->m;
    for (int64_t r = r0; r < r1; r++)
        finish_row(job->cv, job->e, r, job->all + (size_t)r * job->ldd,
                   job->scratch[slot].t);
}

int bnn_conv(const conv_t *cv, const epilogue_t *e, int threads) {
    const geom_t *g = cv->g;
    conv_job_t job;
    memset(&job, 0, sizeof(job));
    epilogue_t local = *e; /* with the configuration of this call */
    if (!local.cfg) local.cfg = bnn_config();
    e = &local;
    job.cv = cv;
    job.e = e;
    job.m = g->n * g->oh * g->ow;
    job.ldd = (int)(g->groups * cv->npan_g * 4);
    job.nrb = (job.m + ROW_BLOCK - 1) / ROW_BLOCK;
    if (threads < 1) threads = 1;
    if (threads > job.nrb * g->groups * cv->npan_g) threads = (int)(job.nrb * g->groups * cv->npan_g);
    if (threads < 1) threads = 1;
    /* Few row blocks (dense layers, small images): split the channels too. */
    job.nsplit = 1;
    if (threads > 1 && job.nrb < 4 * threads) {
        job.nsplit = (int)((4 * threads + job.nrb - 1) / job.nrb);
        if (job.nsplit > cv->npan_g) job.nsplit = cv->npan_g;
    }
    job.splits = job.nsplit * (int)g->groups;
    job.per = (cv->npan_g + job.nsplit - 1) / job.nsplit;

    int failed = 0;
    scratch_t *scratch = (scratch_t *)calloc((size_t)threads, sizeof(scratch_t));
    if (!scratch) return -1;
    for (int i = 0; i < threads && !failed; i++) {
        scratch[i].abuf =
            (uint64_t *)malloc(((size_t)ROW_BLOCK * cv->kwords + 1) * sizeof(uint64_t));
        scratch[i].dots = (int32_t *)malloc((size_t)ROW_BLOCK * job.ldd * sizeof(int32_t));
        scratch[i].t = (float *)malloc((size_t)g->cout * sizeof(float));
        failed = !scratch[i].abuf || !scratch[i].dots || !scratch[i].t;
        if (cv->mkh && !failed) {
            scratch[i].sbuf =
                (uint64_t *)malloc((size_t)ROW_BLOCK * 2 * cv->kwords * sizeof(uint64_t));
            failed = !scratch[i].sbuf;
        }
    }
    job.scratch = scratch;
    int tr = 0, tp = 0;
    /* Float outputs larger than the caches go around them (no read for
     * ownership of lines that are written whole and not read back soon). */
    epilogue_t streamed = *e;
    streamed.stream = e->y && (size_t)job.m * g->cout * sizeof(float) > STREAM_BYTES &&
                      ((uintptr_t)e->y & 31) == 0;
    if (!failed && bnn_epilogue_rows_ok(e) &&
        choose_tiles(cv, e, job.m, threads, &tr, &tp)) {
        job.e = &streamed;
        job.tile_rows = tr;
        job.tile_panels = tp;
        job.ntiles_c = (cv->npan_g + tp - 1) / tp;
        pool_run(((job.m + tr - 1) / tr) * job.ntiles_c, tile_task, &job, threads);
    } else if (!failed && job.nsplit == 1) {
        pool_run(job.nrb, rows_task, &job, threads);
    } else if (!failed) {
        job.all = (int32_t *)malloc((size_t)job.m * job.ldd * sizeof(int32_t));
        failed = job.all == NULL;
        if (!failed) {
            pool_run(job.nrb * job.splits, split_task, &job, threads);
            pool_run(job.nrb, finish_task, &job, threads);
        }
        free(job.all);
    }
    for (int i = 0; i < threads; i++) {
        free(scratch[i].abuf);
        free(scratch[i].dots);
        free(scratch[i].t);
        free(scratch[i].sbuf);
    }
    free(scratch);
    return failed ? -1 : 0;
}

/* ---- packing ------------------------------------------------------------ */

typedef struct {
    const float *x;
    uint64_t *out;
    int64_t rows, ch, groups, cwg, chunk;
    pack_row_fn pack_row;
} pack_job_t;

static void pack_task(void *ctx, int64_t item, int slot) {
    (void)slot;
    const pack_job_t *p = (const pack_job_t *)ctx;
    const int64_t cg = p->ch / p->groups, wpp = p->groups * p->cwg;
    const int64_t r1 = (item + 1) * p->chunk < p->rows ? (item + 1) * p->chunk : p->rows;
    for (int64_t r = item * p->chunk; r < r1; r++) {
        uint64_t *o = p->out + r * wpp;
        const float *xr = p->x + r * p->ch;
        for (int64_t g = 0; g < p->groups; g++) {
            uint64_t *og = o + g * p->cwg;
            p->pack_row(xr + g * cg, (int)cg, og);
            for (int64_t k = (cg + 63) / 64; k < p->cwg; k++) og[k] = 0;
        }
    }
}

void bnn_pack(const float *x, uint64_t *out, int64_t rows, int64_t ch, int64_t groups,
              int64_t cwg, int threads) {
    pack_job_t p = {x, out, rows, ch, groups, cwg, 0, bnn_config()->pack_row};
    p.chunk = 1 + 16384 / (ch > 0 ? ch : 1);
    const int64_t items = (rows + p.chunk - 1) / p.chunk;
    /* Packing is memory-bound and quick: threads only for large tensors. */
    pool_run(items, pack_task, &p, rows * ch >= (1 << 20) ? threads : 1);
}

void bnn_unpack(const uint64_t *x, float *out, int64_t rows, int64_t ch,
                int64_t groups, int64_t cwg) {
    const int64_t cg = ch / groups, wpp = groups * cwg;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++)
            for (int64_t c = 0; c < cg; c++) {
                const uint64_t word = x[r * wpp + g * cwg + (c >> 6)];
                out[r * ch + g * cg + c] = (word >> (c & 63)) & 1 ? -1.0f : 1.0f;
            }
}

/* ---- packed max pooling ------------------------------------------------- */

typedef struct {
    const uint64_t *x;
    uint64_t *out;
    const int64_t *g;
    const uint64_t *mask;
} pool_job_t;

static void maxpool_task(void *ctx, int64_t r, int slot) {
    (void)slot;
    const pool_job_t *p = (const pool_job_t *)ctx;
    const int64_t h = p->g[1], w = p->g[2], wpp = p->g[3], ph = p->g[4], pw = p->g[5],
                  sh = p->g[6], sw = p->g[7], pt = p->g[8], pl = p->g[9], oh = p->g[10],
                  ow = p->g[11];
    const int64_t b = r / (oh * ow), y = (r / ow) % oh, xo = r % ow;
    uint64_t *o = p->out + r * wpp;
    for (int64_t k = 0; k < wpp; k++) {
        uint64_t all = ~(uint64_t)0, any = 0;
        for (int64_t i = 0; i < ph; i++) {
            const int64_t ih = y * sh - pt + i;
            if (ih < 0 || ih >= h) continue;
            for (int64_t j = 0; j < pw; j++) {
                const int64_t iw = xo * sw - pl + j;
                if (iw < 0 || iw >= w) continue;
                const uint64_t v = p->x[((b * h + ih) * w + iw) * wpp + k];
                all &= v;
                any |= v;
            }
        }
        const uint64_t m = p->mask ? p->mask[k] : 0;
        o[k] = (all & ~m) | (any & m);
    }
}

void bnn_maxpool(const uint64_t *x, uint64_t *out, const int64_t *g,
                 const uint64_t *or_mask, int threads) {
    pool_job_t p = {x, out, g, or_mask};
    const int64_t rows = g[0] * g[10] * g[11];
    pool_run(rows, maxpool_task, &p, rows * g[3] > 16384 ? threads : 1);
}

/* ---- stand-alone epilogue over float rows -------------------------------- */

typedef struct {
    const float *y_in;
    const epilogue_t *e;
    float **scratch;
    int64_t rows, per_item;
} epi_job_t;

/* Values per pool item: a few microseconds of work, so that the threads do
 * not spend their time on the shared item counter. */
#define EPI_VALUES 16384

static void epilogue_task(void *ctx, int64_t item, int slot) {
    const epi_job_t *j = (const epi_job_t *)ctx;
    const int cout = j->e->cout;
    const int64_t r0 = item * j->per_item;
    const int64_t r1 = r0 + j->per_item < j->rows ? r0 + j->per_item : j->rows;
    for (int64_t r = r0; r < r1; r++) {
        if (bnn_epilogue_fast(j->e, r, NULL, j->y_in + r * cout)) continue;
        float *t = j->scratch[slot];
        memcpy(t, j->y_in + r * cout, (size_t)cout * sizeof(float));
        run_epilogue_row(j->e, r, t);
    }
}

int bnn_epilogue(const float *y_in, int64_t rows, const epilogue_t *e, int threads) {
    epilogue_t local = *e; /* with the configuration of this call */
    if (!local.cfg) local.cfg = bnn_config();
    e = &local;
    if (threads < 1) threads = 1;
    float **scratch = (float **)calloc((size_t)threads, sizeof(float *));
    int failed = scratch == NULL;
    for (int i = 0; i < threads && !failed; i++) {
        scratch[i] = (float *)malloc((size_t)e->cout * sizeof(float));
        failed = scratch[i] == NULL;
    }
    if (!failed) {
        epi_job_t j = {y_in, e, scratch, rows, 1};
        const int64_t total = rows * (e->cout > 0 ? e->cout : 1);
        int64_t items = (total + EPI_VALUES - 1) / EPI_VALUES;
        if (items > 1 && threads > 1) /* a multiple of the threads: equal shares */
            items = (items + threads - 1) / threads * threads;
        if (items > rows) items = rows;
        if (items < 1) items = 1;
        j.per_item = (rows + items - 1) / items;
        items = (rows + j.per_item - 1) / j.per_item;
        pool_run(items, epilogue_task, &j, threads);
    }
    if (scratch)
        for (int i = 0; i < threads; i++) free(scratch[i]);
    free(scratch);
    return failed ? -1 : 0;
}
