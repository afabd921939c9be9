/*
 * Classifier-head operations on float rows: global average pooling and
 * softmax. Their outputs are never binarized, so they need not round exactly
 * like TensorFlow (the planner checks them against the Keras layer within
 * float32 rounding). One C call each replaces several NumPy calls, whose fixed
 * costs dominate at these sizes.
 */
#include <math.h>

#include "bnn.h"

/* Sums in double precision, rounded once: the mean TensorFlow approximates. */
#define GAP_CHUNK 256

void bnn_global_avg_pool(const float *x, float *out, int64_t n, int64_t pixels,
                         int64_t c) {
    double acc[GAP_CHUNK];
    for (int64_t b = 0; b < n; b++) {
        const float *xb = x + b * pixels * c;
        for (int64_t k0 = 0; k0 < c; k0 += GAP_CHUNK) {
            const int64_t m = c - k0 < GAP_CHUNK ? c - k0 : GAP_CHUNK;
            for (int64_t k = 0; k < m; k++) acc[k] = 0.0;
            for (int64_t p = 0; p < pixels; p++) {
                const float *row = xb + p * c + k0;
                for (int64_t k = 0; k < m; k++) acc[k] += (double)row[k];
            }
            for (int64_t k = 0; k < m; k++)
                out[b * c + k0 + k] = (float)(acc[k] / (double)pixels);
        }
    }
}

void bnn_softmax(const float *x, float *out, int64_t rows, int64_t c) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *o = out + r * c;
        float top = xr[0];
        for (int64_t k = 1; k < c; k++) top = xr[k] > top ? xr[k] : top;
        float sum = 0.0f;
        for (int64_t k = 0; k < c; k++) {
            o[k] = expf(xr[k] - top);
            sum += o[k];
        }
        for (int64_t k = 0; k < c; k++) o[k] /= sum;
    }
}
