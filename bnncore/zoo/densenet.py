"""BinaryDenseNet 28, 37, 37-dilated and 45 (Bethge et al., 2019; Larq Zoo).

"Back to Simplicity: How to Train Accurate BNNs from Scratch?",
arXiv:1906.08637. Every layer of a dense block is BN → binary 3×3 conv (64
new channels) → concatenation with its input. The binary convolutions use
``SteSign(clip_value=1.3)`` on inputs and kernels and ``WeightClip(1.3)``;
padding is zero padding. Between blocks a float transition BN → max-pool
(skipped when the next block is dilated) → ReLU → 1×1 conv reduces the
channels to ``round(channels // reduction / 32) * 32``. All BatchNorms use
momentum 0.9 and epsilon 1e-5.

The stem is a float 7×7 stride-2 conv → BN → ReLU → 3×3 stride-2 max-pool
for ImageNet-sized inputs, and a single float 3×3 conv for inputs smaller
than 50 pixels (as in Larq Zoo).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from bnncore import constraints, quantizers
from bnncore.layers import QuantConv2D
from bnncore.zoo.common import build, classifier_head

__all__ = [
    "BinaryDenseNet28",
    "BinaryDenseNet37",
    "BinaryDenseNet37Dilated",
    "BinaryDenseNet45",
]

_INITIAL_FILTERS = 64
_GROWTH_RATE = 64


def _bn(x: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _stem(x: Any) -> Any:
    if x.shape[1] is not None and x.shape[1] < 50:
        return keras.layers.Conv2D(
            _INITIAL_FILTERS,
            3,
            padding="same",
            kernel_initializer="he_normal",
            use_bias=False,
            name="stem_conv",
        )(x)
    x = keras.layers.Conv2D(
        _INITIAL_FILTERS,
        7,
        strides=2,
        padding="same",
        kernel_initializer="he_normal",
        use_bias=False,
        name="stem_conv",
    )(x)
    x = _bn(x, "stem_bn")
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    return keras.layers.MaxPool2D(3, strides=2, padding="same", name="stem_max_pool")(x)


def _dense_layer(x: Any, dilation_rate: int, prefix: str) -> Any:
    y = _bn(x, f"{prefix}_bn")
    y = QuantConv2D(
        _GROWTH_RATE,
        3,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=False,
        kernel_initializer="glorot_normal",
        input_quantizer=quantizers.SteSign(clip_value=1.3),
        kernel_quantizer=quantizers.SteSign(clip_value=1.3),
        kernel_constraint=constraints.WeightClip(clip_value=1.3),
        name=f"{prefix}_binary_conv",
    )(y)
    return keras.layers.Concatenate(name=f"{prefix}_concat")([x, y])


def _transition(x: Any, reduction: float, pool: bool, prefix: str) -> Any:
    x = _bn(x, f"{prefix}_bn")
    if pool:
        x = keras.layers.MaxPool2D(2, strides=2, name=f"{prefix}_max_pool")(x)
    x = keras.layers.Activation("relu", name=f"{prefix}_relu")(x)
    filters = round(x.shape[-1] // reduction / 32) * 32
    return keras.layers.Conv2D(
        filters,
        1,
        kernel_initializer="he_normal",
        use_bias=False,
        name=f"{prefix}_conv",
    )(x)


def _body(layers: Sequence[int], reduction: Sequence[float], dilation: Sequence[int]):
    def body(inputs: Any, include_top: bool, num_classes: int) -> Any:
        x = _stem(inputs)
        for block, n_layers in enumerate(layers):
            for layer in range(1, n_layers + 1):
                x = _dense_layer(x, dilation[block], f"block{block + 1}_layer{layer}")
            if block < len(layers) - 1:
                pool = dilation[block + 1] == 1
                x = _transition(x, reduction[block], pool, f"transition{block + 1}")
        x = _bn(x, "final_bn")
        x = keras.layers.Activation("relu", name="final_relu")(x)
        if not include_top:
            return x
        return classifier_head(x, num_classes, "he_normal")

    return body


_CONFIGS = {
    # name: (model_name, layers per block, reductions, dilation rates)
    "BinaryDenseNet28": ("binary_densenet28", (6, 6, 6, 5), (2.7, 2.7, 2.2), (1,) * 4),
    "BinaryDenseNet37": ("binary_densenet37", (6, 8, 12, 6), (3.3, 3.3, 4), (1,) * 4),
    "BinaryDenseNet37Dilated": (
        "binary_densenet37_dilated",
        (6, 8, 12, 6),
        (3.3, 3.3, 4),
        (1, 1, 2, 4),
    ),
    "BinaryDenseNet45": ("binary_densenet45", (6, 12, 14, 8), (2.7, 3.3, 4), (1,) * 4),
}


def _make(name: str):
    model_name, layers, reduction, dilation = _CONFIGS[name]

    def constructor(
        input_shape: Sequence[int | None] | None = None,
        input_tensor: Any = None,
        num_classes: int = 1000,
        include_top: bool = True,
        weights: str | os.PathLike[str] | None = None,
    ) -> keras.Model:
        return build(
            name,
            _body(layers, reduction, dilation),
            model_name=model_name,
            input_shape=input_shape,
            input_tensor=input_tensor,
            num_classes=num_classes,
            include_top=include_top,
            weights=weights,
        )

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = f"""{name}: dense blocks of {", ".join(map(str, layers))}
    binary layers, transition reductions {", ".join(map(str, reduction))}, dilation
    rates {", ".join(map(str, dilation))}.

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
    return constructor


BinaryDenseNet28 = _make("BinaryDenseNet28")
BinaryDenseNet37 = _make("BinaryDenseNet37")
BinaryDenseNet37Dilated = _make("BinaryDenseNet37Dilated")
BinaryDenseNet45 = _make("BinaryDenseNet45")
