"""Binary AlexNet (Hubara et al., 2016; Larq Zoo).

"Binarized Neural Networks", NeurIPS 2016 (arXiv:1602.02830), on an AlexNet.
Every convolution and dense layer has binary kernels (``SteSign``,
``WeightClip(1.0)``); all but the first also binarise their inputs (the first
sees the image). Each layer is followed by (max-pool, then) a BatchNorm
without scale (momentum 0.9, Keras's default epsilon). The classifier is
binary too: flatten → binary dense 4096 → BN → binary dense 4096 → BN →
binary dense ``num_classes`` → BN → softmax.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras

from bnncore import constraints, quantizers
from bnncore.layers import QuantConv2D, QuantDense
from bnncore.zoo.common import build, softmax

__all__ = ["BinaryAlexNet"]


def _bn(x: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=0.9, scale=False, name=name)(x)


def _conv(
    x: Any,
    filters: int,
    size: int,
    strides: int = 1,
    *,
    pool: bool,
    first: bool,
    name: str,
) -> Any:
    x = QuantConv2D(
        filters,
        size,
        strides=strides,
        padding="same",
        use_bias=False,
        input_quantizer=None if first else quantizers.SteSign(),
        kernel_quantizer=quantizers.SteSign(),
        kernel_constraint=constraints.WeightClip(),
        name=name,
    )(x)
    if pool:
        x = keras.layers.MaxPool2D(pool_size=3, strides=2, name=f"{name}_pool")(x)
    return _bn(x, f"{name}_bn")


def _dense(x: Any, units: int, name: str) -> Any:
    x = QuantDense(
        units,
        use_bias=False,
        input_quantizer=quantizers.SteSign(),
        kernel_quantizer=quantizers.SteSign(),
        kernel_constraint=constraints.WeightClip(),
        name=name,
    )(x)
    return _bn(x, f"{name}_bn")


def _body(inputs: Any, include_top: bool, num_classes: int) -> Any:
    x = _conv(inputs, 64, 11, strides=4, pool=True, first=True, name="binary_conv1")
    x = _conv(x, 192, 5, pool=True, first=False, name="binary_conv2")
    x = _conv(x, 384, 3, pool=False, first=False, name="binary_conv3")
    x = _conv(x, 384, 3, pool=False, first=False, name="binary_conv4")
    x = _conv(x, 256, 3, pool=True, first=False, name="binary_conv5")
    if not include_top:
        return x
    x = keras.layers.Flatten(name="head_flatten")(x)
    x = _dense(x, 4096, "binary_dense6")
    x = _dense(x, 4096, "binary_dense7")
    x = _dense(x, num_classes, "binary_dense8")
    return softmax(x)


def BinaryAlexNet(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """Binary AlexNet: AlexNet with binary kernels everywhere.

    Args:
        input_shape: ``(height, width, channels)``; default ``(224, 224, 3)``.
        input_tensor: Optional Keras tensor to use as the model's input.
        num_classes: Number of classes of the classifier head.
        include_top: Whether to add the classifier head (flatten, three binary
            dense layers with BatchNorm, softmax).
        weights: ``None`` (random initialisation) or the path of a local
            weights file: Keras 3 (``model.load_weights``) or a Larq Zoo /
            tf-keras ``.h5`` (:func:`bnncore.zoo.load_larq_weights`).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument or an input too small for the model.
    """
    return build(
        "BinaryAlexNet",
        _body,
        model_name="binary_alexnet",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )
