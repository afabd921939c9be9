"""BatchNormalization folded to scale and offset, and rebuilt on load."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import safetensors.numpy
from export_models import randomize
from rsqrt_emulation import (
    eigen_rsqrt,
    emulated_layer_inv,
    other_cpu_rsqrtps,
    unbiased_rsqrtps,
)

import bnncore as lq
from bnncore.export import batchnorm as bnfold


def bn_model(center: bool, scale: bool, epsilon: float) -> keras.Model:
    inputs = keras.Input((3, 7), name="x")
    bn = keras.layers.BatchNormalization(
        center=center, scale=scale, epsilon=epsilon, name="bn"
    )
    return keras.Model(inputs, bn(inputs), name="m")


COMBINATIONS = [
    (center, scale, epsilon)
    for center in (True, False)
    for scale in (True, False)
    for epsilon in (1e-3, 1e-5)
]


@pytest.mark.parametrize(("center", "scale", "epsilon"), COMBINATIONS)
def test_folded_scale_and_offset_give_the_same_outputs(
    center: bool, scale: bool, epsilon: float
) -> None:
    model = randomize(bn_model(center, scale, epsilon), seed=7)
    bn = model.get_layer("bn")
    values = {v.path.rpartition("/")[2]: np.float64(v.numpy()) for v in bn.weights}
    raw = safetensors.numpy.load(lq.export.to_bytes(model))
    assert set(raw) == {"bn/scale", "bn/offset"}
    # NumPy reference of the inference map y = x·s + o.
    s = values.get("gamma", 1.0) / np.sqrt(values["moving_variance"] + epsilon)
    o = values.get("beta", 0.0) - values["moving_mean"] * s
    np.testing.assert_allclose(raw["bn/scale"], s, rtol=1e-6)
    np.testing.assert_allclose(raw["bn/offset"], o, rtol=1e-5, atol=1e-6)

    fresh = bn_model(center, scale, epsilon)
    lq.export.load_weights(fresh, lq.export.to_bytes(model))
    loaded = {
        v.path.rpartition("/")[2]: v.numpy() for v in fresh.get_layer("bn").weights
    }
    if center:
        np.testing.assert_array_equal(loaded["beta"], raw["bn/offset"])
        assert not loaded["moving_mean"].any()
    if scale:
        # The variance makes the rsqrt's input exactly 1; gamma absorbs
        # whatever this CPU's rsqrt(1) is (1.0 here, 1 − 2^-23 elsewhere).
        assert np.all(
            loaded["moving_variance"].astype(np.float32) + np.float32(epsilon) == 1
        )
    x = np.random.default_rng(8).normal(size=(16, 3, 7)).astype("float32") * 3
    expected = model(x)
    np.testing.assert_allclose(
        x * raw["bn/scale"] + raw["bn/offset"], expected, rtol=1e-5, atol=1e-5
    )
    # Bit-exact on any CPU: unfold searched the variables with this layer's
    # own operation on its own 7 channels, on this machine.
    np.testing.assert_array_equal(fresh(x), expected)
    np.testing.assert_array_equal(fresh(x), x * raw["bn/scale"] + raw["bn/offset"])


CHANNELS = [1, 3, 7, 8, 10, 16, 17, 64]  # scalar-only, packets + tails, packets


def channel_model(channels: int, center: bool, scale: bool) -> keras.Model:
    inputs = keras.Input((channels,), name="x")
    bn = keras.layers.BatchNormalization(
        center=center, scale=scale, epsilon=1e-3, name="bn"
    )
    return keras.Model(inputs, bn(inputs), name="m")


def random_statistics(model: keras.Model, rng: np.random.Generator) -> None:
    """Trained-like values; variances from 1e-6 (far below epsilon, where
    many variances give one rsqrt input) to 10."""
    for variable in model.get_layer("bn").weights:
        shape = tuple(variable.shape)
        name = variable.path.rpartition("/")[2]
        if name == "moving_variance":
            value = np.exp(rng.uniform(np.log(1e-6), np.log(10.0), shape))
        elif name == "gamma":
            value = rng.uniform(0.05, 3.0, shape) * rng.choice([-1, 1], shape)
        else:
            value = rng.normal(0.0, 1.0, shape)
        variable.assign(value.astype("float32"))


@pytest.mark.parametrize("scale", [True, False], ids=["scale", "no_scale"])
@pytest.mark.parametrize("channels", CHANNELS, ids=[f"c{c}" for c in CHANNELS])
def test_reloaded_batchnorm_is_bit_exact_on_every_rsqrt_path(
    channels: int, scale: bool
) -> None:
    """export → load → the reloaded layer's output equals the stored folded
    computation x·s + o in NumPy float32 (the layer's order: one product, one
    sum, both IEEE), and the original layer's output, bit for bit."""
    rng = np.random.default_rng(channels * 2 + scale)
    for center in (True, False):
        original = channel_model(channels, center, scale)
        fresh = channel_model(channels, center, scale)
        for _ in range(6):
            random_statistics(original, rng)
            data = lq.export.to_bytes(original)
            raw = safetensors.numpy.load(data)
            lq.export.load_weights(fresh, data)
            x = (rng.normal(size=(32, channels)) * 4).astype("float32")
            oracle = x * raw["bn/scale"] + raw["bn/offset"]
            got = np.asarray(fresh(x))
            assert got.view(np.uint32).tolist() == oracle.view(np.uint32).tolist()
            np.testing.assert_array_equal(got, np.asarray(original(x)))
            inv = bnfold.layer_inv(
                fresh.get_layer("bn").moving_variance.numpy(),
                fresh.get_layer("bn").gamma.numpy() if scale else None,
                1e-3,
            )
            assert (
                inv.view(np.uint32).tolist() == raw["bn/scale"].view(np.uint32).tolist()
            )


