/* Scalar binary micro-kernels: portable C, and the same loop compiled for the
 * POPCNT instruction (x86). */
#include <stddef.h>
#include <stdint.h>

#include "bnn.h"

#define DEFINE_SCALAR_KERNEL(NAME, ATTR)                                        \
    ATTR void NAME(const uint64_t *const *a, int mr, const uint64_t *panels,    \
                   int npan, int kw, int32_t kbits, int32_t *dots, int ldd) {   \
        for (int p = 0; p < npan; p++) {                                        \
            const uint64_t *b = panels + (size_t)p * kw * 4;                    \
            for (int i = 0; i < mr; i++) {                                      \
                const uint64_t *ai = a[i];                                      \
                uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;                        \
                for (int k = 0; k < kw; k++) {                                  \
                    uint64_t x = ai[k];                                         \
                    c0 += (uint64_t)__builtin_popcountll(x ^ b[4 * k]);         \
                    c1 += (uint64_t)__builtin_popcountll(x ^ b[4 * k + 1]);     \
                    c2 += (uint64_t)__builtin_popcountll(x ^ b[4 * k + 2]);     \
                    c3 += (uint64_t)__builtin_popcountll(x ^ b[4 * k + 3]);     \
                }                                                               \
                int32_t *d = dots + (size_t)i * ldd + 4 * p;                    \
                d[0] = kbits - 2 * (int32_t)c0;                                 \
                d[1] = kbits - 2 * (int32_t)c1;                                 \
                d[2] = kbits - 2 * (int32_t)c2;                                 \
                d[3] = kbits - 2 * (int32_t)c3;                                 \
            }                                                                   \
        }                                                                       \
    }

DEFINE_SCALAR_KERNEL(bnn_mk_generic, )
#if BNN_X86
DEFINE_SCALAR_KERNEL(bnn_mk_popcnt, __attribute__((target("popcnt"))))
#endif
