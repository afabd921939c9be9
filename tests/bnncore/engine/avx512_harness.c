/*
 * Test harness of the avx512 level's kernels, built by test_avx512_emulated.py
 * together with csrc/mk_avx512.c and csrc/epilogue_avx512.c into a shared
 * library (with -DBNN_EMULATE_AVX512: AVX-512 intrinsics from SIMDe, so it
 * runs on any machine) and called through ctypes.
 */
#include <stdint.h>
#include <string.h>

#include "bnn.h"

void bnn_mk_avx512(BNN_MICROKERNEL_ARGS);
void bnn_pack_row_avx512(const float *x, int n, uint64_t *out);
void bnn_epilogue_rows_avx512(const epilogue_t *e, int64_t r0, int n, const int32_t *dots,
                              int ldd, int c0, int c1);
void bnn_epilogue_row_avx512(const epilogue_t *e, int64_t row, const int32_t *dots,
                             const float *src);

/* rows: mr rows of row_stride words (kw used); the micro-kernel as called by
 * the convolution driver. */
void h_microkernel(const uint64_t *rows, int row_stride, int mr, const uint64_t *panels,
                   int npan, int kw, int32_t kbits, int32_t *dots, int ldd) {
    const uint64_t *a[4];
    for (int i = 0; i < mr; i++) a[i] = rows + (size_t)i * row_stride;
    bnn_mk_avx512(a, mr, panels, npan, kw, kbits, dots, ldd);
}

void h_pack_row(const float *x, int n, uint64_t *out) { bnn_pack_row_avx512(x, n, out); }

/*
 * The epilogue of rows [r0, r0 + n), channels [c0, c1): from int32 dots
 * (ldd apart) with the tile epilogue, or, when dots is NULL, from float rows
 * src (cout apart) with the one-row epilogue (then c0 = 0, c1 = cout).
 * ops: nops codes with vectors v[q], u[q] (or NULL) and bounds lo[q], hi[q].
 */
void h_epilogue(const int32_t *dots, const float *src, int64_t r0, int n, int ldd, int c0,
                int c1, int cout, int gout, int cw_out_g, int wpp_out, float *y,
                uint64_t *yp, const float *residual, int stream, int nops,
                const int *codes, const float *const *v, const float *const *u,
                const float *lo, const float *hi) {
    epilogue_t e;
    memset(&e, 0, sizeof e);
    e.nops = nops;
    for (int q = 0; q < nops; q++) {
        e.ops[q].code = codes[q];
        e.ops[q].v = v[q];
        e.ops[q].u = u[q];
        e.ops[q].lo = lo[q];
        e.ops[q].hi = hi[q];
    }
    e.residual = residual;
    e.y = y;
    e.yp = yp;
    e.cout = cout;
    e.gout = gout;
    e.cw_out_g = cw_out_g;
    e.wpp_out = wpp_out;
    e.stream = stream;
    if (dots) {
        bnn_epilogue_rows_avx512(&e, r0, n, dots, ldd, c0, c1);
    } else {
        for (int i = 0; i < n; i++)
            bnn_epilogue_row_avx512(&e, r0 + i, NULL, src + (size_t)(r0 + i) * cout);
    }
}
