"""Quantized layers (``Quant*``) and the locally connected layers Keras 3 dropped."""

from bnncore.layers.base import QuantizerBase
from bnncore.layers.locally_connected import LocallyConnected1D, LocallyConnected2D
from bnncore.layers.quantized import (
    QuantConv1D,
    QuantConv1DTranspose,
    QuantConv2D,
    QuantConv2DTranspose,
    QuantConv3D,
    QuantConv3DTranspose,
    QuantDense,
    QuantDepthwiseConv1D,
    QuantDepthwiseConv2D,
    QuantLocallyConnected1D,
    QuantLocallyConnected2D,
    QuantSeparableConv1D,
    QuantSeparableConv2D,
)

__all__ = [
    "LocallyConnected1D",
    "LocallyConnected2D",
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
    "QuantizerBase",
]
