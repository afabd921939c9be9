/*
 * bnncore.engine._kernels: Python bindings of the bit-packed binary kernels.
 *
 * The kernels live in csrc/ (micro-kernels, convolution driver, thread pool);
 * this file only converts arguments. Only the CPython C API and the buffer
 * protocol are used. See csrc/bnn.h for the bit layout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csrc/bnn.h"
#include "csrc/pool.h"

/* ------------------------------------------------------------------------ */
/* Python glue                                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    Py_buffer views[2 * MAX_OPS + 8];
    int count;
} views_t;

static void release_views(views_t *vs) {
    for (int i = 0; i < vs->count; i++) PyBuffer_Release(&vs->views[i]);
    vs->count = 0;
}

/* Gets a C-contiguous buffer of at least min_bytes; NULL (with an exception
 * set) on failure. obj == Py_None gives NULL with no exception when allowed. */
static void *get_buffer(views_t *vs, PyObject *obj, int writable, Py_ssize_t min_bytes,
                        const char *name) {
    Py_buffer *view = &vs->views[vs->count];
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a C-contiguous%s buffer (e.g. a NumPy array)", name,
                     writable ? " writable" : "");
        return NULL;
    }
    vs->count++;
    if (view->len < min_bytes) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes; at least %zd are needed",
                     name, view->len, min_bytes);
        return NULL;
    }
    return view->buf;
}

static int parse_geometry(PyObject *tuple, int64_t *out, int count, const char *name) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != count) {
        PyErr_Format(PyExc_ValueError, "%s must be a tuple of %d integers", name, count);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, i));
        if (v == -1 && PyErr_Occurred()) return -1;
        out[i] = (int64_t)v;
    }
    return 0;
}

static int parse_ops(PyObject *list, epilogue_t *e, views_t *vs, int cout) {
    if (!PyList_Check(list) && !PyTuple_Check(list)) {
        PyErr_SetString(PyExc_ValueError, "ops must be a list of tuples");
        return -1;
    }
    PyObject *seq = PySequence_Fast(list, "ops must be a sequence");
    if (!seq) return -1;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_OPS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "at most %d epilogue ops are supported, got %zd",
                     MAX_OPS, n);
        return -1;
    }
    e->nops = (int)n;
    const Py_ssize_t vec = (Py_ssize_t)cout * (Py_ssize_t)sizeof(float);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *a1 = Py_None, *a2 = Py_None;
        int code;
        if (!PyArg_ParseTuple(item, "i|OO", &code, &a1, &a2)) {
            Py_DECREF(seq);
            return -1;
        }
        epi_op *op = &e->ops[i];
        memset(op, 0, sizeof(*op));
        op->code = code;
        switch (code) {
            case OP_SCALE:
            case OP_BIAS:
                op->v = (const float *)get_buffer(vs, a1, 0, vec, "op vector");
                if (!op->v) goto fail;
                break;
            case OP_MULADD:
                op->v = (const float *)get_buffer(vs, a1, 0, vec, "op multiplier");
                if (!op->v) goto fail;
                op->u = (const float *)get_buffer(vs, a2, 0, vec, "op offset");
                if (!op->u) goto fail;
                break;
            case OP_CLIP:
                op->lo = (float)PyFloat_AsDouble(a1);
                op->hi = (float)PyFloat_AsDouble(a2);
                if (PyErr_Occurred()) goto fail;
                break;
            case OP_RELU:
            case OP_SIGN:
                break;
            case OP_RESIDUAL:
                if (!e->residual) {
                    PyErr_SetString(PyExc_ValueError,
                                    "a residual op needs the residual argument");
                    goto fail;
                }
                break;
            default:
                PyErr_Format(PyExc_ValueError, "unknown epilogue op code %d", code);
                goto fail;
        }
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

enum {
    G_N, G_H, G_W, G_WPP, G_GROUPS, G_CING, G_CWG, G_KH, G_KW, G_SH, G_SW, G_DH, G_DW,
    G_PT, G_PL, G_OH, G_OW, G_COUT, G_PADMODE, G_GOUT, G_CWOUTG, G_WPPOUT, G_COUNT
};

