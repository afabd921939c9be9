"""Each kind of quantized kernel: its packed codes, decoded independently, are
the quantizer's output (NumPy reference), and reloading predicts the same."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import keras
import numpy as np
import pytest
import safetensors.numpy
from export_models import randomize
from keras import ops

import bnncore as lq
from bnncore.export import kernels


def one_layer(make: Callable[[], keras.layers.Layer], shape: tuple) -> keras.Model:
    inputs = keras.Input(shape, name="x")
    return keras.Model(inputs, make()(inputs), name="one")


def raw_file(model: keras.Model) -> tuple[dict, dict]:
    data = lq.export.to_bytes(model)
    length = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + length])["__metadata__"]
    return safetensors.numpy.load(data), json.loads(metadata["encodings"])


def codes_of(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Independent decoding: LSB-first k-bit fields of a little-endian stream."""
    stream = np.unpackbits(packed, bitorder="little")
    assert not stream[count * bits :].any()
    fields = stream[: count * bits].reshape(count, bits).astype(np.int64)
    return fields @ (1 << np.arange(bits))


def latent(layer: keras.layers.Layer, attribute: str = "kernel") -> np.ndarray:
    return np.float64(ops.convert_to_numpy(getattr(layer, attribute)))


def assert_round_trip(make: Callable, shape: tuple, exact: bool = True) -> None:
    model = randomize(one_layer(make, shape), seed=3)
    fresh = one_layer(make, shape)
    lq.export.load_weights(fresh, lq.export.to_bytes(model))
    x = np.random.default_rng(4).normal(size=(4, *shape)).astype("float32")
    expected = model(x)
    got = fresh(x)
    for attribute, view in model.get_layer("q").quantized_weights.items():
        again = fresh.get_layer("q").quantized_weights[attribute]
        if exact:
            np.testing.assert_array_equal(again, view)
        else:
            np.testing.assert_allclose(again, view, rtol=1e-5)
    if exact:  # one layer, equal quantized weights: the same TF op in this process
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def ternary(x: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(x >= threshold, 1.0, np.where(x <= -threshold, -1.0, 0.0))


def dorefa_weights(x: np.ndarray, k: int) -> np.ndarray:
    n = 2**k - 1
    t = np.tanh(x)
    return 2 * np.round((t / (2 * np.abs(t).max()) + 0.5) * n) / n - 1


@pytest.mark.parametrize("twn", [False, True])
def test_ste_tern_is_two_bit_codes_over_minus_one_zero_one(twn: bool) -> None:
    def make():
        return lq.layers.QuantDense(
            12,
            kernel_quantizer=lq.quantizers.SteTern(ternary_weight_networks=twn),
            name="q",
        )

    model = randomize(one_layer(make, (9,)), seed=3)
    w = latent(model.get_layer("q"))
    raw, encodings = raw_file(model)
    entry = encodings["q/kernel"]
    assert entry == {
        "encoding": "levels",
        "bits": 2,
        "levels": [-1.0, 0.0, 1.0],
        "shape": [9, 12],
        "bit_order": "little",
    }
    assert raw["q/kernel"].shape == (math.ceil(9 * 12 * 2 / 8),)
    threshold = 0.7 * np.abs(w).mean() if twn else 0.05
    values = np.array(entry["levels"])[codes_of(raw["q/kernel"], 2, w.size)]
    np.testing.assert_array_equal(values.reshape(w.shape), ternary(w, threshold))
    assert encodings["q/bias"] == {"encoding": "float32"}
    assert_round_trip(make, (9,))


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_dorefa_weights_are_k_bit_codes_and_reload_through_atanh(k: int) -> None:
    def make():
        return lq.layers.QuantConv1D(
            6,
            3,
            kernel_quantizer=lq.quantizers.DoReFa(k_bit=k, mode="weights"),
            use_bias=False,
            name="q",
        )

    model = randomize(one_layer(make, (10, 5)), seed=3)
    w = latent(model.get_layer("q"))
    raw, encodings = raw_file(model)
    entry = encodings["q/kernel"]
    n = 2**k - 1
    np.testing.assert_allclose(entry["levels"], 2 * np.arange(n + 1) / n - 1, atol=1e-7)
    np.testing.assert_allclose(
        entry["latent_levels"], np.arctanh(np.array(entry["levels"]) / 2), rtol=1e-6
    )
    assert raw["q/kernel"].shape == (math.ceil(w.size * k / 8),)
    values = np.array(entry["levels"])[codes_of(raw["q/kernel"], k, w.size)]
    np.testing.assert_allclose(values.reshape(w.shape), dorefa_weights(w, k), atol=1e-6)
    # From 4 bits on, the levels themselves would not re-quantize to themselves.
    assert_round_trip(make, (10, 5))


def test_dorefa_activation_mode_kernel_at_three_bits() -> None:
    def make():
        return lq.layers.QuantDense(
            5, kernel_quantizer=lq.quantizers.DoReFa(k_bit=3), name="q"
        )

    model = randomize(one_layer(make, (7,)), seed=3)
    w = latent(model.get_layer("q"))
    raw, encodings = raw_file(model)
    entry = encodings["q/kernel"]
    np.testing.assert_allclose(entry["levels"], np.arange(8) / 7, atol=1e-7)
    assert "latent_levels" not in entry
    values = np.array(entry["levels"])[codes_of(raw["q/kernel"], 3, w.size)]
    reference = np.round(np.clip(w, 0, 1) * 7) / 7
    np.testing.assert_allclose(values.reshape(w.shape), reference, atol=1e-6)
    assert_round_trip(make, (7,))


def test_heaviside_kernel_is_one_bit_codes_over_zero_one() -> None:
    def make():
        return lq.layers.QuantDense(4, kernel_quantizer="ste_heaviside", name="q")

    model = randomize(one_layer(make, (6,)), seed=3)
    w = latent(model.get_layer("q"))
    raw, encodings = raw_file(model)
    assert encodings["q/kernel"]["levels"] == [0.0, 1.0]
    assert encodings["q/kernel"]["bits"] == 1
    codes = codes_of(raw["q/kernel"], 1, w.size)
    np.testing.assert_array_equal(codes.reshape(w.shape), (w > 0).astype(int))
    assert_round_trip(make, (6,))


def test_magnitude_aware_sign_is_sign_bits_and_a_scale_per_output_channel() -> None:
    def make():
        return lq.layers.QuantConv2D(
            4, 2, kernel_quantizer="magnitude_aware_sign", use_bias=False, name="q"
        )

    model = randomize(one_layer(make, (5, 5, 3)), seed=3)
    w = latent(model.get_layer("q"))
    raw, encodings = raw_file(model)
    assert encodings["q/kernel"] == {
        "encoding": "sign_bits",
        "shape": [2, 2, 3, 4],
        "bit_order": "little",
        "scale": "q/kernel:scale",
    }
    assert encodings["q/kernel:scale"] == {
        "encoding": "channel_scale",
        "of": "q/kernel",
    }
    bits = np.unpackbits(raw["q/kernel"], bitorder="little")[: w.size]
    np.testing.assert_array_equal(bits.reshape(w.shape), (w < 0).astype(int))
    np.testing.assert_allclose(
        raw["q/kernel:scale"], np.abs(w).mean(axis=(0, 1, 2)), rtol=1e-6
    )
    # The scale is recomputed from the loaded ±scale latent: equal up to the
    # float32 rounding of that mean.
    assert_round_trip(make, (5, 5, 3), exact=False)


def test_depthwise_and_separable_kernels_are_packed() -> None:
    def make_depthwise():
        return lq.layers.QuantDepthwiseConv2D(
            3, depth_multiplier=2, depthwise_quantizer="ste_sign", name="q"
        )

    def make_separable():
        return lq.layers.QuantSeparableConv1D(
            5,
            3,
            depthwise_quantizer="ste_sign",
            pointwise_quantizer="ste_tern",
            name="q",
        )

    _, encodings = raw_file(one_layer(make_depthwise, (6, 6, 4)))
    assert encodings["q/kernel"]["encoding"] == "sign_bits"
    assert encodings["q/bias"]["encoding"] == "float32"
    _, encodings = raw_file(one_layer(make_separable, (8, 4)))
    assert encodings["q/depthwise_kernel"]["encoding"] == "sign_bits"
    assert encodings["q/pointwise_kernel"]["bits"] == 2
    assert_round_trip(make_depthwise, (6, 6, 4))
    assert_round_trip(make_separable, (8, 4))


@lq.quantizers.set_precision(1)
def two_values(x):
    """A custom 1-bit quantizer whose levels are not ±1."""
    return ops.where(ops.less(x, 0.0), -0.25, 0.75)


@lq.quantizers.set_precision(2)
def unstable(x):
    """Levels ±0.5 and 0, which round to 0 when quantized again."""
    return ops.round(ops.clip(x, -1.0, 1.0)) * 0.5


def no_precision(x):
    return ops.sign(x)


def test_custom_quantizers_use_observed_levels_or_fall_back_to_float32() -> None:
    def make(quantizer):
        return lambda: lq.layers.QuantDense(
            4, kernel_quantizer=quantizer, use_bias=False, name="q"
        )

    model = randomize(one_layer(make(two_values), (6,)), seed=3)
    raw, encodings = raw_file(model)
    assert encodings["q/kernel"]["levels"] == [-0.25, 0.75]
    w = latent(model.get_layer("q"))
    codes = codes_of(raw["q/kernel"], 1, w.size)
    np.testing.assert_array_equal(codes.reshape(w.shape), (w >= 0).astype(int))
    assert_round_trip(make(two_values), (6,))
    # Kernels that would not survive the trip are stored as their float32 latent.
    for quantizer in (unstable, no_precision):
        model = randomize(one_layer(make(quantizer), (6,)), seed=3)
        raw, encodings = raw_file(model)
        assert encodings["q/kernel"] == {"encoding": "float32"}
        np.testing.assert_array_equal(raw["q/kernel"], latent(model.get_layer("q")))
        assert_round_trip(make(quantizer), (6,))


def test_nested_models_are_named_by_layer_path() -> None:
    def build():
        inner = keras.Sequential(
            [
                keras.Input((5,)),
                lq.layers.QuantDense(3, kernel_quantizer="ste_sign", name="d"),
            ],
            name="inner",
        )
        inputs = keras.Input((5,), name="x")
        return keras.Model(inputs, inner(inputs), name="outer")

    model = randomize(build(), seed=3)
    assert list(lq.export.weight_names(model)) == ["inner/d/kernel", "inner/d/bias"]
    # model_from_json gives these variables other Keras paths; the names hold.
    rebuilt = keras.models.model_from_json(model.to_json())
    assert [v.path for v in rebuilt.weights] != [v.path for v in model.weights]
    lq.export.load_weights(rebuilt, lq.export.to_bytes(model))
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    np.testing.assert_array_equal(rebuilt(x), model(x))


def test_encode_kernel_falls_back_to_float32_for_levels_float32_cannot_hold() -> None:
    # A float64 kernel whose values (1/3, 2/3) have no exact float32 level gets
    # no level codes: it is stored as its float32 latent (None), not a crash.
    quantizer = lq.quantizers.DoReFa(k_bit=2, mode="activations")
    values = np.array([[0.0, 1 / 3], [2 / 3, 1.0]])
    assert kernels.encode_kernel("k", quantizer, values, values) is None
