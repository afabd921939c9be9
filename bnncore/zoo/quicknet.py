"""QuickNet, QuickNetSmall and QuickNetLarge (Larq Zoo ``sota``, v1.0 definitions).

A ResNet-like BNN designed for fast inference with Larq Compute Engine:

* stem: float 3×3 conv (stride 2, ``filters/4`` channels) → BN → ReLU → float
  3×3 depthwise conv (stride 2) → BN without scale/centre → float 1×1 conv →
  BN;
* sections of residual blocks ``x + BN(relu(binconv3x3(x)))`` whose binary
  convolution uses ``SteSign(clip_value=1.25)`` on inputs and kernels,
  ``WeightClip(1.25)`` and "same-one" padding (``pad_values=1.0``);
* between sections, a transition ReLU → max-pool (size 2, stride 1) → fixed
  blur-pool depthwise conv (stride 2, not trainable) → float 1×1 conv → BN;
* head: ReLU → global average pool → float dense → softmax.

Residual BatchNorms use momentum 0.9 and epsilon 1e-5; the stem's use Keras's
defaults.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from bnncore import constraints, quantizers
from bnncore.layers import QuantConv2D
from bnncore.zoo.common import build, classifier_head

__all__ = ["BlurPool", "QuickNet", "QuickNetLarge", "QuickNetSmall"]

_TAPS = {2: (1, 1), 3: (1, 2, 1), 5: (1, 4, 6, 4, 1)}


@keras.saving.register_keras_serializable(package="bnncore.zoo")
class BlurPool(keras.initializers.Initializer):
    """Binomial low-pass filter for a depthwise kernel (anti-aliased pooling).

    The 2-D kernel is the normalised outer product of a row of Pascal's
    triangle (``[1, 2, 1]`` for size 3), repeated for every channel.
    """

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        size = shape[0]
        if size not in _TAPS or shape[1] != size:
            raise ValueError(
                "BlurPool: expected a square kernel of size 2, 3 or 5. "
                f"Received kernel shape: {tuple(shape)}"
            )
        taps = np.asarray(_TAPS[size], dtype="float64")
        kernel = np.outer(taps, taps) / np.outer(taps, taps).sum()
        full = np.broadcast_to(kernel[:, :, None, None], tuple(shape))
        return keras.ops.convert_to_tensor(np.array(full), dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return {}


def _bn(x: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _stem(x: Any, filters: int) -> Any:
    x = keras.layers.Conv2D(
        filters // 4,
        3,
        strides=2,
        padding="same",
        kernel_initializer="he_normal",
        use_bias=False,
        name="stem_conv",
    )(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    x = keras.layers.DepthwiseConv2D(
        3, strides=2, padding="same", use_bias=False, name="stem_depthwise_conv"
    )(x)
    x = keras.layers.BatchNormalization(
        center=False, scale=False, name="stem_depthwise_bn"
    )(x)
    x = keras.layers.Conv2D(
        filters,
        1,
        kernel_initializer="he_normal",
        use_bias=False,
        name="stem_pointwise_conv",
    )(x)
    return keras.layers.BatchNormalization(name="stem_pointwise_bn")(x)


def _residual_block(x: Any, prefix: str) -> Any:
    shortcut = x
    y = QuantConv2D(
        x.shape[-1],
        3,
        padding="same",
        activation="relu",
        use_bias=False,
        kernel_initializer="glorot_normal",
        input_quantizer=quantizers.SteSign(clip_value=1.25),
        kernel_quantizer=quantizers.SteSign(clip_value=1.25),
        kernel_constraint=constraints.WeightClip(clip_value=1.25),
        pad_values=1.0,
        name=f"{prefix}_binary_conv",
    )(x)
    y = _bn(y, f"{prefix}_bn")
    return keras.layers.Add(name=f"{prefix}_add")([y, shortcut])


def _transition_block(x: Any, filters: int, strides: int, prefix: str) -> Any:
    x = keras.layers.Activation("relu", name=f"{prefix}_relu")(x)
    x = keras.layers.MaxPool2D(pool_size=strides, strides=1, name=f"{prefix}_max_pool")(
        x
    )
    x = keras.layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same",
        depthwise_initializer=BlurPool(),
        use_bias=False,
        trainable=False,
        name=f"{prefix}_blur_pool",
    )(x)
    x = keras.layers.Conv2D(
        filters,
        1,
        kernel_initializer="glorot_normal",
        use_bias=False,
        name=f"{prefix}_conv",
    )(x)
    return _bn(x, f"{prefix}_bn")


def _body(blocks: Sequence[int], filters: Sequence[int]):
    def body(inputs: Any, include_top: bool, num_classes: int) -> Any:
        x = _stem(inputs, filters[0])
        for section, (n_blocks, n_filters) in enumerate(
            zip(blocks, filters, strict=True), start=1
        ):
            for block in range(1, n_blocks + 1):
                if x.shape[-1] != n_filters:
                    strides = 2 if section > 1 and block == 1 else 1
                    x = _transition_block(
                        x, n_filters, strides, f"section{section}_transition"
                    )
                x = _residual_block(x, f"section{section}_block{block}")
        if not include_top:
            return x
        x = keras.layers.Activation("relu", name="head_relu")(x)
        return classifier_head(x, num_classes, "glorot_normal")

    return body


_DOC_ARGS = """
    Args:
        input_shape: ``(height, width, channels)``; default ``(224, 224, 3)``.
        input_tensor: Optional Keras tensor to use as the model's input.
        num_classes: Number of classes of the classifier head.
        include_top: Whether to add the classifier head (ReLU, global average
            pooling, dense, softmax).
        weights: ``None`` (random initialisation) or the path of a local
            weights file: Keras 3 (``model.load_weights``) or a Larq Zoo /
            tf-keras ``.h5`` (:func:`bnncore.zoo.load_larq_weights`).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument or an input too small for the model.
"""


def QuickNet(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """QuickNet: sections of 4, 4, 4, 4 binary blocks with 64, 128, 256, 512
    channels. Larq Zoo reports 63.3 % top-1 on ImageNet."""
    return build(
        "QuickNet",
        _body((4, 4, 4, 4), (64, 128, 256, 512)),
        model_name="quicknet",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )


def QuickNetSmall(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """QuickNetSmall: sections of 4, 4, 4, 4 binary blocks with 32, 64, 256, 512
    channels. Larq Zoo reports 59.4 % top-1 on ImageNet."""
    return build(
        "QuickNetSmall",
        _body((4, 4, 4, 4), (32, 64, 256, 512)),
        model_name="quicknet_small",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )


def QuickNetLarge(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """QuickNetLarge: sections of 6, 8, 12, 6 binary blocks with 64, 128, 256,
    512 channels. Larq Zoo reports 66.0 % top-1 on ImageNet."""
    return build(
        "QuickNetLarge",
        _body((6, 8, 12, 6), (64, 128, 256, 512)),
        model_name="quicknet_large",
        input_shape=input_shape,
        input_tensor=input_tensor,
        num_classes=num_classes,
        include_top=include_top,
        weights=weights,
    )


for _fn in (QuickNet, QuickNetSmall, QuickNetLarge):
    _fn.__doc__ = (_fn.__doc__ or "") + "\n" + _DOC_ARGS
