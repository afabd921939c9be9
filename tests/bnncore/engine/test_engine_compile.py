"""Any model compiles: graph shapes, fallbacks, API errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from engine_helpers import (
    BINARY,
    assert_matches,
    binary_steps,
    keras_forward,
    randomize,
)

from bnncore import engine
from bnncore.layers import QuantConv2D, QuantDense


def _x(shape, batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32)


def test_float_model_compiles_and_runs_in_keras():
    inputs = keras.Input((6, 6, 3))
    y = keras.layers.Conv2D(4, 3)(inputs)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = randomize(keras.Model(inputs, keras.layers.Dense(2)(y)))
    packed = engine.compile(model)
    assert binary_steps(packed) == [] and packed.binary_layers == []
    assert_matches(packed.predict(_x((6, 6, 3))), keras_forward(model, _x((6, 6, 3))))


def test_sequential_model_with_nested_sequential():
    inner = keras.Sequential(
        [QuantDense(16, **BINARY), keras.layers.BatchNormalization()]
    )
    model = keras.Sequential(
        [keras.Input((10,)), QuantDense(16, **BINARY), inner, QuantDense(3, **BINARY)]
    )
    randomize(model)
    randomize(inner, seed=1)
    packed = engine.compile(model)
    assert len(binary_steps(packed)) == 3
    x = _x((10,), batch=4)
    assert_matches(packed.predict(x), keras_forward(model, x))


def test_nested_functional_model_is_inlined():
    sub_in = keras.Input((5, 5, 8))
    sub = keras.Model(sub_in, QuantConv2D(8, 3, padding="same", **BINARY)(sub_in))
    inputs = keras.Input((5, 5, 8))
    y = keras.layers.BatchNormalization()(sub(inputs))
    model = randomize(keras.Model(inputs, QuantConv2D(4, 1, **BINARY)(y)))
    randomize(sub, seed=2)
    packed = engine.compile(model)
    assert len(binary_steps(packed)) == 2
    x = _x((5, 5, 8))
    assert_matches(packed.predict(x), keras_forward(model, x))


def test_several_inputs_outputs_and_a_shared_layer():
    a, b = keras.Input((12,)), keras.Input((12,))
    shared = QuantDense(6, **BINARY)
    ya, yb = shared(a), shared(b)
    merged = keras.layers.Concatenate()([ya, yb])
    model = randomize(keras.Model([a, b], [merged, keras.layers.Dense(2)(yb)]))
    packed = engine.compile(model)
    assert len(binary_steps(packed)) == 2
    x = [_x((12,), seed=1), _x((12,), seed=2)]
    got = packed.predict(x)
    assert isinstance(got, list) and len(got) == 2
    assert_matches(got, keras_forward(model, x))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = QuantConv2D(4, 3, **BINARY)
        self.pool = keras.layers.GlobalAveragePooling2D()

    def call(self, x):
        return self.pool(self.conv(x))


def test_subclassed_model_runs_whole_in_keras():
    model = _Subclassed()
    x = _x((6, 6, 3))
    model(x)
    packed = engine.compile(model)
    assert [s.describe() for s in packed.steps] == [f"keras [whole model {model.name}]"]
    assert_matches(packed.predict(x), keras_forward(model, x))


def test_native_and_keras_float_modes_agree_and_batch_size_may_vary():
    inputs = keras.Input((6, 6, 4))
    y = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    y = QuantConv2D(8, 3, padding="same", **BINARY)(y)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.GlobalMaxPooling2D()(y)
    model = randomize(keras.Model(inputs, keras.layers.Dense(3)(y)))
    native = engine.compile(model, float_mode="native", threads=1)
    via_keras = engine.compile(model, float_mode="keras", threads=2)
    for batch in (1, 5):
        x = _x((6, 6, 4), batch=batch, seed=batch)
        ref = keras_forward(model, x)
        assert_matches(native.predict(x), ref)
        assert_matches(via_keras(x), ref)


def test_describe_and_step_times_cover_every_step():
    inputs = keras.Input((16,))
    model = randomize(keras.Model(inputs, QuantDense(4, **BINARY)(inputs)))
    packed = engine.compile(model)
    lines = packed.describe().splitlines()
    assert lines == ["pack (groups=1)", f"binary dense {model.layers[1].name} "
                     f"[{model.layers[1].name}] -> float"]  # fmt: skip
    times = packed.step_times(_x((16,)), repeats=2)
    assert [d for d, _ in times] == lines and all(t >= 0 for _, t in times)


def test_compile_rejects_bad_arguments():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="Received: model of type str"):
        engine.compile("model")
    with pytest.raises(ValueError, match="threads=0"):
        engine.compile(model, threads=0)
    with pytest.raises(ValueError, match="float_mode='fast'"):
        engine.compile(model, float_mode="fast")
    with pytest.raises(ValueError, match="not built"):
        engine.compile(keras.Sequential([keras.layers.Dense(2)]))


def test_predict_rejects_bad_inputs():
    a, b = keras.Input((4,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    packed = engine.compile(model)
    with pytest.raises(ValueError, match="Expected 2 input array"):
        packed.predict(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"x\[1\] of shape \('batch', 3\).*\(2, 4\)"):
        packed.predict([np.zeros((2, 4)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="dtype <U1"):
        packed.predict([np.zeros((2, 4)), np.array([["a"] * 3] * 2)])
    with pytest.raises(ValueError, match="at least one sample"):
        packed.predict([np.zeros((0, 4)), np.zeros((0, 3))])
    with pytest.raises(ValueError, match="repeats=0"):
        packed.step_times([np.zeros((2, 4)), np.zeros((2, 3))], repeats=0)


def test_concurrent_predictions_from_several_threads_are_correct():
    import threading

    inputs = keras.Input((12, 12, 64))
    y = QuantConv2D(64, 3, padding="same", pad_values=1.0, **BINARY)(inputs)
    y = keras.layers.BatchNormalization()(y)
    model = randomize(keras.Model(inputs, QuantConv2D(32, 3, **BINARY)(y)))
    packed = engine.compile(model, threads=2)
    xs = [_x((12, 12, 64), batch=3, seed=s) for s in range(4)]
    expected = [packed.predict(x) for x in xs]
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(4)}

    def work(i):
        for _ in range(5):
            results[i].append(packed.predict(xs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i in range(4):
        assert len(results[i]) == 5
        for got in results[i]:
            np.testing.assert_array_equal(got, expected[i])


def test_results_are_not_overwritten_by_later_calls_reusing_buffers():
    inputs = keras.Input((10, 10, 64))
    y = QuantConv2D(64, 3, padding="same", **BINARY)(inputs)
    model = randomize(keras.Model(inputs, [y, QuantConv2D(8, 3, **BINARY)(y)]))
    packed = engine.compile(model)
    x1, x2 = _x((10, 10, 64), batch=4, seed=1), _x((10, 10, 64), batch=4, seed=2)
    first = packed.predict(x1)
    kept = [a.copy() for a in first]
    for _ in range(3):
        second = packed.predict(x2)
    for a, b in zip(first, kept, strict=True):
        np.testing.assert_array_equal(a, b)
    assert_matches(second, keras_forward(model, x2))
    assert_matches(packed.predict(x1[:1]), keras_forward(model, x1[:1]))
