"""Larq's public names that bnncore keeps: quantizer and constraint aliases,
``get_kernel_quantizer`` and the live set of ``get_training_metrics``."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bnncore import constraints, context, quantizers


def test_noop_quantizer_is_larqs_old_name_of_noop():
    assert quantizers.NoOpQuantizer is quantizers.NoOp
    config = {"class_name": "NoOpQuantizer", "config": {"precision": 2}}
    by_name = quantizers.get(config)
    assert isinstance(by_name, quantizers.NoOp)
    assert by_name.precision == 2


def test_get_kernel_quantizer_adds_the_scope_metrics_to_a_copy():
    mine = quantizers.SteSign()
    with context.metrics_scope(["flip_ratio"]):
        from_name = quantizers.get_kernel_quantizer("ste_sign")
        from_instance = quantizers.get_kernel_quantizer(mine)
    assert isinstance(from_name, quantizers.SteSign)
    assert from_name.quantizer_metrics == ["flip_ratio"]
    assert from_instance.quantizer_metrics == ["flip_ratio"]
    assert mine.quantizer_metrics == []  # the caller's instance is not changed
    assert quantizers.get_kernel_quantizer("ste_sign").quantizer_metrics == []


def test_custom_metrics_is_larqs_private_name_of_the_quantizer_metrics():
    with context.metrics_scope(["flip_ratio"]):
        scoped = quantizers.get_kernel_quantizer("ste_sign")
    assert scoped._custom_metrics == ["flip_ratio"]
    assert quantizers.DoReFa(metrics=["flip_ratio"])._custom_metrics == ["flip_ratio"]
    assert quantizers.SteSign()._custom_metrics == []
    assert not hasattr(quantizers.get_kernel_quantizer(lambda x: x), "_custom_metrics")


def test_get_kernel_quantizer_passes_functions_and_none_through():
    def fn(x):
        return x

    with context.metrics_scope(["flip_ratio"]):
        assert quantizers.get_kernel_quantizer(fn) is fn
        assert quantizers.get_kernel_quantizer(None) is None
    with pytest.raises(ValueError, match="no_such_quantizer"):
        quantizers.get_kernel_quantizer("no_such_quantizer")


@pytest.mark.parametrize("name", ["weight_clip", "WeightClip"])
def test_plain_keras_resolves_weight_clip_by_name(name):
    constraint = keras.constraints.get(name)
    assert type(constraint) is type(constraints.weight_clip())
    assert constraint.clip_value == 1.0
    back = keras.constraints.deserialize(keras.constraints.serialize(constraint))
    assert isinstance(back, constraints.WeightClip)
    layer = keras.layers.Dense(2, kernel_constraint=name)
    assert isinstance(layer.kernel_constraint, constraints.WeightClip)


def test_weight_clip_alias_clips_like_numpy():
    values = np.array([-2.0, -0.75, -0.1, 0.0, 0.3, 0.75, 5.0], dtype="float32")
    clipped = constraints.weight_clip(clip_value=0.75)(values)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(clipped), np.clip(values, -0.75, 0.75)
    )
    config = {"class_name": "weight_clip", "config": {"clip_value": 0.5}}
    assert keras.constraints.get(config).clip_value == 0.5


def test_training_metrics_are_a_live_mutable_set():
    metrics = context.get_training_metrics()
    assert metrics == set()
    metrics.add("flip_ratio")
    try:
        assert context.get_training_metrics() == {"flip_ratio"}
        layer_quantizer = quantizers.get_kernel_quantizer("ste_sign")
        assert layer_quantizer.quantizer_metrics == ["flip_ratio"]
    finally:
        context.get_training_metrics().clear()
    assert context.get_training_metrics() == set()


def test_metrics_scope_restores_the_set_it_found():
    with context.metrics_scope() as outer:
        assert outer is context.get_training_metrics()
        with context.metrics_scope(["flip_ratio"]) as inner:
            assert inner == {"flip_ratio"}
            inner.clear()  # changed by hand inside the scope
        assert context.get_training_metrics() == set()
    with (
        pytest.raises(ValueError, match="unknown_metric"),
        context.metrics_scope(["flip_ratio", "unknown_metric"]),
    ):
        pass
    assert context.get_training_metrics() == set()
