/*
 * Whole-plan programs: a compiled model's native steps held as data by the
 * core, run in one call (program.c).
 *
 * A program is a list of steps over numbered buffer slots. Every slot holds
 * one value for the whole batch, batch-major (sample b of slot s starts at
 * base[s] + b * slot_bytes[s]), so a step runs on any range of samples by
 * offsetting its pointers, and every size that grows with the batch is the
 * first of the step's dims (a count per sample, multiplied by the number of
 * samples at run time).
 *
 * The step kinds and the names of their dims are listed once here,
 * X(KIND, "python name", "dim names"); the module exports them
 * (_kernels.STEP_KINDS) and bnncore.engine.program builds each step's dims
 * by those names (checked at import and by the tests). A trailing "*" marks
 * a variable-length tail (one entry per input).
 */
#ifndef BNN_PROGRAM_H
#define BNN_PROGRAM_H

#include <stdint.h>

#include "bnn.h"

#define BNN_STEP_KINDS(X)                                                              \
    /* sign bits of float rows: x -> packed out */                                     \
    X(PACK, "pack", "rows channels groups words_per_group")                            \
    /* binary convolution + epilogue (geometry: its n is per sample; weights: panels) */ \
    X(BCONV, "bconv", "gout cw_out_g wpp_out")                                          \
    /* max pooling on packed bits (weights: or_mask or none) */                         \
    X(PMAXPOOL, "pmaxpool", "n h w wpp ph pw sh sw pt pl oh ow")                        \
    /* float (depthwise) convolution, no bias (weights: kernel) */                     \
    X(FCONV, "fconv", "n h w cin kh kw sh sw dh dw pt pl oh ow cout depth_mult depthwise") \
    /* the epilogue ops over float rows: float and/or packed out */                     \
    X(EPILOGUE, "epilogue", "rows cout gout cw_out_g wpp_out")                         \
    /* NumPy's float32 elementwise ops (bias, muladd, relu, clip, sign) */             \
    X(ELEMENTWISE, "elementwise", "rows channels")                                     \
    /* float max pooling */                                                            \
    X(FMAXPOOL, "fmaxpool", "n h w c ph pw sh sw pt pl oh ow")                          \
    /* sum of the inputs, left to right */                                             \
    X(ADD, "add", "count")                                                             \
    /* concatenation along the last axis: widths per input */                          \
    X(CONCAT, "concat", "rows widths*")                                                \
    /* global average pooling */                                                       \
    X(GAP, "gap", "n pixels channels")                                                 \
    /* softmax of rows (in place allowed) */                                           \
    X(SOFTMAX, "softmax", "rows channels")

enum {
#define BNN_STEP_ENUM(kind, name, dims) STEP_##kind,
    BNN_STEP_KINDS(BNN_STEP_ENUM)
#undef BNN_STEP_ENUM
        STEP_KIND_COUNT
};

/* The fields of a step as Python describes it (bnncore.engine.program.CStep),
 * in order; the module reads them by name. */
#define BNN_STEP_FIELDS(X) \
    X(kind) X(inputs) X(out) X(out_packed) X(residual) X(dims) X(geometry) X(ops) X(weights) X(pad_value)

#define BNN_STEP_MAX_DIMS 24
#define BNN_STEP_MAX_INPUTS 16

typedef struct {
    int kind;
    int nin;
    int in[BNN_STEP_MAX_INPUTS]; /* slots read */
    int out;                     /* float (or packed, for PACK/PMAXPOOL) output slot, or -1 */
    int out_packed;              /* packed output slot (BCONV, EPILOGUE), or -1 */
    int residual;                /* slot read by OP_RESIDUAL, or -1 */
    int ndims;
    int64_t dims[BNN_STEP_MAX_DIMS];
    geom_t g;                    /* BCONV: n = output rows' batch per sample (1, or more for dense) */
    int64_t *offsets;            /* BCONV: tap offsets (owned) */
    int32_t *wsum;               /* BCONV: weight sums for zero padding (owned), or NULL */
    epilogue_t e;                /* BCONV/EPILOGUE/ELEMENTWISE: ops (pointers set per run) */
    const void *w0;              /* panels (BCONV), kernel (FCONV), or_mask (PMAXPOOL) */
    float pad_value;             /* FCONV */
} bnn_step_t;

typedef struct {
    int nsteps;
    bnn_step_t *steps;
    int nslots;
    int64_t *slot_bytes; /* per sample */
} bnn_program_t;

/* Runs steps [first, last) on n samples: base[s] is sample 0 of slot s. With
 * threads > 1 and n > 1 the batch is split into one run of whole samples per
 * thread (each on one thread), the remainder run with all threads. Returns
 * 0, or -1 if out of memory. */
int bnn_program_run(const bnn_program_t *p, int first, int last, char *const *base,
                    int64_t n, int threads);

/* Frees what the steps own (not p->steps itself). */
void bnn_program_free_steps(bnn_program_t *p);

/* Prepares a BCONV step after its geometry and weights are set (derived
 * fields, tap offsets, weight sums); 0, or -1 if out of memory. */
int bnn_program_prepare_bconv(bnn_step_t *st);

#endif