static PyObject *py_bconv(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *w_obj, *geom_obj, *ops_obj, *y_obj, *yp_obj, *res_obj;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOOOOOi", &x_obj, &w_obj, &geom_obj, &ops_obj,
                          &y_obj, &yp_obj, &res_obj, &threads))
        return NULL;
    int64_t gv[G_COUNT];
    if (parse_geometry(geom_obj, gv, G_COUNT, "geometry") != 0) return NULL;
    for (int i = 0; i < G_COUNT; i++) {
        const int may_be_zero = i == G_PT || i == G_PL || i == G_PADMODE;
        if (gv[i] < (may_be_zero ? 0 : 1)) {
            PyErr_Format(PyExc_ValueError, "geometry field %d is %lld; must be %s", i,
                         (long long)gv[i], may_be_zero ? ">= 0" : ">= 1");
            return NULL;
        }
    }
    geom_t g = {gv[G_N], gv[G_H], gv[G_W], gv[G_WPP], gv[G_GROUPS], gv[G_CING],
                gv[G_CWG], gv[G_KH], gv[G_KW], gv[G_SH], gv[G_SW], gv[G_DH], gv[G_DW],
                gv[G_PT], gv[G_PL], gv[G_OH], gv[G_OW], gv[G_COUT], gv[G_PADMODE]};
    if (g.cout % g.groups || g.cout % gv[G_GOUT] || g.cw_g * 64 < g.cin_g ||
        g.wpp_in < g.groups * g.cw_g || gv[G_CWOUTG] * 64 < g.cout / gv[G_GOUT] ||
        gv[G_WPPOUT] < gv[G_GOUT] * gv[G_CWOUTG] || g.pad_mode > 1) {
        PyErr_SetString(PyExc_ValueError, "inconsistent convolution geometry");
        return NULL;
    }
    const int64_t kbits = g.kh * g.kw_ * g.cin_g;
    if (kbits >= (1 << 24) || g.cout > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "dot product length must stay below 2**24");
        return NULL;
    }
    const int64_t rows = g.n * g.oh * g.ow;
    conv_t cv;
    memset(&cv, 0, sizeof(cv));
    cv.g = &g;
    bnn_conv_init(&cv);
    const bnn_config_t *cfg = bnn_config(); /* one configuration for the call */
    cv.mk = cfg->mk;
    cv.mkh = cfg->mkh;

    views_t vs;
    vs.count = 0;
    epilogue_t e;
    memset(&e, 0, sizeof(e));
    e.cfg = cfg;
    int32_t *wsum = NULL;
    int64_t *offsets = NULL;
    PyObject *result = NULL;
    cv.x = (const uint64_t *)get_buffer(&vs, x_obj, 0,
                                        (Py_ssize_t)(g.n * g.h * g.w * g.wpp_in * 8), "x");
    if (!cv.x) goto done;
    cv.panels = (const uint64_t *)get_buffer(
        &vs, w_obj, 0, (Py_ssize_t)g.groups * cv.npan_g * cv.kwords * 4 * 8, "weights");
    if (!cv.panels) goto done;
    e.cout = (int)g.cout;
    e.gout = (int)gv[G_GOUT];
    e.cw_out_g = (int)gv[G_CWOUTG];
    e.wpp_out = (int)gv[G_WPPOUT];
    if (res_obj != Py_None) {
        e.residual = (const float *)get_buffer(&vs, res_obj, 0,
                                               (Py_ssize_t)(rows * g.cout * 4), "residual");
        if (!e.residual) goto done;
    }
    if (y_obj != Py_None) {
        e.y = (float *)get_buffer(&vs, y_obj, 1, (Py_ssize_t)(rows * g.cout * 4), "y");
        if (!e.y) goto done;
    }
    if (yp_obj != Py_None) {
        e.yp = (uint64_t *)get_buffer(&vs, yp_obj, 1,
                                      (Py_ssize_t)(rows * e.wpp_out * 8), "y_packed");
        if (!e.yp) goto done;
    }
    if (parse_ops(ops_obj, &e, &vs, (int)g.cout) != 0) goto done;

    offsets = (int64_t *)malloc((size_t)cv.taps * sizeof(int64_t));
    if (!offsets) {
        PyErr_NoMemory();
        goto done;
    }
    bnn_conv_offsets(&cv, offsets);
    if (g.pad_mode == 0 && cv.has_pad) {
        wsum = bnn_weight_sums(&cv);
        if (!wsum) {
            PyErr_NoMemory();
            goto done;
        }
        cv.wsum = wsum;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = bnn_conv(&cv, &e, threads);
    Py_END_ALLOW_THREADS if (rc != 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    free(wsum);
    free(offsets);
    release_views(&vs);
    return result;
}

/* pack(x, out, rows, channels, groups, words_per_group, threads) */
static PyObject *py_pack(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *out_obj;
    long long rows, ch, groups, cwg;
    int threads;
    if (!PyArg_ParseTuple(args, "OOLLLLi", &x_obj, &out_obj, &rows, &ch, &groups, &cwg,
                          &threads))
        return NULL;
    if (rows < 0 || ch < 1 || groups < 1 || ch % groups || cwg * 64 < ch / groups) {
        PyErr_SetString(PyExc_ValueError, "inconsistent packing layout");
        return NULL;
    }
    views_t vs;
    vs.count = 0;
    const float *x = (const float *)get_buffer(&vs, x_obj, 0, (Py_ssize_t)(rows * ch * 4), "x");
    uint64_t *out = x ? (uint64_t *)get_buffer(&vs, out_obj, 1,
                                               (Py_ssize_t)(rows * groups * cwg * 8), "out")
                      : NULL;
    if (!x || !out) {
        release_views(&vs);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS bnn_pack(x, out, rows, ch, groups, cwg, threads);
    Py_END_ALLOW_THREADS release_views(&vs);
    Py_RETURN_NONE;
}

/* unpack(words, out, rows, channels, groups, words_per_group) -> +-1 floats */
static PyObject *py_unpack(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *out_obj;
    long long rows, ch, groups, cwg;
    if (!PyArg_ParseTuple(args, "OOLLLL", &x_obj, &out_obj, &rows, &ch, &groups, &cwg))
        return NULL;
    if (rows < 0 || ch < 1 || groups < 1 || ch % groups || cwg * 64 < ch / groups) {
        PyErr_SetString(PyExc_ValueError, "inconsistent packing layout");
        return NULL;
    }
    views_t vs;
    vs.count = 0;
    const uint64_t *x = (const uint64_t *)get_buffer(
        &vs, x_obj, 0, (Py_ssize_t)(rows * groups * cwg * 8), "words");
    float *out = x ? (float *)get_buffer(&vs, out_obj, 1, (Py_ssize_t)(rows * ch * 4), "out")
                   : NULL;
    if (!x || !out) {
        release_views(&vs);
        return NULL;
    }
    bnn_unpack(x, out, rows, ch, groups, cwg);
    release_views(&vs);
    Py_RETURN_NONE;
}

/*
 * maxpool(x, out, geometry, or_mask, threads): max pooling of +-1 values on
 * packed bits. geometry = (n, h, w, wpp, ph, pw, sh, sw, pt, pl, oh, ow).
 * The max of +-1 values is -1 only if all are -1: AND of the bits. Channels
 * whose bit in or_mask (wpp words) is set take the OR (the min) instead, for
 * a monotone decreasing map applied before the sign.
 */
static PyObject *py_maxpool(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *out_obj, *geom_obj, *mask_obj;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOOi", &x_obj, &out_obj, &geom_obj, &mask_obj, &threads))
        return NULL;
    int64_t g[12];
    if (parse_geometry(geom_obj, g, 12, "geometry") != 0) return NULL;
    const int64_t n = g[0], h = g[1], w = g[2], wpp = g[3], ph = g[4], pw = g[5], sh = g[6],
                  sw = g[7], pt = g[8], pl = g[9], oh = g[10], ow = g[11];
    if (n < 1 || h < 1 || w < 1 || wpp < 1 || ph < 1 || pw < 1 || sh < 1 || sw < 1 ||
        pt < 0 || pl < 0 || oh < 1 || ow < 1) {
        PyErr_SetString(PyExc_ValueError, "inconsistent pooling geometry");
        return NULL;
    }
    views_t vs;
    vs.count = 0;
    const uint64_t *x =
        (const uint64_t *)get_buffer(&vs, x_obj, 0, (Py_ssize_t)(n * h * w * wpp * 8), "x");
    uint64_t *out = x ? (uint64_t *)get_buffer(&vs, out_obj, 1,
                                               (Py_ssize_t)(n * oh * ow * wpp * 8), "out")
                      : NULL;
    const uint64_t *mask = NULL;
    if (out && mask_obj != Py_None)
        mask = (const uint64_t *)get_buffer(&vs, mask_obj, 0, (Py_ssize_t)(wpp * 8), "or_mask");
    if (!x || !out || (mask_obj != Py_None && !mask)) {
        release_views(&vs);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS bnn_maxpool(x, out, g, mask, threads);
    Py_END_ALLOW_THREADS release_views(&vs);
    Py_RETURN_NONE;
}

/* ---- instruction-set level ---------------------------------------------- */

/* ('auto', 'portable', ...) up to the highest level this CPU runs. */
static PyObject *allowed_isas(void) {
    const int top = bnn_max_isa();
    PyObject *t = PyTuple_New(top + 2);
    if (!t) return NULL;
    for (int i = -1; i <= top; i++) {
        PyObject *name = PyUnicode_FromString(bnn_isa_name(i));
        if (!name) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i + 1, name);
    }
    return t;
}

/* The level named by `value` (a str), or BNN_ISA_COUNT with ValueError set
 * naming `what` (e.g. "isa") and the levels this CPU runs. */
static int parse_isa(PyObject *value, const char *what) {
    int isa = -2;
    if (PyUnicode_Check(value)) {
        const char *name = PyUnicode_AsUTF8(value);
        if (!name) return BNN_ISA_COUNT;
        isa = bnn_isa_from_name(name);
    }
    if (isa == BNN_ISA_AUTO || (isa >= 0 && isa <= bnn_max_isa())) return isa;
    PyObject *allowed = allowed_isas();
    if (allowed) {
        PyErr_Format(PyExc_ValueError,
                     "Expected %s to be one of %R on this CPU. Received: %s=%R.", what,
                     allowed, what, value);
        Py_DECREF(allowed);
    }
    return BNN_ISA_COUNT;
}

static PyObject *py_set_isa(PyObject *self, PyObject *arg) {
    (void)self;
    const int isa = parse_isa(arg, "isa");
    if (isa == BNN_ISA_COUNT) return NULL;
    if (bnn_set_isa(isa, 0) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "the instruction-set level could not be set");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_isa(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(bnn_isa_name(bnn_config()->isa));
}

static PyObject *py_supported_isas(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    const int top = bnn_max_isa();
    PyObject *list = PyList_New(top + 1);
    if (!list) return NULL;
    for (int i = 0; i <= top; i++) {
        PyObject *name = PyUnicode_FromString(bnn_isa_name(i));
        if (!name) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, name);
    }
    return list;
}

/* set_kernel(name): the older names of the levels ('generic' = portable),
 * plus 'popcnt': the portable level with the scalar POPCNT micro-kernel. */
static PyObject *py_set_kernel(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    static const char *const names[] = {"auto", "generic", "popcnt", "avx2", "avx512"};
    static const int levels[] = {BNN_ISA_AUTO, BNN_ISA_PORTABLE, BNN_ISA_PORTABLE,
                                 BNN_ISA_AVX2, BNN_ISA_AVX512};
    for (int i = 0; i < 5; i++) {
        if (strcmp(name, names[i]) != 0) continue;
        if (bnn_set_isa(levels[i], i == 2) == 0) Py_RETURN_NONE;
        break;
    }
    /* Unknown, or above this CPU: the names it can run. */
    const bnn_cpu_t *cpu = bnn_cpu();
    const int top = bnn_max_isa();
    PyErr_Format(PyExc_ValueError,
                 "Expected kernel to be one of ('auto', 'generic'%s%s%s) on this CPU. "
                 "Received: kernel=%R.",
                 cpu->popcnt ? ", 'popcnt'" : "", top >= BNN_ISA_AVX2 ? ", 'avx2'" : "",
                 top >= BNN_ISA_AVX512 ? ", 'avx512'" : "", PyTuple_GET_ITEM(args, 0));
    return NULL;
}

static PyObject *py_kernel(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(bnn_config()->kernel);
}

static PyObject *py_features(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    const bnn_cpu_t *c = bnn_cpu();
    return Py_BuildValue("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:i}", "avx2",
                         c->avx2 ? Py_True : Py_False, "fma", c->fma ? Py_True : Py_False,
                         "popcnt", c->popcnt ? Py_True : Py_False, "avx512f",
                         c->avx512f ? Py_True : Py_False, "avx512bw",
                         c->avx512bw ? Py_True : Py_False, "avx512vl",
                         c->avx512vl ? Py_True : Py_False, "avx512vpopcntdq",
                         c->avx512vpopcntdq ? Py_True : Py_False, "worker_threads",
                         pool_workers());
}

/* fmaxpool(x, out, geometry, threads): float NHWC max pooling (padding ignored). */
static PyObject *py_fmaxpool(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *out_obj, *geom_obj;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOi", &x_obj, &out_obj, &geom_obj, &threads)) return NULL;
    int64_t g[12];
    if (parse_geometry(geom_obj, g, 12, "geometry") != 0) return NULL;
    for (int i = 0; i < 12; i++) {
        if (g[i] < (i == 8 || i == 9 ? 0 : 1)) {
            PyErr_SetString(PyExc_ValueError, "inconsistent pooling geometry");
            return NULL;
        }
    }
    views_t vs;
    vs.count = 0;
    const float *x =
        (const float *)get_buffer(&vs, x_obj, 0, (Py_ssize_t)(g[0] * g[1] * g[2] * g[3] * 4), "x");
    float *out = x ? (float *)get_buffer(&vs, out_obj, 1,
                                         (Py_ssize_t)(g[0] * g[10] * g[11] * g[3] * 4), "out")
                   : NULL;
    if (!x || !out) {
        release_views(&vs);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS bnn_fmaxpool(x, out, g, threads);
    Py_END_ALLOW_THREADS release_views(&vs);
    Py_RETURN_NONE;
}

/* fconv(x, kernel, out, geometry, pad_value, depthwise, threads) */
static PyObject *py_fconv(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *k_obj, *out_obj, *geom_obj;
    float pad_value;
    int depthwise, threads;
    if (!PyArg_ParseTuple(args, "OOOOfpi", &x_obj, &k_obj, &out_obj, &geom_obj, &pad_value,
                          &depthwise, &threads))
        return NULL;
    int64_t g[16];
    if (parse_geometry(geom_obj, g, 16, "geometry") != 0) return NULL;
    for (int i = 0; i < 16; i++) {
        if (g[i] < (i == 10 || i == 11 ? 0 : 1)) {
            PyErr_SetString(PyExc_ValueError, "inconsistent convolution geometry");
            return NULL;
        }
    }
    if (depthwise ? g[14] != g[3] * g[15] : g[15] != 1) {
        PyErr_SetString(PyExc_ValueError, "inconsistent convolution geometry");
        return NULL;
    }
    views_t vs;
    vs.count = 0;
    const Py_ssize_t kernel_floats = g[4] * g[5] * (depthwise ? g[14] : g[3] * g[14]);
    const float *x = (const float *)get_buffer(
        &vs, x_obj, 0, (Py_ssize_t)(g[0] * g[1] * g[2] * g[3] * 4), "x");
    const float *k = x ? (const float *)get_buffer(&vs, k_obj, 0, kernel_floats * 4, "kernel")
                       : NULL;
    float *out = k ? (float *)get_buffer(&vs, out_obj, 1,
                                         (Py_ssize_t)(g[0] * g[12] * g[13] * g[14] * 4), "out")
                   : NULL;
    if (!out) {
        release_views(&vs);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = bnn_fconv(x, k, out, g, pad_value, depthwise, threads);
    Py_END_ALLOW_THREADS release_views(&vs);
    if (rc != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* epilogue(y_in, ops, y, y_packed, residual, (rows, cout, gout, cw_out_g, wpp_out),
 * threads): the fused epilogue over float rows (y may be y_in). */
static PyObject *py_epilogue(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *in_obj, *ops_obj, *y_obj, *yp_obj, *res_obj, *geom_obj;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOOOOi", &in_obj, &ops_obj, &y_obj, &yp_obj, &res_obj,
                          &geom_obj, &threads))
        return NULL;
    int64_t g[5];
    if (parse_geometry(geom_obj, g, 5, "geometry") != 0) return NULL;
    if (g[0] < 0 || g[1] < 1 || g[2] < 1 || g[1] % g[2] || g[3] * 64 < g[1] / g[2] ||
        g[4] < g[2] * g[3]) {
        PyErr_SetString(PyExc_ValueError, "inconsistent epilogue geometry");
        return NULL;
    }
    const int64_t rows = g[0], cout = g[1];
    views_t vs;
    vs.count = 0;
    epilogue_t e;
    memset(&e, 0, sizeof(e));
    e.cout = (int)cout;
    e.gout = (int)g[2];
    e.cw_out_g = (int)g[3];
    e.wpp_out = (int)g[4];
    PyObject *result = NULL;
    const float *y_in =
        (const float *)get_buffer(&vs, in_obj, 0, (Py_ssize_t)(rows * cout * 4), "y_in");
    if (!y_in) goto done;
    if (res_obj != Py_None) {
        e.residual = (const float *)get_buffer(&vs, res_obj, 0,
                                               (Py_ssize_t)(rows * cout * 4), "residual");
        if (!e.residual) goto done;
    }
    if (y_obj != Py_None) {
        e.y = (float *)get_buffer(&vs, y_obj, 1, (Py_ssize_t)(rows * cout * 4), "y");
        if (!e.y) goto done;
    }
    if (yp_obj != Py_None) {
        e.yp = (uint64_t *)get_buffer(&vs, yp_obj, 1, (Py_ssize_t)(rows * e.wpp_out * 8),
                                      "y_packed");
        if (!e.yp) goto done;
    }
    if (parse_ops(ops_obj, &e, &vs, (int)cout) != 0) goto done;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = bnn_epilogue(y_in, rows, &e, threads);
    Py_END_ALLOW_THREADS if (rc != 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    release_views(&vs);
    return result;
}

/* gap(x, out, n, pixels, channels) and softmax(x, out, rows, channels): the
 * classifier head on float32 rows (softmax: pixels = 1, out may be x). */
static PyObject *head_op(PyObject *args, int softmax) {
    PyObject *x_obj, *out_obj;
    long long n, pixels = 1, c;
    const int ok = softmax
                       ? PyArg_ParseTuple(args, "OOLL", &x_obj, &out_obj, &n, &c)
                       : PyArg_ParseTuple(args, "OOLLL", &x_obj, &out_obj, &n, &pixels, &c);
    if (!ok) return NULL;
    if (n < 1 || pixels < 1 || c < 1) {
        PyErr_Format(PyExc_ValueError, "%s: sizes must be positive",
                     softmax ? "softmax" : "gap");
        return NULL;
    }
    views_t vs;
    vs.count = 0;
    PyObject *result = NULL;
    const float *x = (const float *)get_buffer(&vs, x_obj, 0,
                                               (Py_ssize_t)(n * pixels * c * 4), "x");
    if (!x) goto done;
    float *out = (float *)get_buffer(&vs, out_obj, 1, (Py_ssize_t)(n * c * 4), "out");
    if (!out) goto done;
    Py_BEGIN_ALLOW_THREADS if (softmax) bnn_softmax(x, out, n, c);
    else bnn_global_avg_pool(x, out, n, pixels, c);
    Py_END_ALLOW_THREADS result = Py_None;
    Py_INCREF(result);
done:
    release_views(&vs);
    return result;
}

static PyObject *py_gap(PyObject *self, PyObject *args) {
    (void)self;
    return head_op(args, 0);
}

static PyObject *py_softmax(PyObject *self, PyObject *args) {
    (void)self;
    return head_op(args, 1);
}

static PyObject *py_pool_configure(PyObject *self, PyObject *args) {
    (void)self;
    long long spin_ns;
    int strikes;
    if (!PyArg_ParseTuple(args, "Li", &spin_ns, &strikes)) return NULL;
    int64_t old_spin;
    int old_strikes;
    pool_settings(&old_spin, &old_strikes);
    pool_configure((int64_t)spin_ns, strikes);
    return Py_BuildValue("(Li)", (long long)old_spin, old_strikes);
}

/* spin(n): n iterations of 8 dependent integer additions (~8 cycles each on
 * x86-64), for estimating the clock rate; returns the final counter. */
static PyObject *py_spin(PyObject *self, PyObject *args) {
    (void)self;
    long long n;
    if (!PyArg_ParseTuple(args, "L", &n)) return NULL;
    uint64_t acc = 0;
    Py_BEGIN_ALLOW_THREADS
#if BNN_X86
    for (long long i = 0; i < n; i++) {
        __asm__ volatile(
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
            : "+r"(acc));
    }
#else
    for (long long i = 0; i < n; i++) {
        acc += 8;
        __asm__ volatile("" : "+r"(acc));
    }
#endif
    Py_END_ALLOW_THREADS return PyLong_FromUnsignedLongLong(acc);
}

static PyMethodDef methods[] = {
    {"gap", py_gap, METH_VARARGS,
     "gap(x, out, n, pixels, channels): global average pooling of float rows."},
    {"softmax", py_softmax, METH_VARARGS,
     "softmax(x, out, rows, channels): softmax of each float row."},
    {"pool_configure", py_pool_configure, METH_VARARGS,
     "pool_configure(spin_ns, strike_limit): worker spin time after a job and "
     "the single-thread fallback's trigger (0: off); negative: unchanged. "
     "Returns the previous (spin_ns, strike_limit)."},
    {"spin", py_spin, METH_VARARGS,
     "spin(n): n x 8 dependent additions (about 8n cycles), for clock estimates."},
    {"bconv", py_bconv, METH_VARARGS,
     "bconv(x, weights, geometry, ops, y, y_packed, residual, threads): binary "
     "convolution on packed bits with a fused float epilogue."},
    {"pack", py_pack, METH_VARARGS,
     "pack(x, out, rows, channels, groups, words_per_group, threads): sign bits."},
    {"unpack", py_unpack, METH_VARARGS,
     "unpack(words, out, rows, channels, groups, words_per_group): bits to +-1."},
    {"fconv", py_fconv, METH_VARARGS,
     "fconv(x, kernel, out, geometry, pad_value, depthwise, threads): float "
     "convolution rounding like TensorFlow's CPU kernels."},
    {"epilogue", py_epilogue, METH_VARARGS,
     "epilogue(y_in, ops, y, y_packed, residual, geometry, threads): fused "
     "elementwise ops over float rows, float and/or packed output."},
    {"fmaxpool", py_fmaxpool, METH_VARARGS,
     "fmaxpool(x, out, geometry, threads): float NHWC max pooling."},
    {"maxpool", py_maxpool, METH_VARARGS,
     "maxpool(x, out, geometry, or_mask, threads): max pooling on packed bits."},
    {"set_kernel", py_set_kernel, METH_VARARGS,
     "set_kernel(name): 'generic' (the portable level), 'popcnt' (portable with "
     "the scalar POPCNT kernel), 'avx2', 'avx512' or 'auto'."},
    {"kernel", py_kernel, METH_NOARGS, "kernel(): name of the micro-kernel in use."},
    {"set_isa", py_set_isa, METH_O,
     "set_isa(name): the instruction-set level, 'portable', 'avx2', 'avx512' (up to "
     "what the CPU runs) or 'auto' (BNN_ENGINE_ISA if set, else the highest)."},
    {"isa", py_isa, METH_NOARGS, "isa(): the instruction-set level in use."},
    {"supported_isas", py_supported_isas, METH_NOARGS,
     "supported_isas(): the levels this CPU runs, lowest first."},
    {"features", py_features, METH_NOARGS, "features(): CPU and build features."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT,
                                    "_kernels",
                                    "Bit-packed binary kernels of bnncore.engine.",
                                    -1,
                                    methods,
                                    NULL,
                                    NULL,
                                    NULL,
                                    NULL};

/* BNN_ENGINE_ISA (portable|avx2|avx512|auto), read once: the level "auto"
 * stands for; an unknown level or one above the CPU fails the import. */
static int read_isa_environment(void) {
    const char *env = getenv("BNN_ENGINE_ISA");
    if (!env || !*env) return 0;
    PyObject *value = PyUnicode_DecodeFSDefault(env);
    if (!value) return -1;
    const int isa = parse_isa(value, "BNN_ENGINE_ISA");
    Py_DECREF(value);
    if (isa == BNN_ISA_COUNT) return -1;
    bnn_set_default_isa(isa);
    return bnn_set_isa(BNN_ISA_AUTO, 0);
}

PyMODINIT_FUNC PyInit__kernels(void) {
    if (read_isa_environment() != 0) return NULL;
    return PyModule_Create(&module);
}
