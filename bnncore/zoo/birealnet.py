"""Bi-Real Net 18 (Liu et al., 2018; Larq Zoo).

"Bi-Real Net: Enhancing the Performance of 1-bit CNNs With Improved
Representational Capability and Advanced Training Algorithm",
arXiv:1808.00278. A ResNet-18 with a real-valued shortcut around every binary
3×3 convolution: each unit is ``BN(binconv3x3(x)) + shortcut(x)``. Binary
convolutions use ``ApproxSign`` on inputs (the paper's piecewise-polynomial
pseudo-gradient), ``MagnitudeAwareSign`` on kernels and ``WeightClip(1.0)``,
zero padding. A shortcut that changes the channel count is float: 2×2 average
pool → 1×1 conv → BN. BatchNorms use momentum 0.8 and Keras's default
epsilon.

Stem: float 7×7 stride-2 conv → BN → 3×3 stride-2 max-pool (no ReLU). Head:
global average pool → dense → softmax.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from bnncore import constraints, quantizers
from bnncore.layers import QuantConv2D
from bnncore.zoo.common import build, classifier_head

__all__ = ["BiRealNet"]

_FILTERS = 64


def _bn(x: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=0.8, name=name)(x)


def _unit(x: Any, filters: int, prefix: str) -> Any:
    in_filters = x.shape[-1]
    shortcut = x
    if in_filters != filters:
        shortcut = keras.layers.AveragePooling2D(
            2, strides=2, padding="same", name=f"{prefix}_shortcut_avg_pool"
        )(x)
        shortcut = keras.layers.Conv2D(
            filters,
            1,
            kernel_initializer="glorot_normal",
            use_bias=False,
            name=f"{prefix}_shortcut_conv",
        )(shortcut)
        shortcut = _bn(shortcut, f"{prefix}_shortcut_bn")
    y = QuantConv2D(
        filters,
        3,
        strides=1 if in_filters == filters else 2,
        padding="same",
        use_bias=False,
        kernel_initializer="glorot_normal",
        input_quantizer=quantizers.ApproxSign(),
        kernel_quantizer=quantizers.MagnitudeAwareSign(),
        kernel_constraint=constraints.WeightClip(),
        name=f"{prefix}_binary_conv",
    )(x)
    y = _bn(y, f"{prefix}_bn")
    return keras.layers.Add(name=f"{prefix}_add")([y, shortcut])


def _body(inputs: Any, include_top: bool, num_classes: int) -> Any:
    x = keras.layers.Conv2D(
        _FILTERS,
        7,
        strides=2,
        padding="same",
        kernel_initializer="glorot_normal",
        use_bias=False,
        name="stem_conv",
    )(inputs)
    x = _bn(x, "stem_bn")
    x = keras.layers.MaxPool2D(3, strides=2, padding="same", name="stem_max_pool")(x)
    filters = _FILTERS
    for section in range(1, 5):
        if section > 1:
            filters *= 2  # the section's first unit doubles the channels
        for unit in range(1, 5):
            x = _unit(x, filters, f"section{section}_unit{unit}")
    if not include_top:
        return x
    return classifier_head(x, num_classes)


def BiRealNet(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """Bi-Real Net 18: 16 binary 3×3 convs, each with a real-valued shortcut.

    Args:
        input_shape: ``(height, width, channels)``; default ``(224, 224, 3)``.
        input_tensor: Optional Keras tensor to use as the model's input.
        num_classes: Number of classes of the classifier head.
        include_top: Whether to add the classifier head (global average
            pooling, dense, softmax).
        weights: ``None`` (random initialisation) or the path of a local
            weights file: Keras 3 (``model.load_weights``) or a Larq Zoo /
            tf-keras ``.h5`` (:func:`bnncore.zoo.load_larq_weights`).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument or an input too small for the model.
    """
    return build(
        "BiRealNet",
        _body,
        model_name="birealnet18",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )
