/*
 * bnncore_runtime._kernels (shared by bnncore.engine): Python bindings of the bit-packed binary kernels.
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
#include "csrc/program.h"

/* ------------------------------------------------------------------------ */
/* Python glue                                                               */
/* ------------------------------------------------------------------------ */

/* The buffers a call (or a program, for its lifetime) holds. */
typedef struct {
    Py_buffer *views;
    int count, cap;
} views_t;

static void release_views(views_t *vs) {
    for (int i = 0; i < vs->count; i++) PyBuffer_Release(&vs->views[i]);
    PyMem_Free(vs->views);
    vs->views = NULL;
    vs->count = vs->cap = 0;
}

/* Gets a C-contiguous buffer of at least min_bytes; NULL (with an exception
 * set) on failure. obj == Py_None gives NULL with no exception when allowed. */
static void *get_buffer(views_t *vs, PyObject *obj, int writable, Py_ssize_t min_bytes,
                        const char *name) {
    if (vs->count == vs->cap) {
        const int cap = vs->cap ? 2 * vs->cap : 8;
        Py_buffer *grown = (Py_buffer *)PyMem_Realloc(vs->views, (size_t)cap * sizeof(Py_buffer));
        if (!grown) {
            PyErr_NoMemory();
            return NULL;
        }
        vs->views = grown;
        vs->cap = cap;
    }
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

/* The geometry of a binary convolution from an object with the attributes
 * BNN_GEOM_FIELDS names (bnncore.engine.kernels.ConvGeometry), and the packed
 * output layout (gout groups of cw_out_g words, wpp_out words per row),
 * checked; cw_g is derived. 0, or -1 with ValueError set. */
static int parse_conv(PyObject *obj, int64_t gout, int64_t cw_out_g, int64_t wpp_out,
                      geom_t *g) {
    memset(g, 0, sizeof *g);
#define BNN_READ_FIELD(name, member)                                                 \
    {                                                                                \
        PyObject *v = PyObject_GetAttrString(obj, #name);                            \
        if (!v) return -1;                                                           \
        const long long x = PyLong_AsLongLong(v);                                    \
        Py_DECREF(v);                                                                \
        if (x == -1 && PyErr_Occurred()) return -1;                                  \
        const int may_be_zero = !strcmp(#name, "pt") || !strcmp(#name, "pl") ||      \
                                !strcmp(#name, "pad_mode");                          \
        if (x < (may_be_zero ? 0 : 1)) {                                             \
            PyErr_Format(PyExc_ValueError, "geometry field %s is %lld; must be %s",  \
                         #name, x, may_be_zero ? ">= 0" : ">= 1");                   \
            return -1;                                                               \
        }                                                                            \
        g->member = (int64_t)x;                                                      \
    }
    BNN_GEOM_FIELDS(BNN_READ_FIELD)
#undef BNN_READ_FIELD
    g->cw_g = (g->cin_g + 63) / 64;
    if (gout < 1 || cw_out_g < 1 || g->cout % g->groups || g->cout % gout ||
        g->wpp_in < g->groups * g->cw_g || cw_out_g * 64 < g->cout / gout ||
        wpp_out < gout * cw_out_g || g->pad_mode > 1) {
        PyErr_SetString(PyExc_ValueError, "inconsistent convolution geometry");
        return -1;
    }
    if (g->kh * g->kw_ * g->cin_g >= (1 << 24) || g->cout > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "dot product length must stay below 2**24");
        return -1;
    }
    return 0;
}

/* bconv(x, weights, geometry, (gout, cw_out_g, wpp_out), ops, y, y_packed,
 * residual, threads) */
static PyObject *py_bconv(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_obj, *w_obj, *geom_obj, *ops_obj, *y_obj, *yp_obj, *res_obj;
    long long gout, cw_out_g, wpp_out;
    int threads;
    if (!PyArg_ParseTuple(args, "OOO(LLL)OOOOi", &x_obj, &w_obj, &geom_obj, &gout,
                          &cw_out_g, &wpp_out, &ops_obj, &y_obj, &yp_obj, &res_obj,
                          &threads))
        return NULL;
    geom_t g;
    if (parse_conv(geom_obj, gout, cw_out_g, wpp_out, &g) != 0) return NULL;
    const int64_t rows = g.n * g.oh * g.ow;
    conv_t cv;
    memset(&cv, 0, sizeof(cv));
    cv.g = &g;
    bnn_conv_init(&cv);
    const bnn_config_t *cfg = bnn_config(); /* one configuration for the call */
    cv.mk = cfg->mk;
    cv.mkh = cfg->mkh;

    views_t vs = {NULL, 0, 0};
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
    e.gout = (int)gout;
    e.cw_out_g = (int)cw_out_g;
    e.wpp_out = (int)wpp_out;
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
    views_t vs = {NULL, 0, 0};
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
    views_t vs = {NULL, 0, 0};
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
    views_t vs = {NULL, 0, 0};
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
    views_t vs = {NULL, 0, 0};
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
    views_t vs = {NULL, 0, 0};
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
    views_t vs = {NULL, 0, 0};
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
    views_t vs = {NULL, 0, 0};
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


/* ------------------------------------------------------------------------ */
/* Programs: a plan's native steps held by the core (csrc/program.h)         */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD bnn_program_t prog;
    int64_t *slot_offset; /* per sample, in the arena; -1: always bound */
    views_t views;        /* the weights, held for the program's lifetime */
    int64_t arena_bytes;  /* per sample: the end of the last arena slot */
    /* call()'s arena, kept for the next call (taken and given back under the
     * GIL; a call that finds it taken, by a call in another thread, allocates
     * its own), and its size in bytes. */
    char *arena;
    int64_t arena_size;
} ProgramObject;

static void program_dealloc(PyObject *obj) {
    ProgramObject *self = (ProgramObject *)obj;
    free(self->arena);
    bnn_program_free_steps(&self->prog);
    PyMem_Free(self->prog.steps);
    PyMem_Free(self->prog.slot_bytes);
    PyMem_Free(self->slot_offset);
    release_views(&self->views);
    Py_TYPE(obj)->tp_free(obj);
}

static int long_attr(PyObject *obj, const char *name, long long *out) {
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (!v) return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* Fills out[0..max) from a sequence attribute of ints; returns the count or -1. */
static int ints_attr(PyObject *obj, const char *name, int64_t *out, int max) {
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (!v) return -1;
    PyObject *seq = PySequence_Fast(v, "expected a sequence of integers");
    Py_DECREF(v);
    if (!seq) return -1;
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    if (count > max) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "step %s: at most %d entries, got %zd", name, max,
                     count);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        const long long x = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (x == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        out[i] = (int64_t)x;
    }
    Py_DECREF(seq);
    return (int)count;
}

static const char *const step_names[] = {
#define BNN_STEP_NAME(kind, name, dims) name,
    BNN_STEP_KINDS(BNN_STEP_NAME)
#undef BNN_STEP_NAME
};
static const char *const step_dims[] = {
#define BNN_STEP_DIMS(kind, name, dims) dims,
    BNN_STEP_KINDS(BNN_STEP_DIMS)
#undef BNN_STEP_DIMS
};

/* Number of named dims of a kind, and whether a variable tail follows. */
static int dims_count(int kind, int *variable) {
    int count = 0;
    const char *s = step_dims[kind];
    *variable = 0;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        const char *start = s;
        while (*s && *s != ' ') s++;
        if (s[-1] == '*') *variable = 1;
        else count++;
        (void)start;
    }
    return count;
}

static int bad_program(const char *what, int index) {
    PyErr_Format(PyExc_ValueError, "program step %d: %s", index, what);
    return -1;
}

/* Slot s is a slot of the program with at least `bytes` bytes per sample. */
static int need(const ProgramObject *self, int s, int64_t bytes, int index) {
    if (s < 0 || s >= self->prog.nslots) return bad_program("slot out of range", index);
    if (self->prog.slot_bytes[s] < bytes) return bad_program("slot too small", index);
    return 0;
}

/* One step from its Python description (bnncore.engine.program.CStep), its
 * sizes checked against the slots. */
static int parse_step(ProgramObject *self, PyObject *obj, bnn_step_t *st, int index) {
    long long kind, out, out_packed, residual;
    if (long_attr(obj, "kind", &kind) || long_attr(obj, "out", &out) ||
        long_attr(obj, "out_packed", &out_packed) || long_attr(obj, "residual", &residual))
        return -1;
    if (kind < 0 || kind >= STEP_KIND_COUNT) return bad_program("unknown kind", index);
    st->kind = (int)kind;
    st->out = (int)out;
    st->out_packed = (int)out_packed;
    st->residual = (int)residual;
    int64_t ins[BNN_STEP_MAX_INPUTS];
    const int nin = ints_attr(obj, "inputs", ins, BNN_STEP_MAX_INPUTS);
    if (nin < 1) return nin < 0 ? -1 : bad_program("no inputs", index);
    st->nin = nin;
    for (int i = 0; i < nin; i++) st->in[i] = (int)ins[i];
    const int ndims = ints_attr(obj, "dims", st->dims, BNN_STEP_MAX_DIMS);
    if (ndims < 0) return -1;
    st->ndims = ndims;
    int variable;
    const int fixed = dims_count(st->kind, &variable);
    if (variable ? ndims != fixed + nin : ndims != fixed)
        return bad_program("wrong number of dims", index);
    for (int i = 0; i < ndims; i++)
        if (st->dims[i] < 0) return bad_program("negative dim", index);
    PyObject *pad = PyObject_GetAttrString(obj, "pad_value");
    if (!pad) return -1;
    st->pad_value = (float)PyFloat_AsDouble(pad);
    Py_DECREF(pad);
    if (PyErr_Occurred()) return -1;
    PyObject *weights = PyObject_GetAttrString(obj, "weights");
    if (!weights) return -1;
    PyObject *w0obj = Py_None;
    if (weights != Py_None) {
        if (!PyTuple_Check(weights) || PyTuple_GET_SIZE(weights) > 1) {
            Py_DECREF(weights);
            return bad_program("weights must be a tuple of at most one array", index);
        }
        if (PyTuple_GET_SIZE(weights) == 1) w0obj = PyTuple_GET_ITEM(weights, 0);
    }
    Py_INCREF(w0obj);
    Py_DECREF(weights);
    int rc = -1;
    const int64_t *d = st->dims;
    st->e.cout = 1;
    st->e.gout = 1;
    st->e.cw_out_g = 1;
    st->e.wpp_out = 1;
    int64_t ops_width = 0; /* channels of the ops' vectors (0: no ops) */
    int64_t w0_bytes = -1; /* bytes the weight needs (-1: none allowed) */
    switch (st->kind) {
        case STEP_PACK:
            if (d[1] < 1 || d[2] < 1 || d[1] % d[2] || d[3] * 64 < d[1] / d[2]) {
                bad_program("inconsistent packing layout", index);
                goto done;
            }
            if (need(self, st->in[0], d[0] * d[1] * 4, index) ||
                need(self, st->out, d[0] * d[2] * d[3] * 8, index))
                goto done;
            break;
        case STEP_BCONV: {
            PyObject *geometry = PyObject_GetAttrString(obj, "geometry");
            if (!geometry) goto done;
            const int bad = parse_conv(geometry, d[0], d[1], d[2], &st->g);
            Py_DECREF(geometry);
            if (bad) goto done;
            const geom_t *g = &st->g;
            const int64_t rows = g->n * g->oh * g->ow;
            conv_t cv;
            memset(&cv, 0, sizeof cv);
            cv.g = g;
            bnn_conv_init(&cv);
            w0_bytes = g->groups * cv.npan_g * cv.kwords * 4 * 8;
            st->e.cout = (int)g->cout;
            st->e.gout = (int)d[0];
            st->e.cw_out_g = (int)d[1];
            st->e.wpp_out = (int)d[2];
            ops_width = g->cout;
            if (need(self, st->in[0], g->n * g->h * g->w * g->wpp_in * 8, index) ||
                (st->out >= 0 && need(self, st->out, rows * g->cout * 4, index)) ||
                (st->out_packed >= 0 && need(self, st->out_packed, rows * d[2] * 8, index)) ||
                (st->residual >= 0 && need(self, st->residual, rows * g->cout * 4, index)))
                goto done;
            if (st->out < 0 && st->out_packed < 0) {
                bad_program("no output", index);
                goto done;
            }
            break;
        }
        case STEP_PMAXPOOL:
            for (int i = 0; i < 12; i++)
                if (d[i] < (i == 8 || i == 9 ? 0 : 1)) {
                    bad_program("inconsistent pooling geometry", index);
                    goto done;
                }
            if (need(self, st->in[0], d[0] * d[1] * d[2] * d[3] * 8, index) ||
                need(self, st->out, d[0] * d[10] * d[11] * d[3] * 8, index))
                goto done;
            if (w0obj != Py_None) w0_bytes = d[3] * 8;
            break;
        case STEP_FCONV:
            for (int i = 0; i < 16; i++)
                if (d[i] < (i == 10 || i == 11 ? 0 : 1)) {
                    bad_program("inconsistent convolution geometry", index);
                    goto done;
                }
            if (d[16] > 1 || (d[16] ? d[14] != d[3] * d[15] : d[15] != 1)) {
                bad_program("inconsistent convolution geometry", index);
                goto done;
            }
            w0_bytes = d[4] * d[5] * (d[16] ? d[14] : d[3] * d[14]) * 4;
            if (need(self, st->in[0], d[0] * d[1] * d[2] * d[3] * 4, index) ||
                need(self, st->out, d[0] * d[12] * d[13] * d[14] * 4, index))
                goto done;
            break;
        case STEP_EPILOGUE:
            if (d[1] < 1 || d[2] < 1 || d[1] % d[2] || d[3] * 64 < d[1] / d[2] ||
                d[4] < d[2] * d[3]) {
                bad_program("inconsistent epilogue geometry", index);
                goto done;
            }
            st->e.cout = (int)d[1];
            st->e.gout = (int)d[2];
            st->e.cw_out_g = (int)d[3];
            st->e.wpp_out = (int)d[4];
            ops_width = d[1];
            if (need(self, st->in[0], d[0] * d[1] * 4, index) ||
                (st->out >= 0 && need(self, st->out, d[0] * d[1] * 4, index)) ||
                (st->out_packed >= 0 && need(self, st->out_packed, d[0] * d[4] * 8, index)) ||
                (st->residual >= 0 && need(self, st->residual, d[0] * d[1] * 4, index)))
                goto done;
            break;
        case STEP_ELEMENTWISE:
            if (d[1] < 1) {
                bad_program("no channels", index);
                goto done;
            }
            st->e.cout = (int)d[1];
            ops_width = d[1];
            if (need(self, st->in[0], d[0] * d[1] * 4, index) ||
                need(self, st->out, d[0] * d[1] * 4, index))
                goto done;
            break;
        case STEP_FMAXPOOL:
            for (int i = 0; i < 12; i++)
                if (d[i] < (i == 8 || i == 9 ? 0 : 1)) {
                    bad_program("inconsistent pooling geometry", index);
                    goto done;
                }
            if (need(self, st->in[0], d[0] * d[1] * d[2] * d[3] * 4, index) ||
                need(self, st->out, d[0] * d[10] * d[11] * d[3] * 4, index))
                goto done;
            break;
        case STEP_ADD:
            if (nin < 2) {
                bad_program("an add needs two inputs", index);
                goto done;
            }
            for (int i = 0; i < nin; i++)
                if (need(self, st->in[i], d[0] * 4, index)) goto done;
            if (need(self, st->out, d[0] * 4, index)) goto done;
            break;
        case STEP_CONCAT: {
            int64_t width = 0;
            for (int i = 0; i < nin; i++) {
                if (need(self, st->in[i], d[0] * d[1 + i] * 4, index)) goto done;
                width += d[1 + i];
            }
            if (need(self, st->out, d[0] * width * 4, index)) goto done;
            break;
        }
        case STEP_GAP:
            if (d[1] < 1 || d[2] < 1) {
                bad_program("sizes must be positive", index);
                goto done;
            }
            if (need(self, st->in[0], d[0] * d[1] * d[2] * 4, index) ||
                need(self, st->out, d[0] * d[2] * 4, index))
                goto done;
            break;
        case STEP_SOFTMAX:
            if (d[1] < 1) {
                bad_program("sizes must be positive", index);
                goto done;
            }
            if (need(self, st->in[0], d[0] * d[1] * 4, index) ||
                need(self, st->out, d[0] * d[1] * 4, index))
                goto done;
            break;
        default:
            break;
    }
    if (st->residual >= 0 && st->kind != STEP_BCONV && st->kind != STEP_EPILOGUE) {
        bad_program("only convolutions and epilogues read a residual", index);
        goto done;
    }
    if (w0_bytes >= 0) {
        if (w0obj == Py_None) {
            bad_program("missing weights", index);
            goto done;
        }
        st->w0 = get_buffer(&self->views, w0obj, 0, (Py_ssize_t)w0_bytes, "weights");
        if (!st->w0) goto done;
    } else if (w0obj != Py_None) {
        bad_program("unexpected weights", index);
        goto done;
    }
    if (ops_width > 0) {
        PyObject *ops = PyObject_GetAttrString(obj, "ops");
        if (!ops) goto done;
        static const float dummy = 0.0f;
        st->e.residual = st->residual >= 0 ? &dummy : NULL; /* set per run */
        const int bad = parse_ops(ops, &st->e, &self->views, (int)ops_width);
        st->e.residual = NULL;
        Py_DECREF(ops);
        if (bad) goto done;
        if (st->kind == STEP_ELEMENTWISE)
            for (int q = 0; q < st->e.nops; q++)
                if (st->e.ops[q].code == OP_RESIDUAL) {
                    bad_program("no residual in elementwise steps", index);
                    goto done;
                }
    }
    if (st->kind == STEP_BCONV && bnn_program_prepare_bconv(st) != 0) {
        PyErr_NoMemory();
        goto done;
    }
    rc = 0;
done:
    Py_DECREF(w0obj);
    return rc;
}

static PyTypeObject ProgramType;

/* program(slot_bytes, slot_offsets, steps) */
static PyObject *py_program(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *bytes_obj, *offsets_obj, *steps_obj;
    if (!PyArg_ParseTuple(args, "OOO", &bytes_obj, &offsets_obj, &steps_obj)) return NULL;
    PyObject *bytes_seq = PySequence_Fast(bytes_obj, "slot_bytes must be a sequence");
    if (!bytes_seq) return NULL;
    PyObject *offsets_seq = PySequence_Fast(offsets_obj, "slot_offsets must be a sequence");
    PyObject *steps_seq =
        offsets_seq ? PySequence_Fast(steps_obj, "steps must be a sequence") : NULL;
    ProgramObject *self = NULL;
    if (!steps_seq) goto fail;
    const Py_ssize_t nslots = PySequence_Fast_GET_SIZE(bytes_seq);
    const Py_ssize_t nsteps = PySequence_Fast_GET_SIZE(steps_seq);
    if (PySequence_Fast_GET_SIZE(offsets_seq) != nslots) {
        PyErr_SetString(PyExc_ValueError, "one offset per slot");
        goto fail;
    }
    self = PyObject_New(ProgramObject, &ProgramType);
    if (!self) goto fail;
    memset(&self->prog, 0, sizeof self->prog);
    memset(&self->views, 0, sizeof self->views);
    self->slot_offset = NULL;
    self->arena = NULL;
    self->arena_size = 0;
    self->arena_bytes = 0;
    self->prog.slot_bytes = (int64_t *)PyMem_Calloc((size_t)nslots + 1, sizeof(int64_t));
    self->slot_offset = (int64_t *)PyMem_Calloc((size_t)nslots + 1, sizeof(int64_t));
    self->prog.steps = (bnn_step_t *)PyMem_Calloc((size_t)nsteps + 1, sizeof(bnn_step_t));
    if (!self->prog.slot_bytes || !self->slot_offset || !self->prog.steps) {
        PyErr_NoMemory();
        goto fail;
    }
    self->prog.nslots = (int)nslots;
    for (Py_ssize_t i = 0; i < nslots; i++) {
        const long long b = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(bytes_seq, i));
        const long long o = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(offsets_seq, i));
        if (PyErr_Occurred()) goto fail;
        if (b < 0 || o < -1) {
            PyErr_SetString(PyExc_ValueError, "slot sizes and offsets must be >= 0");
            goto fail;
        }
        self->prog.slot_bytes[i] = b;
        self->slot_offset[i] = o;
        if (o >= 0 && o + b > self->arena_bytes) self->arena_bytes = o + b;
    }
    for (Py_ssize_t i = 0; i < nsteps; i++) {
        self->prog.nsteps = (int)i + 1; /* freed on failure */
        if (parse_step(self, PySequence_Fast_GET_ITEM(steps_seq, i), &self->prog.steps[i],
                       (int)i) != 0)
            goto fail;
    }
    self->prog.nsteps = (int)nsteps;
    Py_DECREF(bytes_seq);
    Py_DECREF(offsets_seq);
    Py_DECREF(steps_seq);
    return (PyObject *)self;
fail:
    Py_XDECREF(self);
    Py_DECREF(bytes_seq);
    Py_XDECREF(offsets_seq);
    Py_XDECREF(steps_seq);
    return NULL;
}

/* Steps [first, last) on n samples, with the arena at `arena` (len bytes, or
 * NULL) and the bound slots of `bindings` ((slot, buffer, writable) tuples);
 * the GIL released while the steps run. 0, or -1 with an exception set. */
static int run_bound(ProgramObject *self, char *arena, Py_ssize_t len, long long n,
                     PyObject *bindings, int first, int last, int threads) {
    const bnn_program_t *p = &self->prog;
    if (n < 1 || first < 0 || last > p->nsteps || first > last) {
        PyErr_SetString(PyExc_ValueError, "bad batch size or step range");
        return -1;
    }
    views_t vs = {NULL, 0, 0};
    int result = -1;
    char **base = (char **)PyMem_Calloc((size_t)p->nslots + 1, sizeof(char *));
    /* bound[s]: 0 in the arena, 1 bound read-only, 2 bound writable. */
    char *bound = (char *)PyMem_Calloc((size_t)p->nslots + 1, 1);
    if (!base || !bound) {
        PyErr_NoMemory();
        goto done;
    }
    if (arena) {
        for (int s = 0; s < p->nslots; s++) {
            if (self->slot_offset[s] < 0) continue;
            if ((self->slot_offset[s] + p->slot_bytes[s]) * n > len) {
                PyErr_SetString(PyExc_ValueError, "arena too small");
                goto done;
            }
            base[s] = arena + self->slot_offset[s] * n;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(bindings); i++) {
        PyObject *b = PyTuple_GET_ITEM(bindings, i);
        int slot, w;
        PyObject *buf;
        if (!PyTuple_Check(b) || !PyArg_ParseTuple(b, "iOp", &slot, &buf, &w)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a binding is (slot, buffer, writable)");
            goto done;
        }
        if (slot < 0 || slot >= p->nslots) {
            PyErr_SetString(PyExc_ValueError, "binding slot out of range");
            goto done;
        }
        base[slot] = (char *)get_buffer(&vs, buf, w, (Py_ssize_t)(p->slot_bytes[slot] * n),
                                        "bound buffer");
        if (!base[slot]) goto done;
        bound[slot] = (char)(w ? 2 : 1);
    }
    for (int i = first; i < last; i++) {
        const bnn_step_t *st = &p->steps[i];
        int missing = st->residual >= 0 && !base[st->residual];
        for (int k = 0; k < st->nin; k++) missing |= !base[st->in[k]];
        const int outs[2] = {st->out, st->out_packed};
        for (int k = 0; k < 2; k++) {
            if (outs[k] < 0) continue;
            missing |= !base[outs[k]];
            if (bound[outs[k]] == 1) {
                PyErr_SetString(PyExc_ValueError, "a slot the steps write is bound read-only");
                goto done;
            }
        }
        if (missing) {
            PyErr_SetString(PyExc_ValueError,
                            "a slot the steps use is neither in the arena nor bound");
            goto done;
        }
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = bnn_program_run(p, first, last, base, (int64_t)n, threads);
    Py_END_ALLOW_THREADS if (rc != 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = 0;
done:
    PyMem_Free(bound);
    PyMem_Free(base);
    release_views(&vs);
    return result;
}

/* run(arena, n, bindings, first, last, threads): steps [first, last) on n
 * samples; bindings: (slot, buffer, writable) for the slots not in the arena
 * (inputs, outputs). The GIL is released for the whole run. */
static PyObject *program_run(PyObject *obj, PyObject *args) {
    ProgramObject *self = (ProgramObject *)obj;
    PyObject *arena_obj, *bindings;
    long long n;
    int first, last, threads;
    if (!PyArg_ParseTuple(args, "OLO!iii", &arena_obj, &n, &PyTuple_Type, &bindings, &first,
                          &last, &threads))
        return NULL;
    views_t vs = {NULL, 0, 0};
    char *arena = NULL;
    Py_ssize_t len = 0;
    if (arena_obj != Py_None) {
        arena = (char *)get_buffer(&vs, arena_obj, 1, 0, "arena");
        if (!arena) {
            release_views(&vs);
            return NULL;
        }
        len = vs.views[0].len;
    }
    const int rc = run_bound(self, arena, len, n, bindings, first, last, threads);
    release_views(&vs);
    if (rc != 0) return NULL;
    Py_RETURN_NONE;
}

/* call(n, bindings, threads): the whole program on n samples, in an arena the
 * program keeps between calls (a call running in another thread meanwhile
 * gets one of its own); bindings as for run(). */
static PyObject *program_call(PyObject *obj, PyObject *args) {
    ProgramObject *self = (ProgramObject *)obj;
    PyObject *bindings;
    long long n;
    int threads;
    if (!PyArg_ParseTuple(args, "LO!i", &n, &PyTuple_Type, &bindings, &threads)) return NULL;
    if (n < 1 || n > ((int64_t)1 << 40) / (self->arena_bytes + 1)) {
        PyErr_SetString(PyExc_ValueError, "bad batch size");
        return NULL;
    }
    const int64_t size = self->arena_bytes * (int64_t)n + 64; /* never empty */
    char *arena = self->arena; /* taken under the GIL */
    int64_t have = self->arena_size;
    self->arena = NULL;
    self->arena_size = 0;
    if (arena && have < size) {
        free(arena);
        arena = NULL;
    }
    if (!arena) {
        /* 64-byte aligned, as the Python side's arenas (non-temporal stores) */
        have = (size + 63) / 64 * 64;
        arena = (char *)aligned_alloc(64, (size_t)have);
        if (!arena) return PyErr_NoMemory();
    }
    const int rc = run_bound(self, arena, (Py_ssize_t)have, n, bindings, 0,
                             self->prog.nsteps, threads);
    if (!self->arena) { /* given back under the GIL */
        self->arena = arena;
        self->arena_size = have;
    } else {
        free(arena);
    }
    if (rc != 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *program_len(PyObject *obj, PyObject *noargs) {
    (void)noargs;
    return PyLong_FromLong(((ProgramObject *)obj)->prog.nsteps);
}

static PyMethodDef program_methods[] = {
    {"run", program_run, METH_VARARGS,
     "run(arena, n, bindings, first, last, threads): steps [first, last) on n samples, "
     "the GIL released; bindings: (slot, buffer, writable) of the slots not in the arena."},
    {"call", program_call, METH_VARARGS,
     "call(n, bindings, threads): the whole program on n samples in an arena the "
     "program keeps, the GIL released; bindings as for run()."},
    {"steps", program_len, METH_NOARGS, "steps(): the number of steps."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bnncore_runtime._kernels.Program",
    .tp_basicsize = sizeof(ProgramObject),
    .tp_dealloc = program_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A plan's native steps held by the core; made by program().",
    .tp_methods = program_methods,
};

/* The shared step description: kinds with the names of their dims, the
 * fields of a step, the geometry's fields and the epilogue ops. */
static PyObject *description(void) {
    PyObject *kinds = PyTuple_New(STEP_KIND_COUNT);
    if (!kinds) return NULL;
    for (int k = 0; k < STEP_KIND_COUNT; k++) {
        PyObject *item = Py_BuildValue("(ss)", step_names[k], step_dims[k]);
        if (!item) {
            Py_DECREF(kinds);
            return NULL;
        }
        PyTuple_SET_ITEM(kinds, k, item);
    }
#define BNN_NAME_STR(name) #name,
#define BNN_GEOM_STR(name, member) #name,
#define BNN_OP_STR(name, text) text,
    static const char *const fields[] = {BNN_STEP_FIELDS(BNN_NAME_STR)};
    static const char *const geometry[] = {BNN_GEOM_FIELDS(BNN_GEOM_STR)};
    static const char *const ops[] = {BNN_EPILOGUE_OPS(BNN_OP_STR)};
#undef BNN_NAME_STR
#undef BNN_GEOM_STR
#undef BNN_OP_STR
    const char *const *lists[3] = {fields, geometry, ops};
    const int counts[3] = {(int)(sizeof fields / sizeof *fields),
                           (int)(sizeof geometry / sizeof *geometry),
                           (int)(sizeof ops / sizeof *ops)};
    PyObject *tuples[3] = {NULL, NULL, NULL};
    for (int t = 0; t < 3; t++) {
        tuples[t] = PyTuple_New(counts[t]);
        if (!tuples[t]) goto fail;
        for (int i = 0; i < counts[t]; i++) {
            PyObject *name = PyUnicode_FromString(lists[t][i]);
            if (!name) goto fail;
            PyTuple_SET_ITEM(tuples[t], i, name);
        }
    }
    return Py_BuildValue("{s:N,s:N,s:N,s:N}", "step_kinds", kinds, "step_fields", tuples[0],
                         "geometry_fields", tuples[1], "epilogue_ops", tuples[2]);
fail:
    Py_DECREF(kinds);
    for (int t = 0; t < 3; t++) Py_XDECREF(tuples[t]);
    return NULL;
}

static PyObject *py_description(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return description();
}

static PyMethodDef methods[] = {
    {"program", py_program, METH_VARARGS,
     "program(slot_bytes, slot_offsets, steps): a Program (see csrc/program.h)."},
    {"description", py_description, METH_NOARGS,
     "description(): the step kinds and their dims, the step fields, the binary "
     "convolution's geometry fields and the epilogue ops, as the core defines them."},
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
     "bconv(x, weights, geometry, (gout, cw_out_g, wpp_out), ops, y, y_packed, residual, "
     "threads): binary "
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
                                    "The compiled core of bnncore_runtime and bnncore.engine.",
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
    if (PyType_Ready(&ProgramType) != 0) return NULL;
    return PyModule_Create(&module);
}
