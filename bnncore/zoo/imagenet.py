"""Larq Zoo's ImageNet helpers: ``preprocess_input`` and ``decode_predictions``.

Both behave like ``larq_zoo.preprocess_input`` and
``larq_zoo.decode_predictions`` (Larq Zoo 2.4). The ImageNet class index ships
with bnncore (``bnncore/zoo/resources/imagenet_class_index.json``, byte for byte the
file Keras downloads; see ``resources/README.md`` for its provenance), so nothing is
downloaded.
"""

from __future__ import annotations

import functools
import json
import numbers
from importlib import resources
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = [
    "CROP_PADDING",
    "IMAGE_SIZE",
    "MEAN_RGB",
    "STDDEV_RGB",
    "decode_predictions",
    "imagenet_classes",
    "preprocess_input",
]

IMAGE_SIZE = 224
"""Side of the square image :func:`preprocess_input` returns."""

CROP_PADDING = 32
"""The centre crop keeps ``IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING)`` of the
shorter side (7/8)."""

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
"""Per-channel mean subtracted by :func:`preprocess_input` (RGB, 0-255 scale)."""

STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
"""Per-channel standard deviation divided by :func:`preprocess_input`."""

NUM_CLASSES = 1000


@functools.cache
def _class_index() -> tuple[tuple[str, str], ...]:
    text = (
        resources.files("bnncore.zoo")
        .joinpath("resources", "imagenet_class_index.json")
        .read_text(encoding="utf8")
    )
    index = json.loads(text)
    classes = tuple(tuple(index[str(i)]) for i in range(NUM_CLASSES))
    if len(index) != NUM_CLASSES or any(len(c) != 2 for c in classes):
        raise RuntimeError("bnncore's ImageNet class index is damaged")
    return classes


def imagenet_classes() -> list[tuple[str, str]]:
    """The 1000 ImageNet classes in model output order: ``(wnid, name)``,
    e.g. ``("n01440764", "tench")``, as Keras's ``imagenet_class_index.json``."""
    return list(_class_index())


def decode_predictions(preds: Any, top: int = 5) -> list[list[tuple[str, str, Any]]]:
    """The ``top`` classes of each row of ImageNet predictions.

    As ``larq_zoo.decode_predictions`` (Keras's ImageNet decoder): for each
    sample, the ``top`` highest scores, highest first, as
    ``(wnid, class_name, score)`` with the score taken from ``preds``. Equal
    scores come in class order (in Keras, in the order NumPy's unstable sort
    leaves them, which depends on the NumPy version).

    Args:
        preds: Array-like of shape ``(samples, 1000)``.
        top: How many classes per sample, a positive integer (more than 1000
            gives all 1000).

    Returns:
        One list of tuples per sample.

    Raises:
        ValueError: if ``preds`` is not of shape ``(samples, 1000)`` or ``top``
            is not a positive integer.

    Example:
        >>> decode_predictions(model.predict(x), top=3)[0]
        [('n02123045', 'tabby', 0.61), ('n02123159', 'tiger_cat', 0.2), ...]
    """
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:
        raise ValueError(
            f"decode_predictions: expected top to be a positive integer. "
            f"Received: top={top!r}"
        )
    array = np.asarray(preds)
    if array.ndim != 2 or array.shape[1] != NUM_CLASSES:
        raise ValueError(
            "decode_predictions: expected preds to be a batch of ImageNet "
            f"predictions of shape (samples, {NUM_CLASSES}). Received shape: "
            f"{array.shape}"
        )
    classes = _class_index()
    results = []
    for row in array:
        # Highest score first; equal scores by class index. (Keras leaves the
        # order of ties to NumPy's unstable sort, which differs between NumPy
        # versions and CPUs.)
        order = np.argsort(-row.astype("float64"), kind="stable")
        results.append([(*classes[i], row[i]) for i in order[: int(top)]])
    return results


def preprocess_input(image: Any) -> Any:
    """Larq Zoo's ImageNet evaluation preprocessing of one image.

    Centre crop of 7/8 of the shorter side (``224 / (224 + 32)``, rounded
    down; the offsets round up), bicubic resize to 224×224 (TensorFlow's
    legacy ``resize_bicubic``: no corner alignment, no half-pixel centres),
    then per channel ``(x - mean) / std`` with ImageNet's mean
    ``(0.485, 0.456, 0.406) * 255`` and std ``(0.229, 0.224, 0.225) * 255``.
    The input is an RGB image with values in 0-255.

    Args:
        image: One image, ``(height, width, 3)``: a NumPy array (any real
            dtype) or a TensorFlow tensor, eager or traced (so it can be
            given to ``tf.data.Dataset.map``, as Larq Zoo's tutorial does).
            A batch is not accepted, as in Larq Zoo: map this function over
            the images.

    Returns:
        A float32 ``(224, 224, 3)`` array (NumPy for a NumPy input, else a
        TensorFlow tensor).

    Raises:
        ValueError: if the image is not ``(height, width, 3)`` with a shorter
            side of at least 2 pixels (for a traced image whose sizes are not
            known until run time, the size check raises TensorFlow's
            ``InvalidArgumentError`` with the same message when it runs).
    """
    tensor = tf.convert_to_tensor(image)
    shape = tuple(tensor.shape)
    if len(shape) != 3:
        raise ValueError(
            "preprocess_input: expected one image of shape (height, width, 3), "
            f"as Larq Zoo's preprocess_input. Received shape: {shape}"
        )
    if shape[2] != 3:
        raise ValueError(
            f"preprocess_input: expected 3 (RGB) channels. Received shape: {shape}"
        )
    if not (tensor.dtype.is_integer or tensor.dtype.is_floating):
        raise ValueError(
            "preprocess_input: expected an image of real numbers. Received "
            f"dtype: {tensor.dtype.name}"
        )
    too_small = (
        "preprocess_input: the image is too small for the centre crop "
        "(the shorter side must be at least 2 pixels). Received shape: "
    )
    height, width = tf.shape(tensor)[0], tf.shape(tensor)[1]
    if shape[0] is not None and shape[1] is not None:
        if min(shape[0], shape[1]) < 2:
            raise ValueError(f"{too_small}{shape}")
    else:  # traced (tf.data.Dataset.map, tf.function): sizes known at run time
        check = tf.debugging.assert_greater_equal(
            tf.minimum(height, width), 2, message=f"{too_small}{shape}"
        )
        with tf.control_dependencies([check]):
            tensor = tf.identity(tensor)
    ratio = IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING)
    crop = tf.cast(ratio * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    top = (height - crop + 1) // 2
    left = (width - crop + 1) // 2
    cropped = tensor[top : top + crop, left : left + crop, :]
    if cropped.dtype in (tf.uint32, tf.uint64):  # the only ones the op lacks
        cropped = tf.cast(cropped, tf.float64)
    resized = tf.raw_ops.ResizeBicubic(
        images=cropped[None],
        size=[IMAGE_SIZE, IMAGE_SIZE],
        align_corners=False,
        half_pixel_centers=False,
    )[0]
    resized = tf.cast(resized, tf.float32)
    result = (resized - tf.constant(MEAN_RGB, tf.float32)) / tf.constant(
        STDDEV_RGB, tf.float32
    )
    if isinstance(image, np.ndarray):
        return result.numpy()
    return result