def test_layer_inv_is_the_layers_own_inv() -> None:
    """The search's evaluator gives what the layer's call multiplies by: on
    x = 1 with beta = 0 and mean = 0 the layer returns exactly inv."""
    rng = np.random.default_rng(3)
    for channels in CHANNELS:
        model = channel_model(channels, center=True, scale=True)
        random_statistics(model, rng)
        bn = model.get_layer("bn")
        bn.beta.assign(np.zeros(channels, np.float32))
        bn.moving_mean.assign(np.zeros(channels, np.float32))
        got = np.asarray(model(np.ones((1, channels), np.float32)))[0]
        inv = bnfold.layer_inv(bn.moving_variance.numpy(), bn.gamma.numpy(), 1e-3)
        np.testing.assert_array_equal(inv, got)


def test_the_layers_rsqrt_depends_on_the_lane_but_not_the_search() -> None:
    """The former bug (once a strict xfail): unfold evaluated rsqrt on a (17, C)
    array, whose lanes take other Eigen paths than the layer's (C,) vector;
    here 10 channels, whose 8 and 9 take 1/sqrt in the layer, so the reloaded
    layer missed the stored scale. Now each channel gets it exactly."""
    rng = np.random.default_rng(0)
    epsilon = 1e-3
    for channels in (3, 10):
        for _ in range(40):
            values = {
                "gamma": None,
                "beta": rng.normal(0, 0.7, channels).astype(np.float32),
                "moving_mean": rng.normal(0, 0.7, channels).astype(np.float32),
                "moving_variance": rng.uniform(0.3, 3.0, channels).astype(np.float32),
            }
            s, o = bnfold.fold(values, epsilon)
            variance = bnfold.unfold(s, o, epsilon, has_gamma=False, has_beta=True)
            # What a BatchNormalization of these channels computes (same shape).
            inv = keras.ops.rsqrt(variance["moving_variance"] + np.float32(epsilon))
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(inv), s)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(
        np.array_equal(
            np.asarray(a, np.float32).view(np.uint32),
            np.asarray(b, np.float32).view(np.uint32),
        )
    )


def emulated_statistics(
    channels: int, scale: bool, center: bool, rng: np.random.Generator
) -> dict[str, np.ndarray | None]:
    return {
        "gamma": (
            rng.uniform(0.05, 3.0, channels) * rng.choice([-1, 1], channels)
        ).astype(np.float32)
        if scale
        else None,
        "beta": rng.normal(0, 1, channels).astype(np.float32) if center else None,
        "moving_mean": rng.normal(0, 1, channels).astype(np.float32),
        "moving_variance": np.exp(
            rng.uniform(np.log(1e-6), np.log(10.0), channels)
        ).astype(np.float32),
    }


def reloaded(
    variables: dict[str, np.ndarray], epsilon: float, inv_of: bnfold.LayerInv
) -> tuple[np.ndarray, np.ndarray]:
    """(inv, offset) a layer with the unfolded variables computes under inv_of."""
    return bnfold.fold(
        {
            "gamma": variables.get("gamma"),
            "beta": variables.get("beta"),
            "moving_mean": variables["moving_mean"],
            "moving_variance": variables["moving_variance"],
        },
        epsilon,
        inv_of=inv_of,
    )


def test_the_emulation_is_tensorflows_rsqrt_where_cpus_agree() -> None:
    """The emulated leftover lanes (1/sqrt, IEEE) are TensorFlow's own on any
    CPU; the emulated packets are within a few ulps of the true value."""
    rng = np.random.default_rng(5)
    for channels in CHANNELS:
        x = rng.uniform(1e-3, 10.0, channels).astype(np.float32)
        emulated = eigen_rsqrt(x, other_cpu_rsqrtps)
        tail = channels // 8 * 8
        real = np.asarray(keras.ops.convert_to_numpy(keras.ops.rsqrt(x)))
        np.testing.assert_array_equal(emulated[tail:], real[tail:])
        true = 1 / np.sqrt(x.astype(np.float64))
        assert np.all(
            np.abs(emulated - true) <= 5 * np.spacing(true.astype(np.float32))
        )
    assert other_cpu_rsqrtps(np.ones(1, np.float32)).view(np.uint32)[0] == 0x3F7FF000
    # There, the old rule "rsqrt(1) == 1, so gamma = s" is wrong on packets.
    assert eigen_rsqrt(np.ones(8, np.float32), other_cpu_rsqrtps)[0] != 1


@pytest.mark.parametrize("scale", [True, False], ids=["scale", "no_scale"])
def test_the_search_is_exact_on_a_cpu_whose_rsqrt_of_1_is_not_1(scale: bool) -> None:
    """Exported and reloaded on the emulated CPU (rsqrtps(1.0) = 0x3F7FF000):
    the reloaded layer's inv and offset are the stored ones, bit for bit."""
    inv_of = emulated_layer_inv(other_cpu_rsqrtps)
    rng = np.random.default_rng(11 + scale)
    for channels in CHANNELS:
        for seed in range(20):
            center = seed % 2 == 0
            values = emulated_statistics(channels, scale, center, rng)
            s, o = bnfold.fold(values, 1e-3, inv_of=inv_of)
            back = bnfold.unfold(s, o, 1e-3, scale, center, inv_of=inv_of)
            got_s, got_o = reloaded(back, 1e-3, inv_of)
            assert same_bits(got_s, s), (channels, seed)
            assert same_bits(got_o, o), (channels, seed)


def test_exported_here_and_reloaded_on_the_other_cpu() -> None:
    """Exported with this machine's TensorFlow, reloaded on the emulated CPU:
    with gamma every scale is reached exactly; without, within an ulp or two
    (the next test shows when and why not exactly); offsets exact."""
    inv_of = emulated_layer_inv(other_cpu_rsqrtps)
    rng = np.random.default_rng(21)
    for scale in (True, False):
        for channels in CHANNELS:
            for seed in range(8):
                center = seed % 2 == 0
                values = emulated_statistics(channels, scale, center, rng)
                s, o = bnfold.fold(values, 1e-3)  # this machine's rsqrt
                back = bnfold.unfold(s, o, 1e-3, scale, center, inv_of=inv_of)
                got_s, got_o = reloaded(back, 1e-3, inv_of)
                if scale:
                    assert same_bits(got_s, s), (channels, seed)
                else:
                    assert np.all(np.abs(got_s - s) <= 2 * np.spacing(s))
                if scale or center:
                    assert same_bits(got_o, o), (channels, seed)


def test_without_gamma_the_nearest_scale_only_where_none_is_exact() -> None:
    """Exported on one emulated CPU (rsqrtps(1.0) = 1.0), reloaded on the other
    (0x3F7FF000), deterministically: some stored scales are values the second
    CPU's rsqrt gives for no input. unfold keeps the nearest there (an ulp or
    two away, where the rsqrt jumps), and no rsqrt input within 64 ulps of its
    choice gives s exactly; everywhere else it is exact."""
    there, here = (
        emulated_layer_inv(unbiased_rsqrtps),
        emulated_layer_inv(other_cpu_rsqrtps),
    )
    rng = np.random.default_rng(21)
    epsilon = np.float32(1e-3)
    misses = channels_seen = 0
    for channels in CHANNELS:
        for seed in range(40):
            values = emulated_statistics(channels, False, seed % 2 == 0, rng)
            s, o = bnfold.fold(values, 1e-3, inv_of=there)
            back = bnfold.unfold(s, o, 1e-3, False, seed % 2 == 0, inv_of=here)
            got_s, _ = reloaded(back, 1e-3, here)
            channels_seen += channels
            variance = back["moving_variance"]
            for c in np.flatnonzero(~(got_s.view(np.uint32) == s.view(np.uint32))):
                misses += 1
                assert abs(got_s[c] - s[c]) <= 2 * np.spacing(s[c])
                base = variance[c] + epsilon
                for k in range(-64, 65):
                    trial = variance.copy()
                    total = np.float32(base + k * np.spacing(base))
                    trial[c] = max(np.float32(total - epsilon), np.float32(0))
                    assert here(trial, None, 1e-3)[c] != s[c], (channels, seed, c)
    assert 0 < misses < 0.01 * channels_seen, (misses, channels_seen)


def test_a_batchnorm_with_extra_variables_is_stored_unfolded() -> None:
    inputs = keras.Input((4,), name="x")
    bn = keras.layers.BatchNormalization(renorm=True, name="bn")
    model = randomize(keras.Model(inputs, bn(inputs), name="m"), seed=1)
    raw = safetensors.numpy.load(lq.export.to_bytes(model))
    names = {v.path.rpartition("/")[2] for v in bn.weights}
    assert len(names) > 4  # renorm statistics, which the folded map cannot hold
    assert {key.rpartition("/")[2] for key in raw} == names
