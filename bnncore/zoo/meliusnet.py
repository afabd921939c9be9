"""MeliusNet22 (Bethge et al., 2020; Larq Zoo).

"MeliusNet: Can Binary Neural Networks Achieve MobileNet-level Accuracy?",
arXiv:2001.05936. Each block is a *dense block* (BN → binary 3×3 conv with 64
channels → concatenated to the input) followed by an *improvement block*
(BN → binary 3×3 conv with 64 channels → added to the last 64 channels, the
ones the dense block just created). Binary convolutions use
``SteSign(clip_value=1.3)`` on inputs and kernels and ``WeightClip(1.3)``,
zero padding.

* stem: float 3×3 stride-2 conv (32) → BN → ReLU → grouped 3×3 conv (32
  channels, 4 groups) → BN → ReLU → grouped 3×3 conv (64 channels, 8 groups)
  → BN → ReLU → 2×2 max-pool;
* sections of 4, 5, 4, 4 blocks separated by float transitions BN → 2×2
  max-pool → ReLU → 1×1 conv to 160, 224, 256 channels;
* head: BN → ReLU → global average pool → dense → softmax.

All BatchNorms use momentum 0.9 and epsilon 1e-5. Larq Zoo writes the grouped
convolutions as a split into per-group convolutions; a Keras ``Conv2D`` with
``groups`` has the same weights and MACs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from bnncore import constraints, quantizers
from bnncore.layers import QuantConv2D
from bnncore.zoo.common import build, classifier_head

__all__ = ["AddToLastChannels", "MeliusNet22"]

_GROWTH = 64


@keras.saving.register_keras_serializable(package="bnncore.zoo")
class AddToLastChannels(keras.layers.Layer):
    """Adds ``update`` (``k`` channels) to the last ``k`` channels of ``x``.

    Called as ``layer([x, update])``; the same as adding ``update`` zero-padded
    at the front of the channel axis (MeliusNet's improvement block).
    """

    def call(self, inputs: Sequence[Any]) -> Any:
        x, update = inputs
        k = update.shape[-1]
        keep = x[..., : x.shape[-1] - k]
        return ops.concatenate([keep, x[..., x.shape[-1] - k :] + update], axis=-1)

    def compute_output_shape(self, input_shapes: Sequence[Any]) -> Any:
        x_shape, update_shape = input_shapes
        if update_shape[-1] > x_shape[-1]:
            raise ValueError(
                f"AddToLastChannels: the update has {update_shape[-1]} channels, "
                f"more than the {x_shape[-1]} of the input."
            )
        return x_shape


def _bn(x: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _relu(x: Any, name: str) -> Any:
    return keras.layers.Activation("relu", name=name)(x)


def _pool(x: Any, name: str) -> Any:
    return keras.layers.MaxPool2D(2, strides=2, padding="same", name=name)(x)


def _float_conv(
    x: Any, filters: int, size: int, name: str, strides: int = 1, groups: int = 1
) -> Any:
    return keras.layers.Conv2D(
        filters,
        size,
        strides=strides,
        padding="same",
        groups=groups,
        kernel_initializer="glorot_normal",
        use_bias=False,
        name=name,
    )(x)


def _binary_conv(x: Any, prefix: str) -> Any:
    return QuantConv2D(
        _GROWTH,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="glorot_normal",
        input_quantizer=quantizers.SteSign(clip_value=1.3),
        kernel_quantizer=quantizers.SteSign(clip_value=1.3),
        kernel_constraint=constraints.WeightClip(clip_value=1.3),
        name=f"{prefix}_binary_conv",
    )(_bn(x, f"{prefix}_bn"))


def _stem(x: Any) -> Any:
    for i, (filters, strides, groups) in enumerate(
        ((32, 2, 1), (32, 1, 4), (64, 1, 8)), start=1
    ):
        x = _float_conv(x, filters, 3, f"stem_conv{i}", strides, groups)
        x = _relu(_bn(x, f"stem_bn{i}"), f"stem_relu{i}")
    return _pool(x, "stem_max_pool")


def _block(x: Any, prefix: str) -> Any:
    dense = _binary_conv(x, f"{prefix}_dense")
    x = keras.layers.Concatenate(name=f"{prefix}_dense_concat")([x, dense])
    improvement = _binary_conv(x, f"{prefix}_improvement")
    return AddToLastChannels(name=f"{prefix}_improvement_add")([x, improvement])


def _transition(x: Any, filters: int, prefix: str) -> Any:
    x = _bn(x, f"{prefix}_bn")
    x = _relu(_pool(x, f"{prefix}_max_pool"), f"{prefix}_relu")
    return _float_conv(x, filters, 1, f"{prefix}_conv")


def _body(inputs: Any, include_top: bool, num_classes: int) -> Any:
    x = _stem(inputs)
    sections = ((4, 160), (5, 224), (4, 256), (4, None))
    for section, (blocks, filters) in enumerate(sections, start=1):
        for block in range(1, blocks + 1):
            x = _block(x, f"section{section}_block{block}")
        if filters is not None:
            x = _transition(x, filters, f"transition{section}")
    x = _relu(_bn(x, "final_bn"), "final_relu")
    if not include_top:
        return x
    return classifier_head(x, num_classes, "glorot_normal")


def MeliusNet22(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """MeliusNet22: dense and improvement blocks in sections of 4, 5, 4, 4.

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
        "MeliusNet22",
        _body,
        model_name="meliusnet22",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )
