"""A subclassed model built with ``model.build(shape)`` can be profiled.

Keras 3 marks such a model built without building its layers; tf-keras (and so
Larq's ``summary``) traced ``call``. The counts are checked against hand
arithmetic and against the same model built by an eager call.
"""

import keras
import numpy as np
import pytest

import bnncore as lq


class _Toy(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = lq.layers.QuantConv2D(
            4, 3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"
        )
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(5)

    def call(self, inputs):
        return self.dense(self.pool(self.conv(inputs)))


def _counts(model):
    return [
        (row.name, row.weight_count(1), row.weight_count(32))
        for row in lq.models.ModelProfile(model).layer_profiles
    ]


def test_build_by_shape_then_summary(capsys):
    model = _Toy(name="toy")
    model.build((None, 8, 8, 3))
    assert not model.conv.built  # Keras 3 leaves the layers unbuilt

    lq.models.summary(model)
    out = capsys.readouterr().out

    assert model.conv.built and model.dense.built
    # 3x3x3x4 binary kernel, 4 float biases; dense 4x5 + 5.
    assert _counts(model) == [
        (model.conv.name, 3 * 3 * 3 * 4, 4),
        (model.pool.name, 0, 0),
        (model.dense.name, 0, 4 * 5 + 5),
    ]
    assert f"{3 * 3 * 3 * 4 + 4 + 4 * 5 + 5}" in out.replace(",", "")


def test_build_by_shape_counts_like_an_eager_call():
    by_shape = _Toy(name="a")
    by_shape.build((None, 8, 8, 3))
    by_call = _Toy(name="b")
    by_call(np.zeros((2, 8, 8, 3), "float32"))
    assert [c[1:] for c in _counts(by_shape)] == [c[1:] for c in _counts(by_call)]


def test_unbuilt_model_still_refused():
    with pytest.raises(ValueError, match="is not built"):
        lq.models.summary(_Toy(name="c"))
