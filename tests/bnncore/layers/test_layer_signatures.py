"""Each quantized layer takes exactly its Keras parent's arguments plus the
documented quantizer arguments (and ``pad_values`` for convs), inserted where
Larq has them so that positional calls bind as in Larq."""

from __future__ import annotations

import inspect

import keras
import pytest

import bnncore.layers as bl
from bnncore import quantizers

KL = keras.layers
POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD

# quantized class -> (Keras parent, documented extra keyword-only args, defaults)
EXPECTED = {
    bl.QuantDense: (KL.Dense, {"kernel_quantizer": None}),
    bl.QuantConv1D: (KL.Conv1D, {"kernel_quantizer": None, "pad_values": 0.0}),
    bl.QuantConv2D: (KL.Conv2D, {"kernel_quantizer": None, "pad_values": 0.0}),
    bl.QuantConv3D: (KL.Conv3D, {"kernel_quantizer": None, "pad_values": 0.0}),
    bl.QuantDepthwiseConv1D: (
        KL.DepthwiseConv1D,
        {"depthwise_quantizer": None, "pad_values": 0.0},
    ),
    bl.QuantDepthwiseConv2D: (
        KL.DepthwiseConv2D,
        {"depthwise_quantizer": None, "pad_values": 0.0},
    ),
    bl.QuantSeparableConv1D: (
        KL.SeparableConv1D,
        {"depthwise_quantizer": None, "pointwise_quantizer": None, "pad_values": 0.0},
    ),
    bl.QuantSeparableConv2D: (
        KL.SeparableConv2D,
        {"depthwise_quantizer": None, "pointwise_quantizer": None, "pad_values": 0.0},
    ),
    bl.QuantConv1DTranspose: (KL.Conv1DTranspose, {"kernel_quantizer": None}),
    bl.QuantConv2DTranspose: (KL.Conv2DTranspose, {"kernel_quantizer": None}),
    bl.QuantConv3DTranspose: (KL.Conv3DTranspose, {"kernel_quantizer": None}),
    bl.QuantLocallyConnected1D: (bl.LocallyConnected1D, {"kernel_quantizer": None}),
    bl.QuantLocallyConnected2D: (bl.LocallyConnected2D, {"kernel_quantizer": None}),
}
PARAMS = [pytest.param(cls, *spec, id=cls.__name__) for cls, spec in EXPECTED.items()]


def _params(fn_or_cls):
    return list(inspect.signature(fn_or_cls).parameters.values())


def test_every_quantized_layer_is_covered():
    exported = {
        getattr(bl, name) for name in bl.__all__ if name.startswith("Quant")
    } - {bl.QuantizerBase}
    assert exported == set(EXPECTED)


@pytest.mark.parametrize(("cls", "parent", "extras"), PARAMS)
def test_is_a_subclass_of_its_keras_parent(cls, parent, extras):
    assert issubclass(cls, parent)


@pytest.mark.parametrize(("cls", "parent", "extras"), PARAMS)
def test_parent_parameters_kept_with_same_name_kind_default(cls, parent, extras):
    ours = {p.name: p for p in _params(cls)}
    theirs = _params(parent.__init__)[1:]  # drop self
    for p in theirs:
        assert p.name in ours, f"{cls.__name__} lacks {p.name}"
        assert ours[p.name].kind == p.kind, p.name
        assert ours[p.name].default == p.default, p.name
    # Keras's own parameters keep their relative order.
    names = {p.name for p in theirs}
    assert [p.name for p in _params(cls) if p.name in names] == [p.name for p in theirs]


