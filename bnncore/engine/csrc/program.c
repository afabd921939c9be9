/*
 * Whole-plan programs (program.h): the steps of a compiled model run one
 * after the other on buffer slots, with the same kernels, in the same order,
 * as the step-by-step Python path, so the results are the same bits.
 *
 * Threads: for a batch of more than one sample, each thread runs the whole
 * program on its own run of samples with one thread (no synchronization
 * between layers, which costs more than small layers take); the samples left
 * over (n % threads) run with all threads, layer by layer.
 */
#include "program.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* NumPy's float32 maximum and minimum (np.maximum, np.minimum): NaN
 * propagates, and on equal values the second operand is returned. */
static inline float np_max(float a, float b) { return a != a ? a : (a > b ? a : b); }
static inline float np_min(float a, float b) { return a != a ? a : (a < b ? a : b); }

/* The ops of an ELEMENTWISE step on values [0, count) of rows of `channels`,
 * each op as NumPy evaluates it (one rounding per multiply and add). */
static void elementwise(const epilogue_t *e, const float *x, float *y, int64_t rows,
                        int64_t channels) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * channels;
        float *yr = y + r * channels;
        for (int64_t c = 0; c < channels; c++) yr[c] = xr[c];
        for (int q = 0; q < e->nops; q++) {
            const epi_op *op = &e->ops[q];
            const float *v = op->v, *u = op->u;
            switch (op->code) {
                case OP_SCALE:
                    for (int64_t c = 0; c < channels; c++) yr[c] = yr[c] * v[c];
                    break;
                case OP_BIAS:
                    for (int64_t c = 0; c < channels; c++) yr[c] = yr[c] + v[c];
                    break;
                case OP_MULADD:
                    for (int64_t c = 0; c < channels; c++) {
                        const float m = yr[c] * v[c];
                        yr[c] = m + u[c];
                    }
                    break;
                case OP_RELU:
                    for (int64_t c = 0; c < channels; c++) yr[c] = np_max(yr[c], 0.0f);
                    break;
                case OP_CLIP:
                    for (int64_t c = 0; c < channels; c++)
                        yr[c] = np_min(np_max(yr[c], op->lo), op->hi);
                    break;
                case OP_SIGN:
                    for (int64_t c = 0; c < channels; c++) yr[c] = yr[c] < 0.0f ? -1.0f : 1.0f;
                    break;
                default:
                    break;
            }
        }
    }
}

typedef struct {
    const epilogue_t *e;
    const float *x;
    float *y;
    int64_t rows, channels, per;
} ew_job_t;

static void ew_task(void *ctx, int64_t item, int slot) {
    (void)slot;
    const ew_job_t *j = (const ew_job_t *)ctx;
    const int64_t r0 = item * j->per;
    const int64_t r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    elementwise(j->e, j->x + r0 * j->channels, j->y + r0 * j->channels, r1 - r0, j->channels);
}

#define EW_VALUES 32768 /* values per thread item */

static void run_elementwise(const epilogue_t *e, const float *x, float *y, int64_t rows,
                            int64_t channels, int threads) {
    ew_job_t j = {e, x, y, rows, channels, rows};
    const int64_t total = rows * channels;
    if (threads > 1 && total >= 4 * EW_VALUES) {
        j.per = (EW_VALUES + channels - 1) / channels;
        if (j.per < 1) j.per = 1;
    }
    pool_run((rows + j.per - 1) / j.per, ew_task, &j, threads);
}

/* The pointer to sample b0 of slot s. */
#define AT(s, b0) (base[(s)] + (b0) * p->slot_bytes[(s)])

