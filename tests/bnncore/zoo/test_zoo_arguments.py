"""The zoo's public arguments and registry: what is accepted, what is refused.

Argument errors are raised before any layer is built, so those tests are
cheap; the few tests that build use QuickNetSmall at 32×32 (or without top)
and XNOR-Net without top. The models built without top are also compared with
the full 224×224 builds of ``zoo_builds`` (shared with the published-figure
tests): the layers they keep have the same names.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import keras
import numpy as np
import pytest
import zoo_builds

import bnncore
from bnncore import zoo

NAMES = zoo.names()


def test_bnncore_exposes_the_zoo():
    assert bnncore.zoo is zoo
    assert zoo.get("QuickNet") is zoo.QuickNet


@pytest.mark.parametrize("name", NAMES)
def test_every_constructor_has_the_documented_signature(name):
    constructor = zoo.get(name)
    assert constructor.__name__ == name
    params = inspect.signature(constructor).parameters
    assert {p: v.default for p, v in params.items()} == {
        "input_shape": None,
        "input_tensor": None,
        "num_classes": 1000,
        "include_top": True,
        "weights": None,
    }
    assert "Args:" in (constructor.__doc__ or "")


@pytest.mark.parametrize("name", NAMES)
def test_every_constructor_checks_its_arguments(name):
    with pytest.raises(ValueError, match=rf"{name}: .*num_classes=0"):
        zoo.get(name)(num_classes=0)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"num_classes": 0}, r"num_classes=0"),
        ({"num_classes": -3}, r"num_classes=-3"),
        ({"num_classes": True}, r"num_classes=True"),
        ({"num_classes": 2.5}, r"num_classes=2\.5"),
        ({"num_classes": "10"}, r"num_classes='10'"),
        ({"include_top": "yes"}, r"include_top='yes'"),
        ({"include_top": 1}, r"include_top=1"),
        ({"input_shape": (32, 32)}, r"input_shape=\(32, 32\)"),
        ({"input_shape": (0, 32, 3)}, r"input_shape=\(0, 32, 3\)"),
        ({"input_shape": (32, 32, None)}, r"input_shape=\(32, 32, None\)"),
        ({"input_shape": (32.0, 32, 3)}, r"input_shape=\(32\.0, 32, 3\)"),
        ({"input_shape": "32x32"}, r"input_shape='32x32'"),
        ({"input_shape": (None, None, 3)}, r"include_top=True .* must be known"),
        ({"weights": "imagenet"}, r"weights='imagenet' is not an existing file"),
        ({"weights": 3}, r"weights=3"),
        ({"input_tensor": np.zeros((1, 32, 32, 3))}, r"input_tensor="),
    ],
)
def test_bad_arguments_name_the_field_and_value(kwargs, expected):
    with pytest.raises(ValueError, match=expected) as info:
        zoo.QuickNetSmall(**kwargs)
    assert str(info.value).startswith("QuickNetSmall: ")


def test_a_missing_weights_file_is_refused_and_never_downloaded(tmp_path):
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(ValueError, match="never downloads"):
        zoo.QuickNet(weights=missing)


def test_input_tensor_must_be_rank_4_and_agree_with_input_shape():
    with pytest.raises(ValueError, match="rank 4"):
        zoo.QuickNetSmall(input_tensor=keras.Input((32, 3)))
    with pytest.raises(ValueError, match=r"disagrees .* \(32, 32, 3\)"):
        zoo.QuickNetSmall(
            input_tensor=keras.Input((32, 32, 3)), input_shape=(64, 64, 3)
        )


def _assert_named_like_the_full_model(model, name: str, last: str) -> None:
    """``model`` (built without top) is the full model's layers up to ``last``."""
    mine = zoo_builds.names(model)
    full = zoo_builds.measured(name).names
    kept = full.layers.index(last) + 1
    assert mine.layers == full.layers[:kept]
    assert len(full.layers) > kept  # the full model has a head
    assert mine.paths == full.paths[: len(mine.paths)]
    assert mine.file_names == full.file_names[: len(mine.file_names)]
    head = full.paths[len(mine.paths) :]
    assert head and {p.split("/")[0] for p in head}.isdisjoint(mine.layers)


def test_an_input_too_small_for_the_downsampling_is_a_clear_error():
    # XNOR-Net: ceil(n/4) after the stride-4 conv, three 3×3 stride-2 "valid"
    # pools, then a 6×6 "valid" conv: n = 216 gives 54 → 26 → 12 → 5 < 6.
    with pytest.raises(ValueError, match=r"XNORNet: .*\(216, 216, 3\).*too small"):
        zoo.XNORNet(input_shape=(216, 216, 3), include_top=False)
    # n = 217 gives 55 → 27 → 13 → 6, and the 6×6 conv leaves 1×1.
    model = zoo.XNORNet(input_shape=(217, 217, 3), include_top=False)
    assert model.output_shape == (None, 1, 1, 4096)
    _assert_named_like_the_full_model(model, "XNORNet", last="binary_conv6_bn")
    keras.backend.clear_session()


def test_without_top_the_model_returns_the_last_feature_map():
    # QuickNet downsamples by 2**5: 224 / 32 = 7; 512 channels in the last section.
    model = zoo.QuickNetSmall(include_top=False)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 7, 7, 512)
    _assert_named_like_the_full_model(
        model, "QuickNetSmall", last="section4_block4_add"
    )
    keras.backend.clear_session()


def test_variable_input_size_without_top():
    model = zoo.QuickNetSmall(input_shape=(None, None, 3), include_top=False)
    for size, expected in ((32, 1), (64, 2)):
        x = np.random.default_rng(size).normal(size=(1, size, size, 3))
        y = model(x.astype("float32"), training=False)
        assert tuple(y.shape) == (1, expected, expected, 512)
    _assert_named_like_the_full_model(
        model, "QuickNetSmall", last="section4_block4_add"
    )
    keras.backend.clear_session()


def test_input_tensor_becomes_the_model_input():
    tensor = keras.Input((32, 32, 3))
    # An agreeing input_shape may be any sequence of integers, NumPy's included.
    same_shape = [np.int64(32), 32, 3]
    model = zoo.QuickNetSmall(
        input_tensor=tensor, input_shape=same_shape, num_classes=5
    )
    assert model.inputs[0] is tensor
    assert model.output_shape == (None, 5)
    keras.backend.clear_session()


def test_weights_load_from_a_local_file(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    first = zoo.QuickNetSmall(input_shape=(32, 32, 3), num_classes=10)
    path = tmp_path / "quicknet_small.weights.h5"
    first.save_weights(path)
    expected = np.asarray(first(x, training=False))

    second = zoo.QuickNetSmall(
        input_shape=(32, 32, 3), num_classes=10, weights=Path(path)
    )
    # Built twice in one process: the same layer, variable and file names.
    assert zoo_builds.names(second) == zoo_builds.names(first)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    # Exact: the same eager TensorFlow ops on the same values, in this process.
    np.testing.assert_array_equal(np.asarray(second(x, training=False)), expected)
    keras.backend.clear_session()


def test_registry_lookup_and_errors():
    assert len(NAMES) == len(set(NAMES)) == 14
    assert [e.name for e in zoo.entries()] == NAMES
    for name in NAMES:
        assert zoo.entry(name).constructor is zoo.get(name)
        assert zoo.entry(name).params_rule in ("keras", "inference")
    with pytest.raises(ValueError, match=r"name='quicknet'.*QuickNet, "):
        zoo.get("quicknet")
    with pytest.raises(ValueError, match=r"name=None"):
        zoo.get(None)