@pytest.mark.parametrize(("cls", "parent", "extras"), PARAMS)
def test_documented_extras_sit_where_larq_has_them(cls, parent, extras):
    expected_extras = {"input_quantizer": None, **extras}
    parent_names = {p.name for p in _params(parent.__init__)}
    params = _params(cls)
    added = {
        p.name: p
        for p in params
        if p.name not in parent_names and p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    assert set(added) == set(expected_extras)
    for name, default in expected_extras.items():
        assert added[name].kind == POSITIONAL, name
        assert added[name].default == default, name
    order = [p.name for p in params]
    # Larq: ..., use_bias, input_quantizer, <kernel quantizers>, ...
    quantizer_names = [n for n in extras if n.endswith("_quantizer")]
    start = order.index("use_bias") + 1
    assert order[start : start + 1 + len(quantizer_names)] == [
        "input_quantizer",
        *quantizer_names,
    ]
    if "pad_values" in extras:  # Larq: ..., padding, pad_values, ...
        assert order[order.index("padding") + 1] == "pad_values"


# Larq 0.14's positional order (inspect.signature of larq.layers.*), up to the
# last quantizer argument; the Keras arguments that follow are Keras 3's.
LARQ_ORDER = {
    bl.QuantDense: "units activation use_bias input_quantizer kernel_quantizer",
    bl.QuantConv2D: "filters kernel_size strides padding pad_values data_format "
    "dilation_rate groups activation use_bias input_quantizer kernel_quantizer",
    bl.QuantDepthwiseConv2D: "kernel_size strides padding pad_values "
    "depth_multiplier data_format dilation_rate activation use_bias "
    "input_quantizer depthwise_quantizer",
    bl.QuantSeparableConv1D: "filters kernel_size strides padding pad_values "
    "data_format dilation_rate depth_multiplier activation use_bias "
    "input_quantizer depthwise_quantizer pointwise_quantizer",
    bl.QuantConv2DTranspose: "filters kernel_size strides padding output_padding "
    "data_format dilation_rate activation use_bias input_quantizer kernel_quantizer",
    bl.QuantLocallyConnected1D: "filters kernel_size strides padding data_format "
    "activation use_bias input_quantizer kernel_quantizer",
}


@pytest.mark.parametrize(
    ("cls", "larq"), [pytest.param(c, o, id=c.__name__) for c, o in LARQ_ORDER.items()]
)
def test_positional_prefix_is_larqs(cls, larq):
    expected = larq.split()
    assert [p.name for p in _params(cls)][: len(expected)] == expected


def test_larq_positional_calls_bind_the_quantizers():
    dense = bl.QuantDense(4, None, False, "ste_sign", "ste_tern")
    assert isinstance(dense.input_quantizer, quantizers.SteSign)
    assert isinstance(dense.kernel_quantizer, quantizers.SteTern)
    assert dense.use_bias is False
    conv = bl.QuantConv2D(4, 3, 1, "same", 1.0, None, 1, 1, None, True, "ste_sign")
    assert conv.pad_values == 1.0
    assert isinstance(conv.input_quantizer, quantizers.SteSign)
    assert conv.kernel_quantizer is None
    separable = bl.QuantSeparableConv2D(
        2, 3, 1, "valid", 0.0, None, 1, 1, None, True, None, "ste_sign", "ste_tern"
    )
    assert isinstance(separable.depthwise_quantizer, quantizers.SteSign)
    assert isinstance(separable.pointwise_quantizer, quantizers.SteTern)
    with pytest.raises(TypeError, match="multiple values"):
        bl.QuantDense(4, None, True, "ste_sign", input_quantizer="ste_sign")


@pytest.mark.parametrize(
    ("cls", "args", "attribute", "expected"),
    [
        pytest.param(bl.QuantDense, (7,), "units", 7, id="dense-units"),
        pytest.param(bl.QuantConv2D, (4, 3), "kernel_size", (3, 3), id="conv2d"),
        pytest.param(
            bl.QuantConv1D, (4, 3, 2, "same"), "padding", "same", id="conv1d-padding"
        ),
        pytest.param(
            bl.QuantDepthwiseConv2D, (3, 2), "strides", (2, 2), id="depthwise-strides"
        ),
        pytest.param(
            bl.QuantLocallyConnected1D, (5, 2, 2), "strides", (2,), id="local1d"
        ),
    ],
)
def test_positional_arguments_bind_like_the_parent(cls, args, attribute, expected):
    assert getattr(cls(*args), attribute) == expected
