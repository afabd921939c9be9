"""Each quantized layer takes exactly its Keras parent's arguments plus the
documented keyword-only quantizer arguments (and ``pad_values`` for convs)."""

from __future__ import annotations

import inspect

import keras
import pytest

import bnncore.layers as bl

KL = keras.layers
KW_ONLY = inspect.Parameter.KEYWORD_ONLY

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
    # Positional parameters in the same order, so positional calls mean the same.
    positional = (inspect.Parameter.POSITIONAL_OR_KEYWORD,)
    assert [p.name for p in _params(cls) if p.kind in positional] == [
        p.name for p in theirs if p.kind in positional
    ]


@pytest.mark.parametrize(("cls", "parent", "extras"), PARAMS)
def test_documented_extras_are_keyword_only_and_nothing_else_is_added(
    cls, parent, extras
):
    expected_extras = {"input_quantizer": None, **extras}
    parent_names = {p.name for p in _params(parent.__init__)}
    added = {
        p.name: p
        for p in _params(cls)
        if p.name not in parent_names and p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    assert set(added) == set(expected_extras)
    for name, default in expected_extras.items():
        assert added[name].kind == KW_ONLY, name
        assert added[name].default == default, name


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
