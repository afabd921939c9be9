"""Custom quantizers, activation precisions, nested and shared layers, errors.

Every expected number is worked out by hand in the test.
"""

from __future__ import annotations

import dataclasses

import keras
import pytest

import bnncore
from bnncore import layers as bl
from bnncore import models, quantizers


def _sign_without_precision(x):
    return bnncore.math.sign(x)


@quantizers.set_precision(3)
def _three_bit(x):
    return bnncore.math.sign(x)


class _Undeclared(quantizers.Quantizer):
    """A quantizer layer that declares no precision."""

    def call(self, inputs):
        return bnncore.math.sign(inputs)


@pytest.mark.parametrize(
    ("quantizer", "bits", "name"),
    [
        (_sign_without_precision, 32, "_sign_without_precision"),
        (_Undeclared(), 32, "_Undeclared"),
        (_three_bit, 3, "_three_bit"),
    ],
)
def test_custom_quantizers_count_their_declared_precision_or_32(quantizer, bits, name):
    inputs = keras.Input((10,))
    layer = bl.QuantDense(
        4, input_quantizer=quantizer, kernel_quantizer=quantizer, use_bias=False
    )
    report = models.profile(keras.Model(inputs, layer(inputs)))
    (row,) = report.layers
    (kernel,) = row.weights
    assert (kernel.bits, kernel.quantizer) == (bits, name)
    assert row.input_precision == bits
    assert dict(row.macs_by_bits) == {bits: 10 * 4}
    assert row.bops == 10 * 4 * bits * bits
    assert row.memory_bits == 10 * 4 * bits
    assert "Total params" in bnncore.analysis.render(report)


def test_output_precision_of_quantizer_activations_and_layers():
    inputs = keras.Input((16,))
    x = keras.layers.Dense(20)(inputs)
    x = keras.layers.Activation("ste_sign")(x)
    x = bl.QuantDense(12, activation="ste_sign")(x)
    x = quantizers.DoReFa(k_bit=3)(x)
    x = keras.layers.Dense(4)(x)
    report = models.profile(keras.Model(inputs, x))
    rows = report.layers
    assert [r.output_precision for r in rows] == [32, 1, 1, 3, 32]
    # Bytes at batch 1, rounded up per tensor.
    assert [r.activation_bytes for r in rows] == [20 * 4, 3, 2, 5, 4 * 4]
    # 20 one-bit values = 3 bytes; 12 = 2 bytes; 12 three-bit = 4.5 → 5 bytes.
    # Working set = bytes read (at the producer's precision) + bytes written.
    assert [r.peak_activation_bytes for r in rows] == [
        16 * 4 + 20 * 4,
        20 * 4 + 3,
        3 + 2,
        2 + 5,
        5 + 4 * 4,
    ]
    assert report.totals.peak_activation_bytes == 144


def test_nested_model_is_one_row_with_its_layers_and_counts_per_call():
    tower = keras.Sequential(
        [
            keras.Input((6,)),
            bl.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
            keras.layers.BatchNormalization(),
        ],
        name="tower",
    )
    left, right = keras.Input((6,)), keras.Input((6,))
    joined = keras.layers.Concatenate()([tower(left), tower(right)])
    outputs = keras.layers.Dense(2)(joined)
    model = keras.Model([left, right], outputs)
    report = models.profile(model)

    tower_row, concat, dense = report.layers
    assert (tower_row.type, tower_row.calls) == ("Sequential", 2)
    assert [c.name for c in tower_row.layers] == [layer.name for layer in tower.layers]
    # Weights once: kernel 6*4 (1-bit), bias 4, BatchNorm 4 per channel * 4.
    assert dict(tower_row.params_by_bits) == {1: 24, 32: 4 + 16}
    assert tower_row.inference_params == 24 + 4 + 2 * 4
    # MACs per call of the tower: 6*4 binary; the model calls it twice.
    assert tower_row.layers[0].macs == 24
    assert dict(tower_row.macs_by_bits) == {1: 2 * 24}
    assert dense.macs == 8 * 2 and concat.macs == 0
    assert report.totals.params == model.count_params() == 24 + 20 + 8 * 2 + 2
    assert report.totals.macs == 2 * 24 + 16
    paths = [path for _, path, _ in report.walk()]
    assert paths[:3] == [
        "tower",
        f"tower/{tower.layers[0].name}",
        f"tower/{tower.layers[1].name}",
    ]


def test_shared_layer_weights_once_macs_per_call():
    inputs = keras.Input((3, 8))
    dense = keras.layers.Dense(5)
    a = dense(inputs)
    b = dense(keras.layers.Flatten()(keras.layers.Cropping1D((1, 1))(inputs)))
    model = keras.Model(inputs, [a, b])
    report = models.profile(model)
    (row,) = [r for r in report.layers if r.name == dense.name]
    assert row.calls == 2
    assert row.params == 8 * 5 + 5 == report.totals.params == model.count_params()
    assert row.macs == 3 * 8 * 5 + 8 * 5  # a (3, 8) input, then an (8,) input
    assert row.activation_elements == 3 * 5 + 5


class _Tied(keras.layers.Layer):
    """Reuses another layer's kernel, transposed (tied weights)."""

    def __init__(self, source, **kwargs):
        super().__init__(**kwargs)
        self.source = source

    def call(self, inputs):
        return keras.ops.matmul(inputs, keras.ops.transpose(self.source.kernel))


def test_weights_shared_between_layers_count_once():
    inputs = keras.Input((8,))
    dense = keras.layers.Dense(5, use_bias=False)
    outputs = _Tied(dense)(dense(inputs))
    model = keras.Model(inputs, outputs)
    report = models.profile(model)
    first, tied = report.layers
    assert first.params == 8 * 5 and first.weights[0].counted
    assert [w.counted for w in tied.weights] == [False]
    assert tied.params == 0
    assert report.totals.params == model.count_params() == 8 * 5


def test_frozen_layers_are_non_trainable():
    inputs = keras.Input((4,))
    frozen = keras.layers.Dense(3)
    frozen.trainable = False
    outputs = keras.layers.Dense(2)(frozen(inputs))
    report = models.profile(keras.Model(inputs, outputs))
    assert report.totals.non_trainable_params == 4 * 3 + 3
    assert report.totals.trainable_params == 3 * 2 + 2
    assert not any(w.trainable for w in report.layers[0].weights)


def test_subclassed_model_counts_weights_and_says_what_it_cannot_count():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.hidden = bl.QuantDense(3, kernel_quantizer="ste_sign")
            self.scale = self.add_weight(shape=(2,), name="scale")
            self.out = keras.layers.Dense(2)

        def call(self, x):
            return self.out(self.hidden(x)) * self.scale

    net = Net()
    net(keras.ops.zeros((1, 4)))
    report = models.profile(net)
    assert report.totals.params == net.count_params() == 4 * 3 + 3 + 3 * 2 + 2 + 2
    assert dict(report.totals.params_by_bits) == {1: 12, 32: 3 + 8 + 2}
    assert report.layers[-1].type == "ModelWeights"
    assert "Subclassed" in report.notes[0]
    assert any("MACs not counted" in n for n in report.layers[0].notes)


def test_unbuilt_model_is_a_clear_error():
    model = keras.Sequential([keras.layers.Dense(3)], name="not_yet")
    with pytest.raises(ValueError, match=r"Model 'not_yet' is not built.*build"):
        models.profile(model)
    with pytest.raises(ValueError, match="not built"):
        models.summary(model)


def test_model_with_unbuilt_layer_is_a_clear_error():
    class Lazy(keras.Model):
        def __init__(self):
            super().__init__(name="lazy")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    lazy = Lazy()
    lazy.built = True  # built, its layer not, and no recorded input shape
    with pytest.raises(ValueError, match=r"Layer '.*' of model 'lazy' is not built"):
        models.profile(lazy)


def test_model_built_from_a_shape_builds_its_layers():
    class Lazy(keras.Model):
        def __init__(self):
            super().__init__(name="lazy")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    lazy = Lazy()
    lazy.build((None, 4))  # Keras 3 marks the model built, not its layer
    report = models.profile(lazy)
    assert lazy.dense.built
    assert report.totals.params == 4 * 2 + 2


def test_non_model_is_a_clear_error():
    with pytest.raises(TypeError, match=r"keras.Model.*model=.*Dense"):
        models.profile(keras.layers.Dense(3))


def test_profile_is_frozen():
    inputs = keras.Input((4,))
    report = models.profile(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.totals.params = 0
    with pytest.raises(TypeError):
        report.layers[0].params_by_bits[32] = 0
