"""The quantized layers: thin subclasses of the Keras layers.

Each layer takes every argument of its Keras parent (same names, same defaults;
see the parent's documentation) plus the keyword-only arguments documented on
:class:`bnncore.layers.base.QuantizerBase`:

* ``input_quantizer`` — all layers;
* ``kernel_quantizer`` — dense, convolution, transposed and locally connected;
* ``depthwise_quantizer`` — depthwise; ``depthwise_quantizer`` and
  ``pointwise_quantizer`` — separable;
* ``pad_values`` — convolution, depthwise and separable layers.
"""

from __future__ import annotations

from typing import ClassVar

import keras

from bnncore.layers import forward
from bnncore.layers.base import QuantizerBase
from bnncore.layers.locally_connected import LocallyConnected1D, LocallyConnected2D

__all__ = [
    "QuantConv1D",
    "QuantConv1DTranspose",
    "QuantConv2D",
    "QuantConv2DTranspose",
    "QuantConv3D",
    "QuantConv3DTranspose",
    "QuantDense",
    "QuantDepthwiseConv1D",
    "QuantDepthwiseConv2D",
    "QuantLocallyConnected1D",
    "QuantLocallyConnected2D",
    "QuantSeparableConv1D",
    "QuantSeparableConv2D",
]

_register = keras.saving.register_keras_serializable(package="bnncore")


class _Conv(QuantizerBase):
    _takes_pad_values = True
    _forward = forward.conv


class _Depthwise(QuantizerBase):
    _kernel_quantizers: ClassVar[dict[str, str]] = {"depthwise_quantizer": "kernel"}
    _takes_pad_values = True
    _forward = forward.depthwise_conv


class _Separable(QuantizerBase):
    _kernel_quantizers: ClassVar[dict[str, str]] = {
        "depthwise_quantizer": "depthwise_kernel",
        "pointwise_quantizer": "pointwise_kernel",
    }
    _takes_pad_values = True
    _forward = forward.separable_conv


class _Transpose(QuantizerBase):
    _forward = forward.conv_transpose


class _Local(QuantizerBase):
    _forward = forward.locally_connected


@_register
class QuantDense(QuantizerBase, keras.layers.Dense):
    """``keras.layers.Dense`` with ``input_quantizer`` and ``kernel_quantizer``.

    Example:
        >>> QuantDense(512, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
        ...            kernel_constraint="weight_clip")
    """

    _forward = forward.dense


@_register
class QuantConv1D(_Conv, keras.layers.Conv1D):
    """``keras.layers.Conv1D`` with quantizers and ``pad_values``."""


@_register
class QuantConv2D(_Conv, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with quantizers and ``pad_values``."""


@_register
class QuantConv3D(_Conv, keras.layers.Conv3D):
    """``keras.layers.Conv3D`` with quantizers and ``pad_values``."""


@_register
class QuantDepthwiseConv1D(_Depthwise, keras.layers.DepthwiseConv1D):
    """``keras.layers.DepthwiseConv1D`` with a depthwise quantizer, ``pad_values``."""


@_register
class QuantDepthwiseConv2D(_Depthwise, keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` with a depthwise quantizer, ``pad_values``."""


@_register
class QuantSeparableConv1D(_Separable, keras.layers.SeparableConv1D):
    """``keras.layers.SeparableConv1D`` with depthwise/pointwise quantizers."""


@_register
class QuantSeparableConv2D(_Separable, keras.layers.SeparableConv2D):
    """``keras.layers.SeparableConv2D`` with depthwise/pointwise quantizers."""


@_register
class QuantConv1DTranspose(_Transpose, keras.layers.Conv1DTranspose):
    """``keras.layers.Conv1DTranspose`` with quantizers."""


@_register
class QuantConv2DTranspose(_Transpose, keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` with quantizers."""


@_register
class QuantConv3DTranspose(_Transpose, keras.layers.Conv3DTranspose):
    """``keras.layers.Conv3DTranspose`` with quantizers."""


@_register
class QuantLocallyConnected1D(_Local, LocallyConnected1D):
    """:class:`bnncore.layers.LocallyConnected1D` with quantizers."""


@_register
class QuantLocallyConnected2D(_Local, LocallyConnected2D):
    """:class:`bnncore.layers.LocallyConnected2D` with quantizers."""
