/*
 * Classifier-head operations on float rows: global average pooling and
 * softmax. Their outputs are never binarized, so they need not round exactly
 * like TensorFlow (the planner checks them against the Keras layer within
 * float32 rounding). One C call each replaces several NumPy calls, whose fixed
 * costs dominate at these sizes.
 */
#include <math.h>

#include "bnn.h"

void bnn_global_avg_pool(const float *x, float *out, int64_t n, int64_t pixels,
                         int64_t c) {
    const float count = (float)pixels;
    for (int64_t b = 0; b < n; b++) {
        float *o = out + b * c;
        const float *xb = x + b * pixels * c;
        for (int64_t k = 0; k < c; k++) o[k] = 0.0f;
        for (int64_t p = 0; p < pixels; p++) {
            const float *row = xb + p * c;
            for (int64_t k = 0; k < c; k++) o[k] += row[k];
        }
        for (int64_t k = 0; k < c; k++) o[k] /= count;
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