static int run_step(const bnn_program_t *p, const bnn_step_t *st, char *const *base,
                    int64_t b0, int64_t nb, int threads, const bnn_config_t *cfg) {
    const int64_t *d = st->dims;
    const int64_t batch_rows = d[0] * nb; /* the first dim counts per sample */
    switch (st->kind) {
        case STEP_PACK:
            bnn_pack((const float *)AT(st->in[0], b0), (uint64_t *)AT(st->out, b0),
                     batch_rows, d[1], d[2], d[3], threads);
            return 0;
        case STEP_BCONV: {
            geom_t g = st->g;
            g.n = st->g.n * nb;
            conv_t cv;
            memset(&cv, 0, sizeof cv);
            cv.g = &g;
            bnn_conv_init(&cv);
            cv.tap_offset = st->offsets;
            cv.wsum = st->wsum;
            cv.x = (const uint64_t *)AT(st->in[0], b0);
            cv.panels = (const uint64_t *)st->w0;
            cv.mk = cfg->mk;
            cv.mkh = cfg->mkh;
            epilogue_t e = st->e;
            e.cfg = cfg;
            e.y = st->out >= 0 ? (float *)AT(st->out, b0) : NULL;
            e.yp = st->out_packed >= 0 ? (uint64_t *)AT(st->out_packed, b0) : NULL;
            e.residual = st->residual >= 0 ? (const float *)AT(st->residual, b0) : NULL;
            return bnn_conv(&cv, &e, threads);
        }
        case STEP_PMAXPOOL: {
            int64_t g[12];
            memcpy(g, d, sizeof g);
            g[0] = batch_rows;
            bnn_maxpool((const uint64_t *)AT(st->in[0], b0), (uint64_t *)AT(st->out, b0), g,
                        (const uint64_t *)st->w0, threads);
            return 0;
        }
        case STEP_FCONV: {
            int64_t g[16];
            memcpy(g, d, sizeof g);
            g[0] = batch_rows;
            return bnn_fconv((const float *)AT(st->in[0], b0), (const float *)st->w0,
                             (float *)AT(st->out, b0), g, st->pad_value, (int)d[16], threads);
        }
        case STEP_EPILOGUE: {
            epilogue_t e = st->e;
            e.cfg = cfg;
            e.y = st->out >= 0 ? (float *)AT(st->out, b0) : NULL;
            e.yp = st->out_packed >= 0 ? (uint64_t *)AT(st->out_packed, b0) : NULL;
            e.residual = st->residual >= 0 ? (const float *)AT(st->residual, b0) : NULL;
            return bnn_epilogue((const float *)AT(st->in[0], b0), batch_rows, &e, threads);
        }
        case STEP_ELEMENTWISE:
            run_elementwise(&st->e, (const float *)AT(st->in[0], b0), (float *)AT(st->out, b0),
                            batch_rows, d[1], threads);
            return 0;
        case STEP_FMAXPOOL: {
            int64_t g[12];
            memcpy(g, d, sizeof g);
            g[0] = batch_rows;
            bnn_fmaxpool((const float *)AT(st->in[0], b0), (float *)AT(st->out, b0), g, threads);
            return 0;
        }
        case STEP_ADD: {
            float *o = (float *)AT(st->out, b0);
            const float *x0 = (const float *)AT(st->in[0], b0);
            const float *x1 = (const float *)AT(st->in[1], b0);
            for (int64_t i = 0; i < batch_rows; i++) o[i] = x0[i] + x1[i];
            for (int k = 2; k < st->nin; k++) {
                const float *xk = (const float *)AT(st->in[k], b0);
                for (int64_t i = 0; i < batch_rows; i++) o[i] = o[i] + xk[i];
            }
            return 0;
        }
        case STEP_CONCAT: {
            int64_t width = 0;
            for (int k = 0; k < st->nin; k++) width += d[1 + k];
            float *o = (float *)AT(st->out, b0);
            int64_t at = 0;
            for (int k = 0; k < st->nin; k++) {
                const float *xk = (const float *)AT(st->in[k], b0);
                const int64_t wk = d[1 + k];
                for (int64_t r = 0; r < batch_rows; r++)
                    memcpy(o + r * width + at, xk + r * wk, (size_t)wk * sizeof(float));
                at += wk;
            }
            return 0;
        }
        case STEP_GAP:
            bnn_global_avg_pool((const float *)AT(st->in[0], b0), (float *)AT(st->out, b0),
                                batch_rows, d[1], d[2]);
            return 0;
        case STEP_SOFTMAX:
            bnn_softmax((const float *)AT(st->in[0], b0), (float *)AT(st->out, b0), batch_rows,
                        d[1]);
            return 0;
        default:
            return 0;
    }
}

/* Below this much work (in multiply-accumulates of a binary convolution's
 * bits, about 20 microseconds on one AVX2 core), a step runs on the calling
 * thread alone: waking the pool's workers and sharing the output costs more
 * than a second core saves, so two threads would be slower than one. */
#define PAR_MIN_BIT_MACS (4.0 * (1 << 20))
/* What one float multiply-accumulate, and one value read or written by a
 * memory-bound step (packing, pooling, epilogue ops), costs in bit-MACs: an
 * FMA lane does one where an XOR + popcount lane does 64. */
