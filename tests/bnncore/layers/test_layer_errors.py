"""Bad arguments give errors that name the argument, the value and what is allowed."""

from __future__ import annotations

import re

import numpy as np
import pytest

import bnncore.layers as bl


def _built_local(shape):
    layer = bl.LocallyConnected2D(2, 3)
    layer.build(shape)
    return layer


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        pytest.param(
            lambda: bl.QuantConv2D(2, 3, pad_values="x"),
            ["pad_values='x'", "number"],
            id="pad_values-string",
        ),
        pytest.param(
            lambda: bl.QuantConv1D(2, 3, pad_values=True),
            ["pad_values=True", "number"],
            id="pad_values-bool",
        ),
        pytest.param(
            lambda: bl.QuantDepthwiseConv2D(3, pad_values=float("nan")),
            ["pad_values=nan", "finite"],
            id="pad_values-nan",
        ),
        pytest.param(
            lambda: bl.QuantDense(3, kernel_quantizer="ste_sgn"),
            ["kernel_quantizer", "'ste_sgn'", "ste_sign", "SteSign", "approx_sign"],
            id="unknown-kernel-quantizer",
        ),
        pytest.param(
            lambda: bl.QuantConv2D(2, 3, input_quantizer="sign"),
            ["input_quantizer", "'sign'", "ste_sign", "dorefa_quantizer"],
            id="unknown-input-quantizer",
        ),
        pytest.param(
            lambda: bl.QuantSeparableConv2D(2, 3, pointwise_quantizer=3),
            ["pointwise_quantizer", "3", "ste_sign", "callable"],
            id="non-quantizer-pointwise",
        ),
        pytest.param(
            lambda: bl.QuantDense(3, pad_values=1.0),
            ["pad_values"],
            id="pad_values-on-dense",
        ),
        pytest.param(
            lambda: bl.QuantConv2D(2, 3, kernel_quantiser="ste_sign"),
            ["kernel_quantiser"],
            id="misspelt-argument",
        ),
        pytest.param(
            lambda: bl.LocallyConnected2D(2, 3, padding="same"),
            ["padding='same'", "valid"],
            id="local2d-padding-same",
        ),
        pytest.param(
            lambda: bl.QuantLocallyConnected1D(2, 3, padding="same"),
            ["padding='same'", "valid"],
            id="quant-local1d-padding-same",
        ),
        pytest.param(
            lambda: bl.LocallyConnected1D(2, 3, implementation=2),
            ["implementation=2", "1"],
            id="local-implementation",
        ),
        pytest.param(
            lambda: bl.LocallyConnected2D(0, 3),
            ["filters=0", "positive integer"],
            id="local-filters",
        ),
        pytest.param(
            lambda: bl.LocallyConnected2D(2, (3, 0)),
            ["kernel_size=(3, 0)", "positive integer"],
            id="local-kernel_size",
        ),
        pytest.param(
            lambda: bl.LocallyConnected2D(2, 3, data_format="NHWC"),
            ["data_format='NHWC'", "channels_last", "channels_first"],
            id="local-data_format",
        ),
        pytest.param(
            lambda: bl.LocallyConnected2D(2, 3).build((1, 2, 5, 3)),
            ["kernel_size=(3, 3)", "(2, 5)"],
            id="local-kernel-larger-than-input",
        ),
        pytest.param(
            lambda: bl.LocallyConnected2D(2, 3).build((1, None, 5, 3)),
            ["known spatial", "None"],
            id="local-unknown-spatial-size",
        ),
        pytest.param(
            lambda: _built_local((1, 5, 5, 2))(np.zeros((1, 5, 5, 3), "float32")),
            ["axis -1", "2", "(1, 5, 5, 3)"],
            id="local-wrong-channel-count",
        ),
    ],
)
def test_bad_argument_error_is_clear(make, fragments):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    for fragment in fragments:
        assert re.search(re.escape(fragment), message), (fragment, message)
