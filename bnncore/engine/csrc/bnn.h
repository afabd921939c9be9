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

/* ---- micro-kernels (mk_portable.c, mk_avx2.c, mk_avx512.c) ----------- */

/*
 * a[0..mr-1]: row pointers (kw words each, mr <= 4); panels: npan panels of
 * kw*4 words (word k of channel j of a panel at panel[4*k + j]). Writes
 * dots[i*ldd + 4*p + j] = kbits - 2*popcount(row i XOR channel 4p+j).
 */
typedef void (*microkernel_t)(const uint64_t *const *a, int mr,
                              const uint64_t *panels, int npan, int kw,
                              int32_t kbits, int32_t *dots, int ldd);

#define BNN_MICROKERNEL_ARGS                                                    \
    const uint64_t *const *a, int mr, const uint64_t *panels, int npan, int kw, \
        int32_t kbits, int32_t *dots, int ldd

/* Portable C (__builtin_popcountll, no target-specific code). */
void bnn_mk_generic(BNN_MICROKERNEL_ARGS);

/* The splitting of a row of kw words into 2*kw (pack.c): low nibbles
 * (a & 0x0f...) at dst[2k], high nibbles ((a >> 4) & 0x0f...) at dst[2k+1],
 * for the AVX2 kernel on half-split rows. */
void bnn_split_row(const uint64_t *src, int kw, uint64_t *dst);

/* Sign bits of n floats (x < 0) into ceil(n / 64) words, fully overwritten. */
typedef void (*pack_row_fn)(const float *x, int n, uint64_t *out);
void bnn_pack_row_portable(const float *x, int n, uint64_t *out);

#if defined(__x86_64__) || defined(__i386__)
#define BNN_X86 1
/* Scalar with the POPCNT instruction (mk_portable.c). */
void bnn_mk_popcnt(BNN_MICROKERNEL_ARGS);
/* AVX2 nibble lookup, on plain and on half-split rows (mk_avx2.c). */
void bnn_mk_avx2(BNN_MICROKERNEL_ARGS);
void bnn_mkh_avx2(BNN_MICROKERNEL_ARGS);
/* AVX-512 F+BW+VL+VPOPCNTDQ (mk_avx512.c). */
void bnn_mk_avx512(BNN_MICROKERNEL_ARGS);
void bnn_pack_row_avx2(const float *x, int n, uint64_t *out);
void bnn_pack_row_avx512(const float *x, int n, uint64_t *out);
#else
#define BNN_X86 0
#endif

/* ---- epilogue (epilogue.c, epilogue_avx512.c) ---------------------------- */

/* The epilogue ops, in code order: X(NAME, "python name"). The one list of
 * them: the enum below, the names the module exports (_kernels.EPILOGUE_OPS)
 * and bnncore.engine.kernels' OP_* constants, which are checked against it
 * at import. */
#define BNN_EPILOGUE_OPS(X)  \
    X(SCALE, "scale")        /* y *= v[c]                */ \
    X(BIAS, "bias")          /* y += v[c]                */ \
    X(MULADD, "muladd")      /* y = y * v[c] + u[c]      */ \
    X(RELU, "relu")          /* y = max(y, 0)            */ \
    X(CLIP, "clip")          /* y = min(max(y, lo), hi)  */ \
    X(SIGN, "sign")          /* y = y < 0 ? -1 : +1      */ \
    X(RESIDUAL, "residual")  /* y += r[row, c]           */

enum {
#define BNN_OP_ENUM(name, text) OP_##name,
    BNN_EPILOGUE_OPS(BNN_OP_ENUM)
#undef BNN_OP_ENUM
    OP_COUNT
};

#define MAX_OPS 32

typedef struct {
    int code;
    const float *v;
    const float *u;
    float lo, hi;
} epi_op;

struct bnn_config;

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
    /* The kernels that run it (bnn_conv and bnn_epilogue fill in the current
     * configuration when NULL, once per call). */
    const struct bnn_config *cfg;
} epilogue_t;

/* The ops of e on one row t (e->cout floats), in place, scalar order. */
typedef void (*apply_ops_fn)(const epilogue_t *e, int64_t row, float *t);
void bnn_apply_ops_portable(const epilogue_t *e, int64_t row, float *t);

/* The epilogue of one row from int32 dots (or float src when dots is NULL),
 * vectorized; only where e->cout and e->cout / e->gout are multiples of 8. */
typedef void (*epilogue_row_fn)(const epilogue_t *e, int64_t row, const int32_t *dots,
                                const float *src);

/* The epilogue of channels [c0, c1) (multiples of 64, so packed words are
 * written whole) of rows [r0, r0 + n) whose dots (indexed by channel from 0)
 * are at dots + i * ldd; only where each packed group is a whole number of
 * 64-bit words. */
typedef void (*epilogue_rows_fn)(const epilogue_t *e, int64_t r0, int n,
                                 const int32_t *dots, int ldd, int c0, int c1);

