"""The direct path of ``predict``: a native program's call with no Python in
between (the inputs checked once per per-sample shape, the arena kept by the
core).

Every result equals the step-by-step path (``predict_steps``) bit for bit;
inputs the direct path must not take (other dtypes, non-contiguous views,
other shapes, an empty batch, lists) go through the checks as before; calls
from several threads at once (the core's arena taken by one of them) each
get their own results.
"""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
from engine_helpers import BINARY, randomize

from bench.engine import mnist_bnn
from bnncore import engine
from bnncore.engine import kernels as K
from bnncore.engine import program as P
from bnncore.layers import QuantConv2D

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def packed():
    return engine.compile(randomize(mnist_bnn()), threads=2)


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, *SHAPE)).astype(np.float32)


def test_the_direct_path_equals_the_steps_and_returns_fresh_arrays(packed, engine_isa):
    packed._direct = None
    first = packed.predict(_x(1))
    assert packed._direct is not None  # the next calls take the direct path
    for threads in (1, 2):
        packed.threads = threads
        for batch in (1, 3, 1, 5):
            x = _x(batch, seed=batch)
            got = packed.predict(x)
            assert got.dtype == np.float32 and got.shape == (batch, 10)
            np.testing.assert_array_equal(got, packed.predict_steps(x))
            assert not np.shares_memory(got, first)
            first = got
    packed.threads = 2


def test_inputs_the_direct_path_does_not_take_are_checked_as_before(packed):
    packed.predict(_x(1))
    assert packed._direct is not None
    x = _x(4, seed=7)
    ref = packed.predict_steps(x)
    # Converted or copied by the checks, then the same results.
    np.testing.assert_array_equal(packed.predict(x.astype(np.float64)), ref)
    wide = np.concatenate([x, x], axis=-1)[..., ::2]  # a strided view
    assert not wide.flags.c_contiguous
    np.testing.assert_array_equal(packed.predict(wide), ref)
    np.testing.assert_array_equal(packed.predict(x[::-1])[::-1], ref)
    np.testing.assert_array_equal(packed.predict([x]), ref)
    with pytest.raises(ValueError, match=r"x\.shape=\(0, 28, 28, 1\)"):
        packed.predict(np.zeros((0, *SHAPE), np.float32))
    with pytest.raises(ValueError, match=r"Received: x\.shape=\(2, 28, 28\)"):
        packed.predict(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"Received: x\.shape=\(28, 28, 1\)"):
        packed.predict(np.zeros(SHAPE, np.float32))
    with pytest.raises(ValueError, match="dtype <U1"):
        packed.predict(np.full((1, *SHAPE), "a"))


def test_calls_from_several_threads_get_their_own_results(packed):
    inputs = [_x(1 + i % 3, seed=10 + i) for i in range(6)]
    refs = [packed.predict_steps(x) for x in inputs]
    packed.predict(inputs[0])
    errors: list[str] = []
    barrier = threading.Barrier(len(inputs))

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(30):
            got = packed.predict(inputs[i])
            if not np.array_equal(got, refs[i]):
                errors.append(f"thread {i}")
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_model_with_several_outputs_is_not_direct_but_equal():
    inputs = keras.Input((6, 6, 4))
    a = QuantConv2D(8, 3, padding="same", **BINARY)(inputs)
    b = keras.layers.ReLU()(a)
    model = randomize(keras.Model(inputs, [a, b]))
    packed = engine.compile(model, threads=2)
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 4)).astype(np.float32)
    got = packed.predict(x)
    assert packed._direct is None  # two outputs: the general path
    program = packed.program([x])
    assert program is not None and program.direct  # distinct written slots
    for g, r in zip(got, packed.predict_steps(x), strict=True):
        np.testing.assert_array_equal(g, r)


def test_program_call_checks_its_arguments():
    step = P.make_step("softmax", [0], {"rows": 2, "channels": 5}, out=1)
    core = K._kernels.program([40, 40], [-1, 0], [step])
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    out = np.empty((2, 5), np.float32)
    core.call(1, ((0, x[:2], False),), 1)  # slot 1 in the core's arena
    core.call(2, ((0, x, False),), 1)  # a larger batch: a larger arena
    with pytest.raises(ValueError, match="bad batch size"):
        core.call(0, ((0, x, False),), 1)
    with pytest.raises(ValueError, match="at least 120 are needed"):
        core.call(3, ((0, x[:1], False),), 1)
    with pytest.raises(ValueError, match="neither in the arena nor bound"):
        core.call(1, (), 1)
    bound = K._kernels.program([40, 40], [-1, -1], [step])
    bound.call(1, ((0, x[:2], False), (1, out, True)), 1)
    np.testing.assert_array_equal(out, K.softmax(x[:2]))
    with pytest.raises(ValueError, match="read-only"):
        bound.call(1, ((0, x[:2], False), (1, out, False)), 1)


def test_a_batch_norm_before_packing_becomes_one_epilogue_step(engine_isa):
    # Float conv -> max pool -> batch norm -> binary conv (the MNIST BNN's
    # start): the batch norm's ops and the packing run as one epilogue step
    # that writes sign bits only; same bits as the steps, NaN, -0.0 and values
    # at the threshold included.
    inputs = keras.Input((10, 10, 3))
    y = keras.layers.Conv2D(32, 3, use_bias=False)(inputs)
    y = keras.layers.MaxPooling2D(2)(y)
    y = keras.layers.BatchNormalization()(y)
    y = QuantConv2D(16, 3, padding="same", **BINARY)(y)
    model = randomize(keras.Model(inputs, y))
    packed = engine.compile(model, threads=2)
    x = np.random.default_rng(5).normal(size=(3, 10, 10, 3)).astype(np.float32)
    x[0, :4, :4] = np.nan
    x[1, :5] = -0.0
    x[2, 5:] = 0.0
    program = packed.program([x])
    assert program is not None
    assert program.kinds == ("fconv", "fmaxpool", "epilogue", "bconv"), program.kinds
    for batch in (1, 3):
        np.testing.assert_array_equal(
            packed.predict(x[:batch]), packed.predict_steps(x[:batch])
        )


def test_a_batch_norm_read_elsewhere_keeps_its_float_output():
    inputs = keras.Input((6, 6, 8))
    bn = keras.layers.BatchNormalization()(inputs)
    y = QuantConv2D(8, 3, padding="same", **BINARY)(bn)
    model = randomize(keras.Model(inputs, keras.layers.Add()([y, bn])))
    packed = engine.compile(model, threads=1)
    x = np.random.default_rng(6).normal(size=(2, 6, 6, 8)).astype(np.float32)
    program = packed.program([x])
    assert program is not None and "epilogue" not in program.kinds, program.kinds
    np.testing.assert_array_equal(packed.predict(x), packed.predict_steps(x))
