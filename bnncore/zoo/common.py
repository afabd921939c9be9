"""What every zoo model shares: argument checks, the input tensor, weight loading.

Each architecture module writes only its body (input tensor → output tensor);
:func:`build` validates the public arguments, creates the input, runs the body
and loads a local weights file. Nothing is ever downloaded.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras

from bnncore.zoo.larq_weights import is_larq_weights_file, load_larq_weights

__all__ = ["DEFAULT_SIZE", "INPUT_NAME", "Body", "build", "softmax"]

DEFAULT_SIZE = 224
"""Default input resolution (ImageNet): ``(224, 224, 3)``."""

INPUT_NAME = "input"
"""Name of the input layer a zoo model creates (an ``input_tensor`` keeps its own).

Every other layer of a zoo model is named explicitly too (``"stem_conv"``,
``"section2_block3_binary_conv"``, ``"logits"``, ``"predictions"``, ...), so
layer and weight names are a pure function of the architecture and its
arguments: the same model built twice, in one process or two, has the same
names, and a model built with ``include_top=False`` names its layers like the
corresponding layers of the full model.
"""

Body = Callable[[Any, bool, int], Any]
"""``body(inputs, include_top, num_classes) -> outputs``."""


def _check_input_shape(
    name: str, input_shape: Any, include_top: bool
) -> tuple[int | None, int | None, int] | None:
    if input_shape is None:
        return None
    if not isinstance(input_shape, Sequence) or isinstance(input_shape, str):
        raise ValueError(
            f"{name}: expected input_shape to be None or a tuple "
            f"(height, width, channels). Received: input_shape={input_shape!r}"
        )
    shape = tuple(input_shape)
    valid_dim = [
        d is None
        or (isinstance(d, numbers.Integral) and not isinstance(d, bool) and int(d) > 0)
        for d in shape
    ]
    if len(shape) != 3 or not all(valid_dim) or shape[2] is None:
        raise ValueError(
            f"{name}: expected input_shape to be (height, width, channels) with "
            "positive integers (height and width may be None when "
            f"include_top=False). Received: input_shape={input_shape!r}"
        )
    if include_top and (shape[0] is None or shape[1] is None):
        raise ValueError(
            f"{name}: with include_top=True the input height and width must be "
            f"known. Received: input_shape={input_shape!r}; pass static sizes or "
            "include_top=False."
        )
    return tuple(None if d is None else int(d) for d in shape)  # type: ignore[return-value]


def _check_weights(name: str, weights: Any) -> str | None:
    if weights is None:
        return None
    if not isinstance(weights, str | os.PathLike):
        raise ValueError(
            f"{name}: expected weights to be None or the path of a local weights "
            f"file. Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        hint = (
            " Larq Zoo's 'imagenet' weights are files of its GitHub releases "
            "(e.g. quicknet_weights.h5): download one yourself and pass its path."
            if path == "imagenet"
            else ""
        )
        raise ValueError(
            f"{name}: weights={path!r} is not an existing file. Expected None "
            "(random initialisation) or the path of a local weights file "
            "(.weights.h5 or .keras, or a Larq Zoo / tf-keras .h5); bnncore "
            f"never downloads weights.{hint}"
        )
    return path


def _image_input(
    name: str,
    input_shape: tuple[int | None, int | None, int] | None,
    input_tensor: Any,
    include_top: bool,
) -> Any:
    if input_tensor is not None:
        if not isinstance(input_tensor, keras.KerasTensor):
            raise ValueError(
                f"{name}: expected input_tensor to be None or a Keras tensor "
                f"(e.g. from keras.Input). Received: input_tensor={input_tensor!r}"
            )
        if len(input_tensor.shape) != 4:
            raise ValueError(
                f"{name}: expected input_tensor of rank 4 (batch, height, width, "
                f"channels). Received shape: {tuple(input_tensor.shape)}"
            )
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tensor_shape != input_shape:
            raise ValueError(
                f"{name}: input_shape={input_shape!r} disagrees with the shape of "
                f"input_tensor {tensor_shape!r}; pass one or make them equal."
            )
        _check_input_shape(name, tensor_shape, include_top)
        return input_tensor
    if input_shape is None:
        input_shape = (DEFAULT_SIZE, DEFAULT_SIZE, 3)
    return keras.Input(shape=input_shape, name=INPUT_NAME)


def build(
    name: str,
    body: Body,
    *,
    model_name: str,
    input_shape: Sequence[int | None] | None,
    input_tensor: Any,
    num_classes: int,
    include_top: bool,
    weights: str | os.PathLike[str] | None,
) -> keras.Model:
    """Checks the public arguments, builds ``body`` and loads ``weights``.

    Args:
        name: The public name of the architecture (used in error messages).
        model_name: The Keras model's ``name`` (Larq Zoo's snake_case name).
        body: ``body(inputs, include_top, num_classes) -> outputs``.
        input_shape: ``(height, width, channels)``; ``None`` means
            ``(224, 224, 3)`` (or the shape of ``input_tensor``).
        input_tensor: A Keras tensor to use as the model's input, or ``None``.
        num_classes: Number of classes of the classifier head (positive int).
        include_top: Whether to add the classifier head.
        weights: ``None`` or the path of a local weights file: a Larq Zoo /
            tf-keras ``.h5`` (loaded with :func:`load_larq_weights`), else
            anything ``model.load_weights`` reads.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: on a bad argument, naming it, the value received and what is
            allowed; or when the input is too small for the architecture.
    """
    if not isinstance(include_top, bool):
        raise ValueError(
            f"{name}: expected include_top to be True or False. "
            f"Received: include_top={include_top!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise ValueError(
            f"{name}: expected num_classes to be a positive integer. "
            f"Received: num_classes={num_classes!r}"
        )
    if num_classes < 1:
        raise ValueError(
            f"{name}: expected num_classes to be a positive integer. "
            f"Received: num_classes={num_classes!r}"
        )
    shape = _check_input_shape(name, input_shape, include_top)
    path = _check_weights(name, weights)
    inputs = _image_input(name, shape, input_tensor, include_top)
    try:
        outputs = body(inputs, include_top, num_classes)
    except ValueError as error:
        raise ValueError(
            f"{name}: could not build the architecture for input shape "
            f"{tuple(inputs.shape[1:])}; it is probably too small for the model's "
            f"downsampling. Keras said: {error}"
        ) from error
    model = keras.Model(inputs=inputs, outputs=outputs, name=model_name)
    if path is not None:
        if is_larq_weights_file(path):
            load_larq_weights(model, path)
        else:
            model.load_weights(path)
    return model


def classifier_head(
    x: Any, num_classes: int, kernel_initializer: str = "glorot_uniform"
) -> Any:
    """Global average pooling, the ``"logits"`` dense layer and the softmax."""
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = keras.layers.Dense(
        num_classes, kernel_initializer=kernel_initializer, name="logits"
    )(x)
    return softmax(x)


def softmax(x: Any) -> Any:
    """The classifier's softmax (layer ``"predictions"``), float32 under mixed
    precision."""
    return keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