#if BNN_X86
void bnn_apply_ops_avx2(const epilogue_t *e, int64_t row, float *t);
void bnn_epilogue_row_avx2(const epilogue_t *e, int64_t row, const int32_t *dots,
                           const float *src);
void bnn_epilogue_rows_avx2(const epilogue_t *e, int64_t r0, int n, const int32_t *dots,
                            int ldd, int c0, int c1);
void bnn_epilogue_row_avx512(const epilogue_t *e, int64_t row, const int32_t *dots,
                             const float *src);
void bnn_epilogue_rows_avx512(const epilogue_t *e, int64_t r0, int n,
                              const int32_t *dots, int ldd, int c0, int c1);
#endif

/* Orders this thread's non-temporal stores before what follows (x86 sfence). */
void bnn_store_fence(void);

/* The vectorized epilogue of one row when e->cfg has one that applies (see
 * epilogue_row_fn); returns 0 without doing anything otherwise. */
int bnn_epilogue_fast(const epilogue_t *e, int64_t row, const int32_t *dots,
                      const float *src);

/* Whether bnn_epilogue_rows can run e: each packed group a whole number of
 * 64-bit words, and e->cfg has a tile epilogue. */
int bnn_epilogue_rows_ok(const epilogue_t *e);

/* e->cfg's tile epilogue (see epilogue_rows_fn); only where
 * bnn_epilogue_rows_ok(e). */
void bnn_epilogue_rows(const epilogue_t *e, int64_t r0, int n, const int32_t *dots,
                       int ldd, int c0, int c1);

/* ---- CPU configuration (config.c) --------------------------------------- */

/* Instruction-set levels, each including the ones below. */
enum { BNN_ISA_PORTABLE = 0, BNN_ISA_AVX2 = 1, BNN_ISA_AVX512 = 2, BNN_ISA_COUNT = 3 };
#define BNN_ISA_AUTO (-1)

/* Every function the core chooses by instruction set, made once per level
 * from cpuid; the current one is read once per call by each entry point. */
typedef struct bnn_config {
    int isa;                /* BNN_ISA_* */
    const char *kernel;     /* micro-kernel name: generic, popcnt, avx2, avx512 */
    microkernel_t mk;       /* binary micro-kernel */
    microkernel_t mkh;      /* on half-split rows (blocks of >= 4 rows), or NULL */
    pack_row_fn pack_row;   /* sign bits of float rows */
    apply_ops_fn apply_ops; /* scalar-order epilogue ops on one float row */
    epilogue_row_fn epilogue_row;   /* vectorized one-row epilogue, or NULL */
    epilogue_row_fn epilogue_row64; /* the same for groups of whole words, or NULL */
    epilogue_rows_fn epilogue_rows; /* tile epilogue, or NULL */
    int float_simd; /* AVX2/FMA float convolution, depthwise and max pooling */
} bnn_config_t;

/* CPU features (cpuid, once). */
typedef struct {
    int avx2, fma, popcnt, avx512f, avx512bw, avx512vl, avx512vpopcntdq;
} bnn_cpu_t;
const bnn_cpu_t *bnn_cpu(void);

const char *bnn_isa_name(int isa);
int bnn_isa_from_name(const char *name); /* BNN_ISA_*, BNN_ISA_AUTO, or -2 */
int bnn_max_isa(void);                    /* the highest level this CPU runs */

/* The configuration in use. */
const bnn_config_t *bnn_config(void);

/* Makes `isa` (BNN_ISA_AUTO: the default level) the level in use; with
 * popcnt, the portable level's micro-kernel is the scalar POPCNT one (x86
 * CPUs with POPCNT). Returns 0, or -1 when the CPU cannot run it. */
int bnn_set_isa(int isa, int popcnt);

/* The level "auto" stands for (BNN_ENGINE_ISA when set, else bnn_max_isa). */
void bnn_set_default_isa(int isa);
int bnn_default_isa(void);

/* ---- convolution (conv.c) ----------------------------------------------- */

/* The fields of a binary convolution's geometry, X(python name, C member), in
 * the order of bnncore.engine.kernels.ConvGeometry's fields (checked at
 * import): the module reads a ConvGeometry by these names. cw_g (words per
 * input group) is derived from cin_g. */
#define BNN_GEOM_FIELDS(X)                                                         \
    X(n, n) X(h, h) X(w, w) X(wpp_in, wpp_in) X(groups, groups) X(cin_g, cin_g)     \
    X(kh, kh) X(kw, kw_) X(sh, sh) X(sw, sw) X(dh, dh) X(dw, dw) X(pt, pt) X(pl, pl) \
    X(oh, oh) X(ow, ow) X(cout, cout) X(pad_mode, pad_mode)

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

/* Runs the convolution and its epilogue (with e->cfg's kernels, or the
 * current configuration's); 0 on success, -1 if out of memory. */
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
