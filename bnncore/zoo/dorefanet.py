"""DoReFa-Net with 1-bit weights and 2-bit activations (Zhou et al., 2016; Larq Zoo).

"DoReFa-Net: Training Low Bitwidth Convolutional Neural Networks with Low
Bitwidth Gradients", arXiv:1606.06160. An AlexNet whose layers after the
first quantize their inputs with the 2-bit DoReFa quantizer and their kernels
with :class:`MagnitudeAwareSignUnclipped` (sign times the layer's mean absolute
weight, identity gradient, no weight clipping). Each quantized layer is
followed by a BatchNorm without scale (momentum 0.9, epsilon 1e-4).

* first layer: float 12×12 stride-4 "valid" conv with bias;
* quantized convs of 256 (5×5), 384, 384, 256 (3×3) channels, with 3×3
  stride-2 max-pools after the 1st, 2nd ("same") and 4th ("valid");
* head: flatten → two quantized dense 4096 + BN → clip to [0, 1] → float
  dense with bias → softmax.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import keras
from keras import ops

from bnncore import math as bmath
from bnncore import quantizers
from bnncore.layers import QuantConv2D, QuantDense
from bnncore.zoo.common import build, softmax

__all__ = ["DoReFaNet", "MagnitudeAwareSignUnclipped"]


@keras.saving.register_keras_serializable(package="bnncore.zoo")
class MagnitudeAwareSignUnclipped(quantizers.Quantizer):
    r"""Sign scaled by the mean absolute weight of the layer, identity gradient.

    Forward: :math:`q(w) = \text{mean}(|w|) \cdot \text{sign}(w)` with one scale
    for the whole tensor; backward: :math:`dq/dw = 1` (the scale is treated as
    a constant). One bit per weight.
    """

    precision = 1

    def call(self, inputs: Any) -> Any:
        x = ops.convert_to_tensor(inputs)
        scale = ops.stop_gradient(ops.mean(ops.abs(x)))
        quantized = bmath.sign(x) * scale
        return x + ops.stop_gradient(quantized - x)


class _DropStarvationWarning(logging.Filter):
    # bnncore warns when a binary kernel has no constraint, because a clipped
    # pseudo-gradient can starve latent weights. This kernel quantizer's
    # gradient is the identity, so nothing starves: the warning does not apply.
    def filter(self, record: logging.LogRecord) -> bool:
        return "may starve" not in record.getMessage()


@contextlib.contextmanager
def _no_starvation_warning() -> Iterator[None]:
    logger = logging.getLogger("bnncore")
    drop = _DropStarvationWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _bn(x: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(
        momentum=0.9, scale=False, epsilon=1e-4, name=name
    )(x)


def _quantized(layer: type, *args: Any, **kwargs: Any) -> Any:
    return layer(
        *args,
        use_bias=False,
        input_quantizer=quantizers.DoReFa(k_bit=2),
        kernel_quantizer=MagnitudeAwareSignUnclipped(),
        **kwargs,
    )


def _conv(x: Any, filters: int, size: int, name: str, pool: str | None = None) -> Any:
    x = _quantized(QuantConv2D, filters, size, padding="same", name=name)(x)
    x = _bn(x, f"{name}_bn")
    if pool is not None:
        x = keras.layers.MaxPool2D(
            pool_size=3, strides=2, padding=pool, name=f"{name}_pool"
        )(x)
    return x


def _body(inputs: Any, include_top: bool, num_classes: int) -> Any:
    x = keras.layers.Conv2D(96, 12, strides=4, padding="valid", name="conv1")(inputs)
    x = _conv(x, 256, 5, "quant_conv2", pool="same")
    x = _conv(x, 384, 3, "quant_conv3", pool="same")
    x = _conv(x, 384, 3, "quant_conv4")
    x = _conv(x, 256, 3, "quant_conv5", pool="valid")
    if not include_top:
        return x
    x = keras.layers.Flatten(name="head_flatten")(x)
    x = _bn(_quantized(QuantDense, 4096, name="quant_dense6")(x), "quant_dense6_bn")
    x = _bn(_quantized(QuantDense, 4096, name="quant_dense7")(x), "quant_dense7_bn")
    x = keras.layers.ReLU(max_value=1.0, name="clip")(x)  # clip to [0, 1]
    x = keras.layers.Dense(num_classes, name="logits")(x)
    return softmax(x)


def DoReFaNet(  # noqa: N802 (Keras applications naming)
    input_shape: Sequence[int | None] | None = None,
    input_tensor: Any = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """DoReFa-Net: an AlexNet with 1-bit weights and 2-bit activations.

    Args:
        input_shape: ``(height, width, channels)``; default ``(224, 224, 3)``.
        input_tensor: Optional Keras tensor to use as the model's input.
        num_classes: Number of classes of the classifier head.
        include_top: Whether to add the classifier head (flatten, two quantized
            dense layers with BatchNorm, clip, dense, softmax).
        weights: ``None`` (random initialisation) or the path of a local
            weights file: Keras 3 (``model.load_weights``) or a Larq Zoo /
            tf-keras ``.h5`` (:func:`bnncore.zoo.load_larq_weights`).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument or an input too small for the model.
    """
    with _no_starvation_warning():
        return build(
            "DoReFaNet",
            _body,
            model_name="dorefanet",
            input_shape=input_shape,
            input_tensor=input_tensor,
            num_classes=num_classes,
            include_top=include_top,
            weights=weights,
        )
