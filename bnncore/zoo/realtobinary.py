"""Real-to-Binary Net, BNN variant (Martinez et al., 2020; Larq Zoo).

"Training Binary Neural Networks with Real-to-Binary Convolutions",
arXiv:2003.11535 (ICLR 2020). A ResNet-18 layout of eight blocks, each made of
two binary "half blocks":

* shortcut: identity, or (when the channels double) 2×2 average pool →
  float 1×1 conv → BN;
* BN → binary 3×3 conv (``SteSign`` on inputs and kernels, ``WeightClip``,
  zero padding);
* data-dependent scaling of the conv output (Section 4.3): global average of
  the conv *input* → dense (channels/8, ReLU) → dense (channels, sigmoid) →
  per-channel multiply;
* PReLU (one slope per channel), then the shortcut is added.

Stem: float 7×7 stride-2 conv → BN → PReLU → 3×3 stride-2 max-pool. Head:
global average pool → dense → softmax. BatchNorms use momentum 0.99 and
Keras's default epsilon.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from bnncore import constraints, quantizers
from bnncore.layers import QuantConv2D
from bnncore.zoo.common import build, classifier_head

__all__ = ["RealToBinaryNet"]

_SCALING_REDUCTION = 8


def _bn(x: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=0.99, name=name)(x)


def _prelu(x: Any, name: str) -> Any:
    return keras.layers.PReLU(shared_axes=[1, 2], name=name)(x)


def _scaled(conv_input: Any, conv_output: Any, prefix: str) -> Any:
    in_filters = conv_input.shape[-1]
    out_filters = conv_output.shape[-1]
    z = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_pool")(conv_input)
    z = keras.layers.Dense(
        in_filters // _SCALING_REDUCTION,
        activation="relu",
        kernel_initializer="he_normal",
        use_bias=False,
        name=f"{prefix}_dense1",
    )(z)
    z = keras.layers.Dense(
        out_filters,
        activation="sigmoid",
        kernel_initializer="he_normal",
        use_bias=False,
        name=f"{prefix}_dense2",
    )(z)
    scales = keras.layers.Reshape((1, 1, out_filters), name=f"{prefix}_reshape")(z)
    return keras.layers.Multiply(name=f"{prefix}_multiply")([conv_output, scales])


def _half_block(x: Any, downsample: bool, prefix: str) -> Any:
    in_filters = x.shape[-1]
    out_filters = 2 * in_filters if downsample else in_filters
    shortcut = x
    if out_filters != in_filters:
        shortcut = keras.layers.AveragePooling2D(
            2, strides=2, padding="same", name=f"{prefix}_shortcut_avg_pool"
        )(x)
        shortcut = keras.layers.Conv2D(
            out_filters,
            1,
            kernel_initializer="glorot_normal",
            use_bias=False,
            name=f"{prefix}_shortcut_conv",
        )(shortcut)
        shortcut = _bn(shortcut, f"{prefix}_shortcut_bn")
    conv_input = _bn(x, f"{prefix}_bn")
    conv_output = QuantConv2D(
        out_filters,
        3,
        strides=2 if downsample else 1,
        padding="same",
        use_bias=False,
        kernel_initializer="glorot_normal",
        input_quantizer=quantizers.SteSign(),
        kernel_quantizer=quantizers.SteSign(),
        kernel_constraint=constraints.WeightClip(),
        name=f"{prefix}_binary_conv",
    )(conv_input)
    scaled = _scaled(conv_input, conv_output, f"{prefix}_scale")
    y = _prelu(scaled, f"{prefix}_prelu")
    return keras.layers.Add(name=f"{prefix}_add")([y, shortcut])


def _body(inputs: Any, include_top: bool, num_classes: int) -> Any:
    x = keras.layers.Conv2D(
        64,
        7,
        strides=2,
        padding="same",
        kernel_initializer="glorot_normal",
        use_bias=False,
        name="stem_conv",
    )(inputs)
    x = _prelu(_bn(x, "stem_bn"), "stem_prelu")
    x = keras.layers.MaxPool2D(3, strides=2, padding="same", name="stem_max_pool")(x)
    # Larq Zoo numbers the blocks 2..9; blocks 4, 6 and 8 double the channels.
    for block in range(2, 10):
        x = _half_block(x, block in (4, 6, 8), f"block{block}_half1")
        x = _half_block(x, False, f"block{block}_half2")
    if not include_top:
        return x
    return classifier_head(x, num_classes)


def RealToBinaryNet(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """Real-to-Binary Net (BNN): binary convs with data-dependent output scaling.

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
        "RealToBinaryNet",
        _body,
        model_name="r2b_bnn",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )
