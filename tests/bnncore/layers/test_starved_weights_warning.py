"""A binary kernel quantizer without a kernel constraint logs a warning."""

from __future__ import annotations

import logging

import pytest
import tensorflow as tf

import bnncore.layers as bl
from bnncore import quantizers


def custom_sign(x):
    return tf.where(x < 0, -1.0, 1.0)


declared_binary_sign = quantizers.set_precision(1)(lambda x: tf.where(x < 0, -1.0, 1.0))


def _warnings(caplog, make):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bnncore"):
        layer = make()
    records = [r for r in caplog.records if r.name.startswith("bnncore")]
    return layer, [r.getMessage() for r in records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    ("make", "argument", "constraint"),
    [
        pytest.param(
            lambda: bl.QuantDense(3, kernel_quantizer="ste_sign"),
            "kernel_quantizer",
            "kernel_constraint",
            id="dense-ste_sign",
        ),
        pytest.param(
            lambda: bl.QuantConv2D(2, 3, kernel_quantizer="approx_sign"),
            "kernel_quantizer",
            "kernel_constraint",
            id="conv2d-approx_sign",
        ),
        pytest.param(
            lambda: bl.QuantDepthwiseConv2D(3, depthwise_quantizer="swish_sign"),
            "depthwise_quantizer",
            "depthwise_constraint",
            id="depthwise",
        ),
        pytest.param(
            lambda: bl.QuantSeparableConv1D(
                2,
                3,
                depthwise_quantizer="ste_sign",
                depthwise_constraint="weight_clip",
                pointwise_quantizer="ste_sign",
            ),
            "pointwise_quantizer",
            "pointwise_constraint",
            id="separable-pointwise",
        ),
        pytest.param(
            lambda: bl.QuantLocallyConnected1D(
                2, 2, kernel_quantizer=declared_binary_sign
            ),
            "kernel_quantizer",
            "kernel_constraint",
            id="local1d-declared-1bit",
        ),
    ],
)
def test_warns_once_naming_quantizer_and_missing_constraint(
    caplog, make, argument, constraint
):
    layer, messages = _warnings(caplog, make)
    assert len(messages) == 1, messages
    assert layer.name in messages[0]
    assert argument in messages[0]
    assert constraint in messages[0]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: bl.QuantDense(
                3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"
            ),
            id="dense-with-constraint",
        ),
        pytest.param(
            lambda: bl.QuantDepthwiseConv2D(
                3, depthwise_quantizer="ste_sign", depthwise_constraint="weight_clip"
            ),
            id="depthwise-with-constraint",
        ),
        pytest.param(
            lambda: bl.QuantSeparableConv2D(
                2,
                3,
                depthwise_quantizer="ste_sign",
                depthwise_constraint="weight_clip",
                pointwise_quantizer="ste_sign",
                pointwise_constraint="weight_clip",
            ),
            id="separable-both-constrained",
        ),
        pytest.param(
            lambda: bl.QuantDense(3, input_quantizer="ste_sign"),
            id="input-quantizer-only",
        ),
        pytest.param(
            lambda: bl.QuantConv2D(2, 3, kernel_quantizer="ste_tern"),
            id="ternary-is-not-binary",
        ),
        pytest.param(
            lambda: bl.QuantDense(
                3, kernel_quantizer=quantizers.DoReFa(k_bit=2, mode="weights")
            ),
            id="dorefa-2bit",
        ),
        pytest.param(
            lambda: bl.QuantDense(3, kernel_quantizer=custom_sign),
            id="undeclared-precision-is-32bit",
        ),
        pytest.param(lambda: bl.QuantConv1D(2, 3), id="no-quantizers"),
    ],
)
def test_no_warning(caplog, make):
    _, messages = _warnings(caplog, make)
    assert messages == []
