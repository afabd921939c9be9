/*
 * Shared declarations of the bnncore.engine compiled core.
 *
 * A value in {-1, +1} is one bit: 1 means -1, 0 means +1. Channels of a pixel
 * are packed little-endian into 64-bit words (channel c -> word c / 64, bit
 * c % 64); bits past the last channel are 0. For a binary dot product of
 * length K, dot = K - 2 * popcount(a XOR b).
 */
#ifndef BNN_H
#define BNN_H

#include <stdint.h>

/* ---- micro-kernels (microkernels.c) ------------------------------------ */

enum { KERNEL_AUTO = -1, KERNEL_GENERIC = 0, KERNEL_POPCNT = 1, KERNEL_AVX2 = 2 };

/*
 * a[0..mr-1]: row pointers (kw words each, mr <= 4); panels: npan panels of
 * kw*4 words (word k of channel j of a panel at panel[4*k + j]). Writes
 * dots[i*ldd + 4*p + j] = kbits - 2*popcount(row i XOR channel 4p+j).
 */
typedef void (*microkernel_t)(const uint64_t *const *a, int mr,
                              const uint64_t *panels, int npan, int kw,
                              int32_t kbits, int32_t *dots, int ldd);

int bnn_cpu_has_avx2(void);
int bnn_cpu_has_popcnt(void);
int bnn_active_kernel(void);   /* the forced kernel, or the best one for the CPU */
void bnn_force_kernel(int kernel);
const char *bnn_kernel_name(int kernel);
microkernel_t bnn_microkernel(int kernel);

/* The micro-kernel on half-split rows (see microkernels.c), or NULL when the
 * kernel has none; and the splitting of a row of kw words into 2*kw. */
microkernel_t bnn_microkernel_half(int kernel);
void bnn_split_row(const uint64_t *src, int kw, uint64_t *dst);

/* Sign bits of n floats (x < 0) into ceil(n / 64) words, fully overwritten. */
void bnn_pack_row(const float *x, int n, uint64_t *out);

/* ---- epilogue ----------------------------------------------------------- */

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
    const float *residual; /* rows x cout, for OP_RESIDUAL */
    float *y;              /* float output (rows x cout) or NULL */
    uint64_t *yp;          /* packed output (rows x wpp_out) or NULL */
    int cout;
    int gout;     /* groups of the packed output layout */
    int cw_out_g; /* words per output group */
    int wpp_out;  /* words per output row */
    int stream;   /* write y with non-temporal stores (y 32-byte aligned, cout % 8 == 0) */
} epilogue_t;

/* Orders this thread's non-temporal stores before what follows (x86 sfence). */
void bnn_store_fence(void);

/* The epilogue of one row from int32 dots (or float src when dots is NULL),
 * vectorized; returns 0 without doing anything when it does not apply (no
 * AVX2, or channels / group sizes not multiples of 8). */
int bnn_epilogue_fast(const epilogue_t *e, int64_t row, const int32_t *dots,
                      const float *src);

/* Whether bnn_epilogue_rows can run e: each packed group a whole number of
 * 64-bit words, and AVX2. */
int bnn_epilogue_rows_ok(const epilogue_t *e);

/* The epilogue of channels [c0, c1) (multiples of 64, so packed words are
 * written whole) of rows [r0, r0 + n) whose dots (indexed by channel from 0)
 * are at dots + i * ldd; only where bnn_epilogue_rows_ok(e). */
void bnn_epilogue_rows(const epilogue_t *e, int64_t r0, int n, const int32_t *dots,
                       int ldd, int c0, int c1);

/* ---- convolution (conv.c) ----------------------------------------------- */

typedef struct {
    int64_t n, h, w, wpp_in, groups, cin_g, cw_g, kh, kw_, sh, sw, dh, dw, pt, pl,
        oh, ow, cout, pad_mode;
} geom_t;

typedef struct {
    const geom_t *g;
    const uint64_t *x;
    const uint64_t *panels;
    int taps, kbits, kwords, npan_g, ng;
    int direct;          /* rows read straight from the input (1x1, no padding) */
    int has_pad;         /* some output rows read padded taps */
    const int32_t *wsum; /* taps x cout weight sums (pad_mode 0 only) or NULL */
    const int64_t *tap_offset; /* word offset of each tap from the window origin */
    microkernel_t mk;
    microkernel_t mkh; /* mk on half-split rows, for blocks of >= 4 rows; or NULL */
} conv_t;

/* Fills cv's derived fields from cv->g (taps, kbits, kwords, ng, npan_g,
 * has_pad, direct). */
void bnn_conv_init(conv_t *cv);

/* Sets cv->tap_offset to offsets (cv->taps entries), filled here. */
int bnn_conv_offsets(conv_t *cv, int64_t *offsets);

/* Per-tap, per-channel sums of the +-1 weights (taps x cout), for correcting
 * padded taps that must count as 0; returns NULL if out of memory. */
int32_t *bnn_weight_sums(const conv_t *cv);

/* Runs the convolution and its epilogue; 0 on success, -1 if out of memory. */
int bnn_conv(const conv_t *cv, const epilogue_t *e, int threads);

/* Runs e's ops on each row of y_in (rows x e->cout) and writes e->y (which may
 * be y_in) and/or e->yp. Returns 0, or -1 if out of memory. */
int bnn_epilogue(const float *y_in, int64_t rows, const epilogue_t *e, int threads);

void bnn_pack(const float *x, uint64_t *out, int64_t rows, int64_t ch, int64_t groups,
              int64_t cwg, int threads);
void bnn_unpack(const uint64_t *x, float *out, int64_t rows, int64_t ch,
                int64_t groups, int64_t cwg);

/* g = (n, h, w, wpp, ph, pw, sh, sw, pt, pl, oh, ow); or_mask: wpp words or NULL */
void bnn_maxpool(const uint64_t *x, uint64_t *out, const int64_t *g,
                 const uint64_t *or_mask, int threads);

/* Float convolution (depthwise = 0, kernel (kh, kw, cin, cout)) or depthwise
 * convolution (depthwise = 1, kernel (kh, kw, cin, depth_mult)) of NHWC x.
 * g = (n, h, w, cin, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, cout, depth_mult).
 * Returns 0, or -1 if out of memory. */
int bnn_fconv(const float *x, const float *k, float *out, const int64_t *g,
              float pad_value, int depthwise, int threads);

/* Max pooling of float NHWC data; g as for bnn_maxpool with wpp = channels. */
void bnn_fmaxpool(const float *x, float *out, const int64_t *g, int threads);

/* ---- classifier head (head.c) ------------------------------------------ */

/* out[b, k] = mean over the pixels of x[b, p, k] (x: n x pixels x c). */
void bnn_global_avg_pool(const float *x, float *out, int64_t n, int64_t pixels,
                         int64_t c);

/* Softmax of each row of x (rows x c), max-subtracted; out may be x. */
void bnn_softmax(const float *x, float *out, int64_t rows, int64_t c);

#endif