#define FLOAT_MAC_WEIGHT 16.0
#define VALUE_WEIGHT 64.0

/* The threads worth using for one step of nb samples run layer by layer: all
 * of them for a large step, one below PAR_MIN_BIT_MACS. */
static int step_threads(const bnn_step_t *st, int64_t nb, int threads) {
    if (threads <= 1) return threads;
    const int64_t *d = st->dims;
    double work;
    switch (st->kind) {
        case STEP_BCONV: {
            const geom_t *g = &st->g;
            work = (double)(g->n * nb) * (double)(g->oh * g->ow) * (double)g->cout *
                   (double)(g->kh * g->kw_ * g->cin_g);
            break;
        }
        case STEP_FCONV: {
            const double reduce = (double)(d[4] * d[5]) * (d[16] ? 1.0 : (double)d[3]);
            work = (double)(d[0] * nb) * (double)(d[12] * d[13]) * (double)d[14] * reduce *
                   FLOAT_MAC_WEIGHT;
            break;
        }
        case STEP_PACK:
            work = (double)(d[0] * nb) * (double)d[1] * VALUE_WEIGHT;
            break;
        case STEP_PMAXPOOL: /* words of every window */
        case STEP_FMAXPOOL: /* values of every window */
            work = (double)(d[0] * nb) * (double)(d[10] * d[11]) * (double)d[3] *
                   (double)(d[4] * d[5]) * VALUE_WEIGHT;
            break;
        case STEP_EPILOGUE:
        case STEP_ELEMENTWISE:
            work = (double)(d[0] * nb) * (double)d[1] * (double)(st->e.nops + 1) * VALUE_WEIGHT;
            break;
        default: /* ADD, CONCAT, GAP, SOFTMAX run on one thread anyway */
            return threads;
    }
    return work < PAR_MIN_BIT_MACS ? 1 : threads;
}

static int run_steps(const bnn_program_t *p, int first, int last, char *const *base,
                     int64_t b0, int64_t nb, int threads, const bnn_config_t *cfg) {
    for (int i = first; i < last; i++) {
        const bnn_step_t *st = &p->steps[i];
        if (run_step(p, st, base, b0, nb, step_threads(st, nb, threads), cfg) != 0) return -1;
    }
    return 0;
}

typedef struct {
    const bnn_program_t *p;
    int first, last;
    char *const *base;
    int64_t per;
    const bnn_config_t *cfg;
    int failed;
} chunk_job_t;

static void chunk_task(void *ctx, int64_t item, int slot) {
    (void)slot;
    chunk_job_t *j = (chunk_job_t *)ctx;
    if (run_steps(j->p, j->first, j->last, j->base, item * j->per, j->per, 1, j->cfg) != 0)
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
}

int bnn_program_run(const bnn_program_t *p, int first, int last, char *const *base,
                    int64_t n, int threads) {
    const bnn_config_t *cfg = bnn_config(); /* one configuration for the call */
    if (threads < 1) threads = 1;
    int64_t done = 0;
    if (threads > 1 && n > 1) {
        const int64_t chunks = n < threads ? n : threads;
        chunk_job_t j = {p, first, last, base, n / chunks, cfg, 0};
        pool_run(chunks, chunk_task, &j, (int)chunks);
        if (j.failed) return -1;
        done = chunks * j.per;
    }
    if (done < n) return run_steps(p, first, last, base, done, n - done, threads, cfg);
    return 0;
}

void bnn_program_free_steps(bnn_program_t *p) {
    for (int i = 0; i < p->nsteps; i++) {
        free(p->steps[i].offsets);
        free(p->steps[i].wsum);
        p->steps[i].offsets = NULL;
        p->steps[i].wsum = NULL;
    }
}

int bnn_program_prepare_bconv(bnn_step_t *st) {
    geom_t *g = &st->g;
    g->cw_g = (g->cin_g + 63) / 64;
    conv_t cv;
    memset(&cv, 0, sizeof cv);
    cv.g = g;
    bnn_conv_init(&cv);
    cv.panels = (const uint64_t *)st->w0;
    st->offsets = (int64_t *)malloc((size_t)cv.taps * sizeof(int64_t));
    if (!st->offsets) return -1;
    bnn_conv_offsets(&cv, st->offsets);
    st->wsum = NULL;
    if (g->pad_mode == 0 && cv.has_pad) {
        st->wsum = bnn_weight_sums(&cv);
        if (!st->wsum) return -1;
    }
    return 0;
}
