"""The compiled core against NumPy oracles: packing, convolution, epilogue, pooling."""

from __future__ import annotations

import os

import numpy as np
import pytest
from engine_helpers import conv_oracle, signs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnncore.engine import kernels as K

# Every instruction-set level this CPU runs (portable always), and the
# portable level's scalar POPCNT kernel where the CPU has POPCNT.
ISAS = K.supported_isas()
# What "auto" means in this process: the level BNN_ENGINE_ISA forced at
# import, else the highest the CPU runs.
AUTO = os.environ.get("BNN_ENGINE_ISA") or "auto"
AUTO = ISAS[-1] if AUTO == "auto" else AUTO
LEVELS = [*ISAS, *(["popcnt"] if K.features()["popcnt"] else [])]


def _use(level):
    if level == "popcnt":
        K.set_kernel("popcnt")
    else:
        K.set_isa(level)


@pytest.fixture(autouse=True)
def _restore_isa():
    yield
    K.set_isa("auto")


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test at each level this CPU supports."""
    K.set_isa(request.param)
    yield request.param
    K.set_isa("auto")


def test_pack_bits_follow_sign_convention(isa):
    # 0.0 and -0.0 are +1 (bit 0), as bnncore.math.sign has it; NaN is not < 0.
    x = np.array([[1.0, -1.0, 0.0, -0.0, -2.5, np.nan, 3.0]], dtype=np.float32)
    words = K.pack(x)
    assert words.shape == (1, 1)
    assert int(words[0, 0]) == 0b0010010
    # The same values in whole 64-channel words (the vectorized loops).
    wide = np.resize(x, (3, 64 * 3 + 5))
    expected = np.packbits(
        np.pad(wide < 0, ((0, 0), (0, 59))), axis=1, bitorder="little"
    )
    np.testing.assert_array_equal(K.pack(wide), expected.view("<u8"))


@pytest.mark.parametrize("channels", [1, 63, 64, 65, 130, 256, 300])
@pytest.mark.parametrize("groups", [1, 2])
def test_pack_equals_numpy_at_every_level(isa, channels, groups):
    rng = np.random.default_rng(channels * 10 + groups)
    channels *= groups
    x = rng.normal(size=(5, channels)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = 0.0
    words = K.pack(x, groups=groups)
    cg = channels // groups
    cwg = -(-cg // 64)
    for g in range(groups):
        bits = np.zeros((5, cwg * 64), dtype=bool)
        bits[:, :cg] = x[:, g * cg : (g + 1) * cg] < 0
        expected = np.packbits(bits, axis=1, bitorder="little").view("<u8")
        np.testing.assert_array_equal(words[:, g * cwg : (g + 1) * cwg], expected)


def test_pack_groups_start_each_group_on_a_new_word():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 150)).astype(np.float32)  # 3 groups of 50
    words = K.pack(x, groups=3)
    assert words.shape == (3, 2, 3)
    for g in range(3):
        part = x[..., 50 * g : 50 * (g + 1)]
        expected = sum(
            (part[..., c] < 0).astype(np.uint64) << np.uint64(c) for c in range(50)
        )
        np.testing.assert_array_equal(words[..., g], expected)
    np.testing.assert_array_equal(
        K.unpack(words, 150, groups=3), np.where(x < 0, -1, 1)
    )


def test_pack_weights_layout_by_hand():
    # kernel (1, 2, 3, 5): K = 6 bits per output channel in (kh, kw, cin) order.
    negative = np.zeros((1, 2, 3, 5), dtype=bool)
    negative[0, 0, 1, 0] = True  # channel 0: bit 1
    negative[0, 1, 2, 0] = True  # channel 0: bit 3 + 2 = 5
    negative[0, 1, 0, 4] = True  # channel 4 (second panel, lane 0): bit 3
    panels = K.pack_weights(negative)
    assert panels.shape == (1, 2, 1, 4)  # 1 group, 2 panels, 1 word, 4 lanes
    assert int(panels[0, 0, 0, 0]) == (1 << 1) | (1 << 5)
    assert int(panels[0, 1, 0, 0]) == 1 << 3
    assert int(panels[0, 0, 0, 1:].sum()) == 0 and int(panels[0, 1, 0, 1:].sum()) == 0


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin_g = draw(st.integers(1, 140))
    ng = draw(st.integers(1, 11))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers((kh - 1) * dh + 1, 8))
    w = draw(st.integers((kw - 1) * dw + 1, 8))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    return {
        "n": draw(st.integers(1, 3)),
        "h": h,
        "w": w,
        "groups": groups,
        "cin_g": cin_g,
        "cout": ng * groups,
        "kernel": (kh, kw),
        "strides": (sh, sw),
        "dilation": (dh, dw),
        "pads": pads,
        "pad_mode": draw(st.integers(0, 1)),
        "seed": draw(st.integers(0, 2**31)),
    }


def _run(case, level, threads, ops=(), residual=None, packed_groups=None):
    rng = np.random.default_rng(case["seed"])
    groups, cin_g, cout = case["groups"], case["cin_g"], case["cout"]
    x = signs((case["n"], case["h"], case["w"], groups * cin_g), rng)
    w = signs((*case["kernel"], cin_g, cout), rng)
    ref = conv_oracle(
        x, w, case["strides"], case["dilation"], case["pads"], case["pad_mode"], groups
    )
    words = K.pack(x, groups)
    geo = K.ConvGeometry(
        case["n"], case["h"], case["w"], words.shape[-1], groups, cin_g,
        *case["kernel"], *case["strides"], *case["dilation"],
        case["pads"][0][0], case["pads"][1][0], ref.shape[1], ref.shape[2], cout,
        case["pad_mode"],
    )  # fmt: skip
    _use(level)
    y, yp = K.bconv(
        words, K.pack_weights(w < 0, groups), geo, list(ops),
        residual=residual, packed_groups=packed_groups, threads=threads,
    )  # fmt: skip
    return ref, y, yp


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_cases())
def test_binary_conv_equals_numpy_oracle_at_every_level_and_thread_count(case):
    for level in LEVELS:
        for threads in (1, 2):
            ref, y, yp = _run(case, level, threads, packed_groups=1)
            np.testing.assert_array_equal(y, ref.astype(np.float32))
            np.testing.assert_array_equal(
                K.unpack(yp, case["cout"]), np.where(ref < 0, -1, 1)
            )


@st.composite
def tiled_conv_cases(draw):
    # Whole 64-channel outputs in one group: rows x channel-slice tiles, each
    # finished (padding correction, epilogue, packed words) on its own.
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = tuple((draw(st.integers(0, 1)), draw(st.integers(0, 1))) for _ in range(2))
    return {
        "n": draw(st.integers(1, 2)),
        "h": draw(st.integers(kh, 12)),
        "w": draw(st.integers(kw, 12)),
        "groups": 1,
        "cin_g": draw(st.sampled_from([1, 37, 64, 130])),
        "cout": draw(st.sampled_from([64, 128, 192, 512])),
        "kernel": (kh, kw),
        "strides": (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        "dilation": (1, 1),
        "pads": pads,
        "pad_mode": draw(st.integers(0, 1)),
        "seed": draw(st.integers(0, 2**31)),
    }


@pytest.mark.parametrize("level", ISAS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=tiled_conv_cases(), threads=st.sampled_from([1, 2, 3]))
def test_binary_conv_in_tiles_equals_numpy_oracle(level, case, threads):
    rng = np.random.default_rng(case["seed"] + 1)
    f32 = np.float32
    cout = case["cout"]
    scale = rng.uniform(0.1, 2, cout).astype(f32)
    bias = rng.normal(size=cout).astype(f32)
    probe, _, _ = _run(case, level, 1)
    residual = rng.normal(size=probe.shape).astype(f32)
    ops = [(K.OP_MULADD, scale, bias), (K.OP_RESIDUAL,)]
    ref, y, yp = _run(case, level, threads, ops=ops, residual=residual, packed_groups=1)
    expected = (ref.astype(f32) * scale + bias) + residual
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(yp, K.pack(expected))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("cin", [64, 128, 256, 600])
def test_dot_product_lengths_with_specialized_and_flushed_loops(level, cin):
    # 3x3x64, 3x3x128 and 3x3x256 (9, 18 and 36 words) have specialized loops
    # (AVX2: 9 and 18; AVX-512: all three, odd ones end with a half step);
    # 3x3x600 = 85 words crosses three flushes of the AVX2 31-word byte counters.
    case = {
        "n": 1, "h": 5, "w": 6, "groups": 1, "cin_g": cin, "cout": 9,
        "kernel": (3, 3), "strides": (1, 1), "dilation": (1, 1),
        "pads": ((1, 1), (1, 1)), "pad_mode": 0, "seed": 7,
    }  # fmt: skip
    ref, y, _ = _run(case, level, threads=2)
    np.testing.assert_array_equal(y, ref.astype(np.float32))


@pytest.mark.parametrize(
    ("cout", "packed_groups"),
    # scalar path; 8 channels at a time; 64-channel blocks held in registers
    [(6, 2), (16, 1), (48, 3), (40, 5), (128, 2), (64, 1)],
)
def test_epilogue_ops_round_like_separate_float32_operations(isa, cout, packed_groups):
    case = {
        "n": 2, "h": 5, "w": 5, "groups": 1, "cin_g": 70, "cout": cout,
        "kernel": (3, 3), "strides": (1, 1), "dilation": (1, 1),
        "pads": ((1, 1), (1, 1)), "pad_mode": 1, "seed": 3,
    }  # fmt: skip
    rng = np.random.default_rng(1)
    f32 = np.float32
    scale = rng.uniform(0.1, 2, cout).astype(f32)
    bias = rng.normal(size=cout).astype(f32)
    mul = rng.normal(size=cout).astype(f32)
    add = rng.normal(size=cout).astype(f32)
    residual = rng.normal(size=(2, 5, 5, cout)).astype(f32)
    ops = [
        (K.OP_SCALE, scale),
        (K.OP_BIAS, bias),
        (K.OP_RELU,),
        (K.OP_MULADD, mul, add),
        (K.OP_CLIP, -3.0, 2.5),
        (K.OP_RESIDUAL,),
    ]
    ref, y, yp = _run(
        case, isa, 2, ops=ops, residual=residual, packed_groups=packed_groups
    )
    expected = ref.astype(f32) * scale + bias
    expected = np.maximum(expected, f32(0))
    expected = expected * mul + add
    expected = np.minimum(np.maximum(expected, f32(-3.0)), f32(2.5)) + residual
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(yp, K.pack(expected, groups=packed_groups))
    _, y_sign, _ = _run(case, isa, 1, ops=[(K.OP_BIAS, bias), (K.OP_SIGN,)])
    np.testing.assert_array_equal(y_sign, np.where(ref.astype(f32) + bias < 0, -1, 1))
    # The same ops on float rows (the epilogue of native float layers).
    rows = ref.astype(f32)
    out, packed = K.epilogue(
        rows.copy(), ops, packed_groups=packed_groups, residual=residual
    )
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(packed, K.pack(expected, groups=packed_groups))


def test_worker_pool_survives_fork():
    # Workers do not survive fork(): the child must compute alone, not hang.
    import multiprocessing

    case = {
        "n": 2, "h": 8, "w": 8, "groups": 1, "cin_g": 64, "cout": 8,
        "kernel": (3, 3), "strides": (1, 1), "dilation": (1, 1),
        "pads": ((1, 1), (1, 1)), "pad_mode": 1, "seed": 5,
    }  # fmt: skip
    _, y, _ = _run(case, "auto", 2)  # starts the parent's workers
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        result = pool.apply_async(_child_conv, (case,))
        child = result.get(timeout=60)
    np.testing.assert_array_equal(child, y)


def _child_conv(case):
    return _run(case, "auto", 2)[1]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    channels=st.integers(1, 130),
    pool=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    same=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_packed_max_pool_equals_numpy_max_and_min(
    n, h, w, channels, pool, strides, same, seed
):
    rng = np.random.default_rng(seed)
    x = signs((n, h, w, channels), rng)
    flip = rng.random(channels) < 0.5  # these channels take the min
    pads, sizes = [], []
    for size, p, s in zip((h, w), pool, strides, strict=True):
        if same:
            out = -(-size // s)
            total = max((out - 1) * s + p - size, 0)
            pads.append(total // 2)
        else:
            out = (size - p) // s + 1
            pads.append(0)
        sizes.append(out)
    if min(sizes) < 1:
        return
    mask = K.pack(np.where(flip, -1.0, 1.0)[None, :].astype(np.float32))[0]
    got = K.unpack(
        K.maxpool(K.pack(x), pool, strides, tuple(pads), tuple(sizes), mask, 2),
        channels,
    )
    for i in range(sizes[0]):
        for j in range(sizes[1]):
            top, left = i * strides[0] - pads[0], j * strides[1] - pads[1]
            win = x[:, max(top, 0) : top + pool[0], max(left, 0) : left + pool[1], :]
            expected = np.where(flip, win.min(axis=(1, 2)), win.max(axis=(1, 2)))
            np.testing.assert_array_equal(got[:, i, j, :], expected)


def test_bad_arguments_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="Received: kernel='sse9'"):
        K.set_kernel("sse9")
    words = K.pack(np.ones((1, 2, 2, 8), np.float32))
    panels = K.pack_weights(np.zeros((1, 1, 8, 4), bool))
    geo = K.ConvGeometry(1, 2, 2, 1, 1, 8, 1, 1, 1, 1, 1, 1, 0, 0, 2, 2, 4, 1)
    with pytest.raises(ValueError, match="weights holds"):
        K.bconv(words, panels[:, :, :0], geo, [])
    with pytest.raises(ValueError, match="unknown epilogue op code 42"):
        K.bconv(words, panels, geo, [(42,)])
    with pytest.raises(ValueError, match="residual"):
        K.bconv(words, panels, geo, [(K.OP_RESIDUAL,)])
    big = K.ConvGeometry(1, 2, 2, 1, 1, 8, 2048, 1024, 1, 1, 1, 1, 0, 0, 1, 1, 4, 1)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        K.bconv(words, panels, big, [])


@pytest.mark.parametrize("threads", [1, 2])
def test_large_float_outputs_written_around_the_cache_are_exact(isa, threads):
    # 2 x 64 x 64 x 512 float32 outputs (16 MiB) take the non-temporal stores
    # of the compiled core; a 1x1 convolution of signs is an integer matmul.
    rng = np.random.default_rng(5)
    n, h, w, cin, cout = 2, 64, 64, 64, 512
    x = signs((n, h, w, cin), rng)
    kernel = signs((1, 1, cin, cout), rng)
    expected = (x.reshape(-1, cin) @ kernel.reshape(cin, cout)).reshape(n, h, w, cout)
    bias = rng.normal(size=cout).astype(np.float32)
    geo = K.ConvGeometry(n, h, w, 1, 1, cin, 1, 1, 1, 1, 1, 1, 0, 0, h, w, cout, 1)
    y, yp = K.bconv(
        K.pack(x), K.pack_weights(kernel < 0), geo, [(K.OP_BIAS, bias)],
        packed_groups=1, threads=threads,
    )  # fmt: skip
    assert y.ctypes.data % 64 == 0
    np.testing.assert_array_equal(y, expected.astype(np.float32) + bias)
    np.testing.assert_array_equal(yp, K.pack(expected.astype(np.float32) + bias))


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling_and_softmax_match_float64_references(keepdims):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 5, 7, 24)).astype(np.float32) * 10
    expected = x.astype(np.float64).mean(axis=(1, 2), keepdims=keepdims)
    got = K.global_avg_pool(x, keepdims=keepdims)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    logits = rng.normal(size=(4, 1000)).astype(np.float32) * 30
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    got = K.softmax(logits)
    np.testing.assert_allclose(got, probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("spin_ns", "strike_limit"),
    [(0, 0), (0, 1), (1_000_000, 8)],
    ids=["no-spin-never-alone", "alone-after-one-slow-job", "long-spin"],
)
def test_pool_settings_do_not_change_results(spin_ns, strike_limit):
    # Workers that sleep at once, a pool that falls back to the caller alone
    # after any job threads did not speed up, and long spinning: same bits.
    from bnncore.engine import _kernels

    case = {
        "n": 2, "h": 9, "w": 11, "groups": 1, "cin_g": 64, "cout": 128,
        "kernel": (3, 3), "strides": (1, 1), "dilation": (1, 1),
        "pads": ((1, 1), (1, 1)), "pad_mode": 0, "seed": 13,
    }  # fmt: skip
    previous = _kernels.pool_configure(spin_ns, strike_limit)
    try:
        for threads in (2, 3, 2, 2, 3):
            ref, y, yp = _run(case, "auto", threads, packed_groups=1)
            np.testing.assert_array_equal(y, ref.astype(np.float32))
            np.testing.assert_array_equal(yp, K.pack(ref.astype(np.float32)))
    finally:
        _kernels.pool_configure(*previous)


# ---- instruction-set levels ------------------------------------------------


def test_levels_are_reported_forced_and_restored():
    assert ISAS[0] == "portable"
    assert sorted(ISAS, key=("portable", "avx2", "avx512").index) == ISAS
    assert K.isa() == AUTO  # auto: BNN_ENGINE_ISA's level, else the highest
    features = K.features()
    for flag in ("avx2", "fma", "popcnt", "avx512f", "avx512bw", "avx512vl"):
        assert isinstance(features[flag], bool)
    has_avx512 = all(
        features[f] for f in ("avx512f", "avx512bw", "avx512vl", "avx512vpopcntdq")
    )
    assert ("avx512" in ISAS) == (has_avx512 and features["avx2"] and features["fma"])
    names = {"portable": "generic", "avx2": "avx2", "avx512": "avx512"}
    for level in ISAS:
        K.set_isa(level)
        assert K.isa() == level
        assert K.kernel() == names[level]
    K.set_kernel("generic")
    assert (K.isa(), K.kernel()) == ("portable", "generic")
    if K.features()["popcnt"]:
        K.set_kernel("popcnt")
        assert (K.isa(), K.kernel()) == ("portable", "popcnt")
    K.set_isa("auto")
    assert K.isa() == AUTO


def test_levels_above_the_cpu_or_unknown_are_rejected_by_name():
    allowed = repr(("auto", *ISAS))
    for bad in ("sse9", "AVX2", "", *(["avx512"] if "avx512" not in ISAS else [])):
        with pytest.raises(ValueError) as info:
            K.set_isa(bad)
        message = str(info.value)
        assert f"Received: isa={bad!r}" in message
        assert allowed in message
    with pytest.raises(ValueError, match="Received: isa=None"):
        K.set_isa(None)  # type: ignore[arg-type]
    assert K.isa() == AUTO  # unchanged


def _import_core(env_value):
    """Imports the compiled core alone in a fresh interpreter with
    BNN_ENGINE_ISA=env_value; returns (return code, output)."""
    import os
    import subprocess
    import sys

    from bnncore.engine import _kernels

    path = _kernels.__file__
    code = (
        "import importlib.machinery as m, importlib.util as u, sys\n"
        f"loader = m.ExtensionFileLoader('bnncore.engine._kernels', {path!r})\n"
        "try:\n"
        "    k = u.module_from_spec(u.spec_from_loader(loader.name, loader))\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e); sys.exit(3)\n"
        "first = k.isa(); k.set_isa('portable'); k.set_isa('auto')\n"
        "print(first, k.isa(), k.supported_isas())\n"
    )
    env = {**os.environ, "BNN_ENGINE_ISA": env_value}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout.strip()


@pytest.mark.parametrize("level", ISAS)
def test_environment_variable_sets_the_default_level(level):
    rc, out = _import_core(level)
    assert rc == 0, out
    assert out == f"{level} {level} {ISAS!r}"  # "auto" comes back to it
    rc, out = _import_core("auto")
    assert (rc, out) == (0, f"{ISAS[-1]} {ISAS[-1]} {ISAS!r}")


@pytest.mark.parametrize(
    "value", ["sse9", "Portable", *(["avx512"] if "avx512" not in ISAS else [])]
)
def test_environment_variable_with_a_bad_level_fails_the_import(value):
    rc, out = _import_core(value)
    assert rc == 3, out
    assert f"Received: BNN_ENGINE_ISA={value!r}" in out
    assert f"BNN_ENGINE_ISA to be one of {('auto', *ISAS)!r}" in out


def _fconv_reference(x, kernel, depthwise):
    """float64 'valid' convolution (stride 1) for closeness checks."""
    n, h, w, cin = x.shape
    kh, kw = kernel.shape[:2]
    oh, ow = h - kh + 1, w - kw + 1
    x64, k64 = x.astype(np.float64), kernel.astype(np.float64)
    if depthwise:
        mult = kernel.shape[3]
        out = np.zeros((n, oh, ow, cin, mult))
        for a in range(kh):
            for b in range(kw):
                out += x64[:, a : a + oh, b : b + ow, :, None] * k64[a, b]
        return out.reshape(n, oh, ow, cin * mult)
    out = np.zeros((n, oh, ow, kernel.shape[3]))
    for a in range(kh):
        for b in range(kw):
            out += x64[:, a : a + oh, b : b + ow, :] @ k64[a, b]
    return out


@pytest.mark.parametrize(
    ("depthwise", "cin", "cout"),
    [(False, 3, 16), (False, 16, 21), (False, 8, 520), (True, 24, 24), (True, 5, 40)],
)
def test_float_kernels_give_the_same_bits_at_every_level(depthwise, cin, cout):
    # One operation sequence per output on every level (TensorFlow's own
    # rounding is checked in test_fconv_exact.py): bits equal to the portable
    # level's, values close to a float64 reference.
    rng = np.random.default_rng(cin + cout)
    x = rng.normal(size=(2, 9, 10, cin)).astype(np.float32)
    shape = (3, 3, cin, cout // cin) if depthwise else (3, 3, cin, cout)
    kernel = rng.normal(size=shape).astype(np.float32)
    results = {}
    for level in ISAS:
        K.set_isa(level)
        for threads in (1, 2):
            y = K.fconv(
                x, kernel, (1, 1), (1, 1), (0, 0), (7, 8),
                depthwise=depthwise, threads=threads,
            )  # fmt: skip
            pooled = K.fmaxpool(y, (2, 2), (2, 2), (0, 0), (3, 4), threads=threads)
            results[level, threads] = y, pooled
    y0, pooled0 = results["portable", 1]
    ref = _fconv_reference(x, kernel, depthwise)
    np.testing.assert_allclose(y0, ref, rtol=1e-4, atol=1e-4)
    expected_pool = y0[:, :6, :8].reshape(2, 3, 2, 4, 2, -1).max(axis=(2, 4))
    np.testing.assert_array_equal(pooled0, expected_pool)
    for (level, threads), (y, pooled) in results.items():
        np.testing.assert_array_equal(y, y0, err_msg=f"{level}, {threads} threads")
        np.testing.assert_array_equal(pooled, pooled0)
