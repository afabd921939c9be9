/*
 * The CPU configuration: which instruction-set level the core runs at, and
 * every function it chooses by level (micro-kernels, row packing, epilogues,
 * the float kernels' SIMD switch). The CPU's features are read once (cpuid);
 * one configuration per level is made from them once, and the one in use is
 * a pointer to one of those, swapped atomically by bnn_set_isa. Entry points
 * read the pointer once per call, so a call runs with one configuration from
 * start to end even if another thread changes the level meanwhile.
 *
 * Levels: portable (plain C, no target-specific code: the scalar kernels;
 * not even the POPCNT instruction), avx2 (AVX2 + FMA), avx512 (avx2 plus
 * AVX-512 F, BW, VL and VPOPCNTDQ for the binary kernels).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "bnn.h"

static bnn_cpu_t g_cpu;
static bnn_config_t g_configs[BNN_ISA_COUNT];
static bnn_config_t g_popcnt; /* portable with the scalar POPCNT micro-kernel */
static int g_default = BNN_ISA_AUTO;
static _Atomic(const bnn_config_t *) g_current = NULL;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const char *const g_names[BNN_ISA_COUNT] = {"portable", "avx2", "avx512"};

static int max_isa(const bnn_cpu_t *c);

static void detect(void) {
#if BNN_X86
    __builtin_cpu_init();
    g_cpu.avx2 = __builtin_cpu_supports("avx2") != 0;
    g_cpu.fma = __builtin_cpu_supports("fma") != 0;
    g_cpu.popcnt = __builtin_cpu_supports("popcnt") != 0;
    g_cpu.avx512f = __builtin_cpu_supports("avx512f") != 0;
    g_cpu.avx512bw = __builtin_cpu_supports("avx512bw") != 0;
    g_cpu.avx512vl = __builtin_cpu_supports("avx512vl") != 0;
    g_cpu.avx512vpopcntdq = __builtin_cpu_supports("avx512vpopcntdq") != 0;
#endif
}

static void make_configs(void) {
    detect();
    bnn_config_t *c = &g_configs[BNN_ISA_PORTABLE];
    memset(g_configs, 0, sizeof g_configs);
    c->isa = BNN_ISA_PORTABLE;
    c->kernel = "generic";
    c->mk = bnn_mk_generic;
    c->mkh = NULL;
    c->pack_row = bnn_pack_row_portable;
    c->apply_ops = bnn_apply_ops_portable;
    c->epilogue_row = NULL;
    c->epilogue_row64 = NULL;
    c->epilogue_rows = NULL;
    c->float_simd = 0;
    g_popcnt = *c;
#if BNN_X86
    g_popcnt.kernel = "popcnt";
    g_popcnt.mk = bnn_mk_popcnt;

    c = &g_configs[BNN_ISA_AVX2];
    c->isa = BNN_ISA_AVX2;
    c->kernel = "avx2";
    c->mk = bnn_mk_avx2;
    c->mkh = bnn_mkh_avx2;
    c->pack_row = bnn_pack_row_avx2;
    c->apply_ops = bnn_apply_ops_avx2;
    c->epilogue_row = bnn_epilogue_row_avx2;
    c->epilogue_rows = bnn_epilogue_rows_avx2;
    c->float_simd = 1;

    /* AVX-512 binary kernels, packing and epilogues of whole 64-channel
     * words; the float kernels and the epilogue of other channel counts stay
     * AVX2 (the same operations: the same bits). */
    c = &g_configs[BNN_ISA_AVX512];
    *c = g_configs[BNN_ISA_AVX2];
    c->isa = BNN_ISA_AVX512;
    c->kernel = "avx512";
    c->mk = bnn_mk_avx512;
    c->mkh = NULL; /* VPOPCNTQ counts whole words: no split rows */
    c->pack_row = bnn_pack_row_avx512;
    c->epilogue_row64 = bnn_epilogue_row_avx512;
    c->epilogue_rows = bnn_epilogue_rows_avx512;
#else
    g_configs[BNN_ISA_AVX2] = *c;
    g_configs[BNN_ISA_AVX512] = *c;
#endif
    atomic_store(&g_current, &g_configs[max_isa(&g_cpu)]);
}

static void init(void) { pthread_once(&g_once, make_configs); }

const bnn_cpu_t *bnn_cpu(void) {
    init();
    return &g_cpu;
}

const char *bnn_isa_name(int isa) {
    return isa >= 0 && isa < BNN_ISA_COUNT ? g_names[isa] : "auto";
}

int bnn_isa_from_name(const char *name) {
    if (strcmp(name, "auto") == 0) return BNN_ISA_AUTO;
    for (int i = 0; i < BNN_ISA_COUNT; i++)
        if (strcmp(name, g_names[i]) == 0) return i;
    return -2;
}

static int max_isa(const bnn_cpu_t *c) {
    if (!(c->avx2 && c->fma)) return BNN_ISA_PORTABLE;
    if (c->avx512f && c->avx512bw && c->avx512vl && c->avx512vpopcntdq)
        return BNN_ISA_AVX512;
    return BNN_ISA_AVX2;
}

int bnn_max_isa(void) { return max_isa(bnn_cpu()); }

const bnn_config_t *bnn_config(void) {
    init();
    return atomic_load(&g_current);
}

int bnn_set_isa(int isa, int popcnt) {
    init();
    if (isa == BNN_ISA_AUTO) isa = bnn_default_isa();
    if (isa < 0 || isa > bnn_max_isa()) return -1;
    if (popcnt && (isa != BNN_ISA_PORTABLE || !g_cpu.popcnt)) return -1;
    atomic_store(&g_current, popcnt ? &g_popcnt : &g_configs[isa]);
    return 0;
}

void bnn_set_default_isa(int isa) {
    init();
    g_default = isa;
}

int bnn_default_isa(void) {
    init();
    return g_default == BNN_ISA_AUTO ? bnn_max_isa() : g_default;
}
