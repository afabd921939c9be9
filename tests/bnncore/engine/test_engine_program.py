"""Whole-plan programs: a plan's native steps run by the core in one call.

Every result equals the step-by-step path (``PackedModel.predict_steps``) bit
for bit, at every instruction-set level, with 1 and 2 threads, at batch 1 and
3; a Keras step in the middle splits the plan into segments. The step
description is defined once in the C headers and read from Python.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from engine_helpers import BINARY, randomize

from bench.engine import mnist_bnn
from bnncore import engine, zoo
from bnncore.engine import kernels as K
from bnncore.engine import program as P
from bnncore.engine.runtime import THREADS_VARIABLE
from bnncore.layers import QuantConv2D

CSRC = Path(K.__file__).parent / "csrc"
MODELS = [
    ("QuickNet", 32),
    ("BinaryAlexNet", 64),
    ("BiRealNet", 32),
    ("BinaryResNetE18", 32),
    ("BinaryDenseNet28", 32),
    ("RealToBinaryNet", 32),
    ("mnist", 28),
]


def _model(name: str) -> keras.Model:
    if name == "mnist":
        return randomize(mnist_bnn())
    size = dict(MODELS)[name]
    return randomize(zoo.get(name)(input_shape=(size, size, 3), num_classes=10))


def _same_as_steps(packed, shape, threads=(1, 2), batches=(1, 3)) -> None:
    for threads_ in threads:
        packed.threads = threads_
        for batch in batches:
            rng = np.random.default_rng(batch)
            x = rng.normal(size=(batch, *shape)).astype(np.float32)
            got, ref = packed.predict(x), packed.predict_steps(x)
            got = got if isinstance(got, list) else [got]
            ref = ref if isinstance(ref, list) else [ref]
            for g, r in zip(got, ref, strict=True):
                assert g.shape == r.shape
                assert np.array_equal(g, r), (threads_, batch)


@pytest.mark.parametrize("name", [m for m, _ in MODELS])
def test_whole_plan_equals_the_step_by_step_path(name, engine_isa):
    model = _model(name)
    packed = engine.compile(model, threads=2)
    shape = tuple(model.inputs[0].shape[1:])
    _same_as_steps(packed, shape)
    program = packed.program([np.zeros((1, *shape), np.float32)])
    assert program is not None
    keras_steps = [s for s in packed.steps if s.describe().startswith("keras")]
    if name in ("QuickNet", "BinaryAlexNet", "mnist"):  # all steps native
        assert not keras_steps and program.native, packed.describe()
        assert len(program.segments) == 1  # one C call per predict
    # Steps run by Keras (average pooling) run between segments of the core.
    python = [s for s in program.segments if s.step is not None]
    assert len(python) == len(keras_steps)
    assert program.native == (not keras_steps)


def test_a_keras_step_in_the_middle_runs_between_segments(engine_isa):
    inputs = keras.Input((10, 10, 8))
    y = QuantConv2D(16, 3, padding="same", **BINARY)(inputs)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.AveragePooling2D(2)(y)  # not native: a Keras step
    y = QuantConv2D(32, 3, **BINARY)(y)
    y = keras.layers.Flatten()(y)
    out = keras.layers.Dense(5, activation="softmax")(y)
    model = randomize(keras.Model(inputs, out))
    packed = engine.compile(model, threads=2)
    assert any(s.describe().startswith("keras") for s in packed.steps)
    _same_as_steps(packed, (10, 10, 8))
    program = packed.program([np.zeros((1, 10, 10, 8), np.float32)])
    assert program is not None and not program.native
    kinds = ["python" if s.step is not None else "core" for s in program.segments]
    assert kinds == ["core", "python", "core"]


def test_outputs_are_fresh_arrays_and_several_outputs_work():
    inputs = keras.Input((6, 6, 4))
    a = QuantConv2D(8, 3, padding="same", **BINARY)(inputs)
    b = keras.layers.ReLU()(a)
    flat = keras.layers.Flatten()(b)
    model = randomize(keras.Model(inputs, [a, flat, b]))
    packed = engine.compile(model, threads=2)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype(np.float32)
    first = packed.predict(x)
    again = packed.predict(x)
    for got, ref in zip(first, packed.predict_steps(x), strict=True):
        assert np.array_equal(got, ref)
    for one, two in zip(first, again, strict=True):
        assert not np.shares_memory(one, two)


def test_the_step_description_is_the_cores():
    found = K.description()
    assert tuple(found["step_fields"]) == tuple(
        f.name for f in dataclasses.fields(P.CStep)
    )
    assert tuple(found["geometry_fields"]) == tuple(
        f.name for f in dataclasses.fields(K.ConvGeometry)
    )
    assert tuple(found["epilogue_ops"]) == K.EPILOGUE_OPS
    assert [K.EPILOGUE_OPS.index(n) for n in ("scale", "residual")] == [
        K.OP_SCALE,
        K.OP_RESIDUAL,
    ]
    # The header text is that one source: the X-macro lists.
    bnn = (CSRC / "bnn.h").read_text()
    program = (CSRC / "program.h").read_text()
    ops = re.findall(r'X\((\w+), "(\w+)"\)', bnn)
    assert tuple(text for _, text in ops) == K.EPILOGUE_OPS
    assert all(name.lower() == text for name, text in ops)
    geom = re.search(r"#define BNN_GEOM_FIELDS\(X\)(.*?)\n\n", bnn, re.S)
    assert geom is not None
    names = re.findall(r"X\((\w+), \w+\)", geom.group(1))
    assert tuple(names) == tuple(found["geometry_fields"])
    kinds = re.findall(r'X\((\w+), "(\w+)", "([\w *]*)"\)', program)
    assert [(k.lower(), d) for k, _, d in kinds] == [
        (name, dims) for name, dims in found["step_kinds"]
    ]
    for name, (code, dims) in P.STEP_KINDS.items():
        assert found["step_kinds"][code][0] == name
        assert " ".join(dims) == found["step_kinds"][code][1]


def test_make_step_requires_the_kinds_dims_by_name():
    step = P.make_step("softmax", [0], {"rows": 2, "channels": 5}, out=1)
    assert step.dims == (2, 5) and step.kind == P.STEP_KINDS["softmax"][0]
    with pytest.raises(ValueError, match="dims"):
        P.make_step("softmax", [0], {"rows": 2}, out=1)
    concat = P.make_step("concat", [0, 1], {"rows": 3, "widths": [4, 5]}, out=2)
    assert concat.dims == (3, 4, 5)


def test_the_core_checks_a_program_against_its_slots():
    step = P.make_step("softmax", [0], {"rows": 2, "channels": 5}, out=1)
    with pytest.raises(ValueError, match="slot too small"):
        K._kernels.program([40, 4], [0, 64], [step])
    with pytest.raises(ValueError, match="slot out of range"):
        K._kernels.program([40], [0], [step])
    ok = K._kernels.program([40, 40], [0, 64], [step])
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    out = np.empty((2, 5), np.float32)
    ok.run(None, 1, ((0, x, False), (1, out, True)), 0, 1, 1)
    np.testing.assert_array_equal(out, K.softmax(x))
    with pytest.raises(ValueError, match="read-only"):
        ok.run(None, 1, ((0, x, False), (1, out, False)), 0, 1, 1)
    with pytest.raises(ValueError, match="arena"):
        ok.run(None, 1, ((0, x, False),), 0, 1, 1)


def test_threads_default_from_the_environment(monkeypatch):
    model = randomize(mnist_bnn())
    monkeypatch.setenv(THREADS_VARIABLE, "3")
    assert engine.compile(model).threads == 3
    assert engine.compile(model, threads=1).threads == 1
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv(THREADS_VARIABLE, bad)
        with pytest.raises(ValueError, match=rf"{THREADS_VARIABLE}='{re.escape(bad)}'"):
            engine.compile(model)
