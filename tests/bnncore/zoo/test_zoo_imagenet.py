"""``preprocess_input`` and ``decode_predictions`` against Larq Zoo's own.

Oracles: Larq Zoo 2.4's functions run in the peer environment on the same
inputs (``fixtures/larq_preprocessed.npz``, ``fixtures/larq_decoded.json``,
written by ``fixtures/make_larq_fixtures.py``), the MD5 that Keras pins for
its ``imagenet_class_index.json``, and a NumPy restatement of the crop and
normalisation.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import numpy as np
import pytest
import tensorflow as tf
from larq_h5 import FIXTURES

from bnncore import zoo

# keras/src/applications/imagenet_utils.py and tf-keras pin this hash for the
# class index they download.
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def test_the_shipped_class_index_is_keras_file_byte_for_byte():
    data = resources.files("bnncore.zoo").joinpath(
        "resources", "imagenet_class_index.json"
    )
    assert hashlib.md5(data.read_bytes()).hexdigest() == KERAS_CLASS_INDEX_MD5
    classes = zoo.imagenet_classes()
    assert len(classes) == 1000
    assert classes[0] == ("n01440764", "tench")
    assert classes[999] == ("n15075141", "toilet_tissue")
    assert len({wnid for wnid, _ in classes}) == 1000
    # ImageNet's class order is the sorted order of the WordNet ids.
    assert [wnid for wnid, _ in classes] == sorted(wnid for wnid, _ in classes)


@pytest.mark.parametrize("top", [1, 5, 1000])
def test_decode_predictions_equals_larq_zoo(top):
    preds = np.load(FIXTURES / "larq_decoded_preds.npy")
    with open(FIXTURES / "larq_decoded.json") as f:
        expected = json.load(f)[str(top)]
    decoded = zoo.decode_predictions(preds, top=top)
    assert len(decoded) == len(expected) == len(preds)
    classes = zoo.imagenet_classes()
    for pred, row, want in zip(preds, decoded, expected, strict=True):
        # The same scores in the same order, taken from preds.
        assert [float(s) for _, _, s in row] == [s for _, _, s in want]
        # The same classes wherever the score is not tied; tied classes in
        # class order (Larq's order of ties is NumPy 1.26's unstable sort).
        for score in {s for _, _, s in want}:
            ours = [(w, n) for w, n, s in row if float(s) == score]
            larq = [(w, n) for w, n, s in want if s == score]
            if len(larq) == 1:
                assert ours == larq
            else:
                assert len(ours) == len(larq)
                assert ours == sorted(ours, key=classes.index)
                if len(ours) == np.sum(pred == np.float32(score)):  # all of them
                    assert sorted(ours) == sorted(larq)


def test_decode_predictions_breaks_ties_by_class_index():
    preds = np.zeros((1, 1000), dtype="float32")
    preds[0, [900, 8, 7, 400]] = [1.0, 1.0, 1.0, 0.5]
    (row,) = zoo.decode_predictions(preds, top=5)
    classes = zoo.imagenet_classes()
    assert [classes.index((w, n)) for w, n, _ in row] == [7, 8, 900, 400, 0]


def test_decode_predictions_takes_scores_from_preds_and_sorts_them():
    preds = np.zeros((2, 1000), dtype="float32")
    preds[0, [3, 386, 999]] = [0.2, 0.7, 0.1]
    preds[1, 1] = 1.0
    first, second = zoo.decode_predictions(preds, top=3)
    assert first == [
        ("n02504458", "African_elephant", np.float32(0.7)),
        ("n01491361", "tiger_shark", np.float32(0.2)),
        ("n15075141", "toilet_tissue", np.float32(0.1)),
    ]
    assert second[0] == ("n01443537", "goldfish", np.float32(1.0))
    assert len(zoo.decode_predictions(preds, top=5000)[0]) == 1000


@pytest.mark.parametrize(
    "preds,top,match",
    [
        (np.zeros((1000,)), 5, r"shape \(samples, 1000\)\. Received shape: \(1000,\)"),
        (np.zeros((2, 10)), 5, r"Received shape: \(2, 10\)"),
        (np.zeros((1, 1000)), 0, r"top to be a positive integer\. Received: top=0"),
        (np.zeros((1, 1000)), 2.5, r"Received: top=2\.5"),
        (np.zeros((1, 1000)), True, r"Received: top=True"),
    ],
    ids=["1d", "10-classes", "top-0", "top-float", "top-bool"],
)
def test_decode_predictions_refuses_bad_input(preds, top, match):
    with pytest.raises(ValueError, match=match):
        zoo.decode_predictions(preds, top=top)


CASES = ["uint8_120x160", "float32_70x50", "float64_40x33", "uint8_256x200"]


@pytest.mark.parametrize("case", CASES)
def test_preprocess_input_equals_larq_zoo(case):
    data = np.load(FIXTURES / "larq_preprocessed.npz")
    image = data[f"{case}_in"]
    result = zoo.preprocess_input(image)
    assert isinstance(result, np.ndarray)
    assert result.shape == (224, 224, 3)
    assert str(result.dtype) == str(data[f"{case}_dtype"]) == "float32"
    # The fixture holds every 4th row and column and the per-channel sums.
    np.testing.assert_allclose(result[::4, ::4], data[f"{case}_out"], atol=1e-4)
    np.testing.assert_allclose(
        result.astype("float64").sum(axis=(0, 1)), data[f"{case}_sum"], atol=0.05
    )


def test_preprocess_input_crops_the_centre_and_normalises():
    # An image that is constant per channel survives cropping and bicubic
    # resizing unchanged, so only the normalisation remains.
    rgb = np.array([10.0, 120.0, 250.0], dtype="float32")
    image = np.broadcast_to(rgb, (300, 400, 3)).copy()
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    np.testing.assert_allclose(
        zoo.preprocess_input(image), np.broadcast_to((rgb - mean) / std, (224, 224, 3)),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    # Outside the centre crop (7/8 of the shorter side, centred) nothing counts:
    # crop = 262, rows 19..280, columns 69..330.
    marked = image.copy()
    marked[:19] = marked[281:] = 0.0
    marked[:, :69] = marked[:, 331:] = 0.0
    np.testing.assert_array_equal(
        zoo.preprocess_input(marked), zoo.preprocess_input(image)
    )
    marked[19, 69] = 0.0  # the crop's first pixel does count
    assert not np.array_equal(zoo.preprocess_input(marked), zoo.preprocess_input(image))


def test_preprocess_input_keeps_tensors_tensors():
    image = np.random.default_rng(0).uniform(0, 255, (50, 60, 3)).astype("float32")
    result = zoo.preprocess_input(tf.constant(image))
    assert isinstance(result, tf.Tensor)
    np.testing.assert_array_equal(result.numpy(), zoo.preprocess_input(image))


@pytest.mark.parametrize(
    "shape,match",
    [
        (
            (2, 224, 224, 3),
            r"one image of shape \(height, width, 3\).*\(2, 224, 224, 3\)",
        ),
        ((224, 224), r"Received shape: \(224, 224\)"),
        ((224, 224, 4), r"3 \(RGB\) channels\. Received shape: \(224, 224, 4\)"),
        ((1, 5, 3), r"too small.*\(1, 5, 3\)"),
    ],
    ids=["batch", "2d", "rgba", "tiny"],
)
def test_preprocess_input_refuses_bad_images(shape, match):
    with pytest.raises(ValueError, match=match):
        zoo.preprocess_input(np.zeros(shape, dtype="uint8"))


def test_larq_zoo_namespaces_are_all_here():
    with open(FIXTURES / "larq_namespaces.json") as f:
        larq = json.load(f)
    assert sorted(zoo.sota.__all__) == larq["sota"]
    assert sorted(zoo.literature.__all__) == larq["literature"]
    for namespace in ("sota", "literature"):
        for name in larq[namespace]:
            assert getattr(getattr(zoo, namespace), name) is zoo.get(name)
    # Larq Zoo's top-level names that bnncore.zoo has; the others are its
    # training machinery (docs/zoo.md names them).
    assert set(larq["top_level"]) - set(zoo.__all__) == {"datasets"}
