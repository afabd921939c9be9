"""XNOR-Net (Rastegari et al., 2016; Larq Zoo).

"XNOR-Net: ImageNet Classification Using Binary Convolutional Neural
Networks", arXiv:1603.05279. An AlexNet whose convolutions after the first
are binary: inputs through ``SteSign``, kernels through
:class:`XnorWeightScale` (sign times the mean absolute value of each output
filter), ``WeightClip(1.0)`` and an L2 kernel regulariser of 5e-7. Each binary
conv is preceded by a BatchNorm without scale (XNOR-Net's BN → binarise →
conv → pool order). The two fully connected layers of AlexNet are binary
convolutions (6×6 "valid", then 1×1); the classifier is a float dense layer
without bias.

BatchNorms use momentum 0.9 and no scale; their epsilon is 1e-5 after the
first conv, 1e-3 after the 1×1 conv and 1e-4 elsewhere (as in Larq Zoo).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from bnncore import constraints, quantizers
from bnncore.layers import QuantConv2D
from bnncore.zoo.common import build, softmax

__all__ = ["XNORNet", "XnorWeightScale"]


@keras.saving.register_keras_serializable(package="bnncore.zoo")
class XnorWeightScale(quantizers.Quantizer):
    r"""XNOR-Net's kernel binarisation with a per-filter scale.

    Forward: :math:`w_c = \text{clip}(w, -1, 1)`,
    :math:`\alpha = \text{mean}(|w_c|)` over every axis but the last (one
    scale per output filter), :math:`q(w) = \alpha \cdot \text{sign}(w_c)`.
    The gradient flows through :math:`\alpha` and through the sign with the
    straight-through estimator. One bit per weight (the scale folds into the
    following BatchNorm).
    """

    precision = 1

    def call(self, inputs: Any) -> Any:
        clipped = ops.clip(inputs, -1.0, 1.0)
        axes = tuple(range(len(clipped.shape) - 1))
        alpha = ops.mean(ops.abs(clipped), axis=axes, keepdims=True)
        return alpha * quantizers.ste_sign(clipped)


def _bn(x: Any, name: str, epsilon: float = 1e-4) -> Any:
    return keras.layers.BatchNormalization(
        momentum=0.9, scale=False, epsilon=epsilon, name=name
    )(x)


def _pool(x: Any, name: str) -> Any:
    return keras.layers.MaxPool2D(pool_size=3, strides=2, name=name)(x)


def _binary_conv(
    x: Any, filters: int, size: int, name: str, padding: str = "same"
) -> Any:
    return QuantConv2D(
        filters,
        size,
        padding=padding,
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(5e-7),
        input_quantizer=quantizers.SteSign(),
        kernel_quantizer=XnorWeightScale(),
        kernel_constraint=constraints.WeightClip(),
        name=name,
    )(x)


def _body(inputs: Any, include_top: bool, num_classes: int) -> Any:
    x = keras.layers.Conv2D(
        96,
        11,
        strides=4,
        padding="same",
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(5e-7),
        name="conv1",
    )(inputs)
    x = _bn(x, "conv1_bn", epsilon=1e-5)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = _bn(_pool(x, "conv1_pool"), "conv1_pool_bn")
    # Binary convolutions 2 to 6: (filters, size, pooled, padding).
    layers = (
        (256, 5, True, "same"),
        (384, 3, False, "same"),
        (384, 3, False, "same"),
        (256, 3, True, "same"),
        (4096, 6, False, "valid"),
    )
    for index, (filters, size, pooled, padding) in enumerate(layers, start=2):
        name = f"binary_conv{index}"
        x = _binary_conv(x, filters, size, name, padding=padding)
        if pooled:
            x = _pool(x, f"{name}_pool")
        x = _bn(x, f"{name}_bn")
    if not include_top:
        return x
    x = _binary_conv(x, 4096, 1, "binary_conv7", padding="valid")
    x = _bn(x, "binary_conv7_bn", epsilon=1e-3)
    x = keras.layers.Activation("relu", name="binary_conv7_relu")(x)
    x = keras.layers.Flatten(name="head_flatten")(x)
    x = keras.layers.Dense(
        num_classes,
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(5e-7),
        name="logits",
    )(x)
    return softmax(x)


def XNORNet(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """XNOR-Net: a binary AlexNet with per-filter kernel scales.

    Args:
        input_shape: ``(height, width, channels)``; default ``(224, 224, 3)``.
        input_tensor: Optional Keras tensor to use as the model's input.
        num_classes: Number of classes of the classifier head.
        include_top: Whether to add the classifier head (binary 1×1 conv, BN,
            ReLU, flatten, dense, softmax).
        weights: ``None`` (random initialisation) or the path of a local
            weights file: Keras 3 (``model.load_weights``) or a Larq Zoo /
            tf-keras ``.h5`` (:func:`bnncore.zoo.load_larq_weights`).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument or an input too small for the model.
    """
    return build(
        "XNORNet",
        _body,
        model_name="xnornet",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )
