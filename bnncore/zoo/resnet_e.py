"""BinaryResNetE18 (Bethge et al., 2019; Larq Zoo).

"Back to Simplicity: How to Train Accurate BNNs from Scratch?",
arXiv:1906.08637. A ResNet-18 in which every binary 3×3 convolution gets its
own shortcut: each residual unit is ``BN(binconv3x3(x)) + shortcut(x)``, with
twice as many units as ResNet-18 has blocks. Binary convolutions use
``SteSign(clip_value=1.25)`` on inputs and kernels and ``WeightClip(1.25)``,
zero padding. A shortcut that changes the channel count is float:
2×2 average pool → 1×1 conv → BN. All BatchNorms use momentum 0.9 and
epsilon 1e-5.

The stem is a float 7×7 stride-2 conv → BN → ReLU → 3×3 stride-2 max-pool → BN
for ImageNet-sized inputs, and a single float 3×3 conv for inputs smaller than
50 pixels (as in Larq Zoo). The head is ReLU → global average pool → dense →
softmax.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from bnncore import constraints, quantizers
from bnncore.layers import QuantConv2D
from bnncore.zoo.common import build, classifier_head

__all__ = ["BinaryResNetE18"]

_SECTIONS = ((2, 64), (2, 128), (2, 256), (2, 512))  # ResNet-18 blocks, channels


def _bn(x: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _stem(x: Any) -> Any:
    if x.shape[1] is not None and x.shape[1] < 50:
        return keras.layers.Conv2D(
            64,
            3,
            padding="same",
            kernel_initializer="he_normal",
            use_bias=False,
            name="stem_conv",
        )(x)
    x = keras.layers.Conv2D(
        64,
        7,
        strides=2,
        padding="same",
        kernel_initializer="he_normal",
        use_bias=False,
        name="stem_conv",
    )(x)
    x = _bn(x, "stem_bn")
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    x = keras.layers.MaxPool2D(3, strides=2, padding="same", name="stem_max_pool")(x)
    return _bn(x, "stem_pool_bn")


def _unit(x: Any, filters: int, strides: int, prefix: str) -> Any:
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = keras.layers.AveragePooling2D(
            2, strides=2, name=f"{prefix}_shortcut_avg_pool"
        )(shortcut)
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
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="glorot_normal",
        input_quantizer=quantizers.SteSign(clip_value=1.25),
        kernel_quantizer=quantizers.SteSign(clip_value=1.25),
        kernel_constraint=constraints.WeightClip(clip_value=1.25),
        name=f"{prefix}_binary_conv",
    )(x)
    y = _bn(y, f"{prefix}_bn")
    return keras.layers.Add(name=f"{prefix}_add")([y, shortcut])


def _body(inputs: Any, include_top: bool, num_classes: int) -> Any:
    x = _stem(inputs)
    for section, (blocks, filters) in enumerate(_SECTIONS, start=1):
        # Two units (one binary conv each) per ResNet block.
        for unit in range(1, 2 * blocks + 1):
            strides = 2 if section > 1 and unit == 1 else 1
            x = _unit(x, filters, strides, f"section{section}_unit{unit}")
    x = keras.layers.Activation("relu", name="final_relu")(x)
    if not include_top:
        return x
    return classifier_head(x, num_classes, "glorot_normal")


def BinaryResNetE18(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """BinaryResNetE18: ResNet-18 with a shortcut around every binary conv.

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
        "BinaryResNetE18",
        _body,
        model_name="binary_resnet_e_18",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )
