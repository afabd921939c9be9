"""``preprocess_input`` traced: in ``tf.data.Dataset.map`` (Larq Zoo's tutorial
maps it over ImageNet) and in a ``tf.function`` whose image sizes are unknown
until run time.

Oracle: Larq Zoo 2.4's own outputs on the same images
(``fixtures/larq_preprocessed.npz``, see test_zoo_imagenet.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from larq_h5 import FIXTURES

from bnncore import zoo

CASES = ["uint8_120x160", "float32_70x50", "float64_40x33", "uint8_256x200"]


def _check_against_larq(result: np.ndarray, data, case: str) -> None:
    assert result.shape == (224, 224, 3)
    assert result.dtype == np.float32
    # The fixture holds every 4th row and column and the per-channel sums.
    np.testing.assert_allclose(result[::4, ::4], data[f"{case}_out"], atol=1e-4)
    np.testing.assert_allclose(
        result.astype("float64").sum(axis=(0, 1)), data[f"{case}_sum"], atol=0.05
    )


@pytest.mark.parametrize("case", CASES)
def test_preprocess_input_in_dataset_map_equals_larq_zoo(case: str) -> None:
    data = np.load(FIXTURES / "larq_preprocessed.npz")
    image = data[f"{case}_in"]
    dataset = tf.data.Dataset.from_tensors({"image": image, "label": 3}).map(
        lambda item: (zoo.preprocess_input(item["image"]), item["label"])
    )
    (result, label), *rest = list(dataset.as_numpy_iterator())
    assert rest == [] and label == 3
    _check_against_larq(result, data, case)


@pytest.mark.parametrize("case", CASES)
def test_preprocess_input_with_unknown_sizes_equals_larq_zoo(case: str) -> None:
    data = np.load(FIXTURES / "larq_preprocessed.npz")
    image = data[f"{case}_in"]
    traced = tf.function(
        zoo.preprocess_input,
        input_signature=[tf.TensorSpec((None, None, 3), image.dtype)],
    )
    _check_against_larq(traced(image).numpy(), data, case)


def test_preprocess_input_traced_refuses_a_too_small_image_when_it_runs() -> None:
    traced = tf.function(
        zoo.preprocess_input,
        input_signature=[tf.TensorSpec((None, None, 3), tf.uint8)],
    )
    assert traced(np.zeros((2, 5, 3), np.uint8)).shape == (224, 224, 3)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"shorter side must be at least 2 pixels"
    ):
        traced(np.zeros((1, 5, 3), np.uint8))
