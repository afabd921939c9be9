"""Larq Zoo / tf-keras ``.h5`` weight files into bnncore.zoo's models.

Oracles: Larq's own outputs for the same weights (``fixtures/*.npz``, written
by real Larq Zoo in the peer environment: ``fixtures/make_larq_fixtures.py``),
and the layouts of Larq Zoo's files for every model (``larq_layouts.json``),
written here with h5py with a distinct value per array, so each variable shows
which array of the file it received.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from larq_h5 import FIXTURES, larq_layouts, weight_entries, write_larq_h5

from bnncore import zoo
from bnncore.zoo import alexnet, larq_weights, quicknet
from bnncore.zoo.common import build, softmax

LAYOUTS = larq_layouts()


# ---------------------------------------------------------------------------
# Small models of the real architectures, compared with Larq's outputs
# ---------------------------------------------------------------------------


def tiny_quicknet(weights=None) -> keras.Model:
    """QuickNet's code with 4, 8, 16, 32 channels (as the Larq fixture)."""
    return build(
        "QuickNet",
        quicknet._body((4, 4, 4, 4), (4, 8, 16, 32)),
        model_name="quicknet",
        input_shape=(64, 64, 3),
        input_tensor=None,
        num_classes=10,
        include_top=True,
        weights=weights,
    )


def _tiny_alexnet_body(inputs, include_top, num_classes):
    x = alexnet._conv(inputs, 8, 11, 4, pool=True, first=True, name="binary_conv1")
    x = alexnet._conv(x, 16, 5, pool=True, first=False, name="binary_conv2")
    x = alexnet._conv(x, 16, 3, pool=False, first=False, name="binary_conv3")
    x = alexnet._conv(x, 16, 3, pool=False, first=False, name="binary_conv4")
    x = alexnet._conv(x, 8, 3, pool=True, first=False, name="binary_conv5")
    x = keras.layers.Flatten(name="head_flatten")(x)
    x = alexnet._dense(x, 32, "binary_dense6")
    x = alexnet._dense(x, 32, "binary_dense7")
    x = alexnet._dense(x, num_classes, "binary_dense8")
    return softmax(x)


def tiny_alexnet(weights=None) -> keras.Model:
    """BinaryAlexNet's blocks at 8/16/16/16/8 filters and 32/32 units."""
    return build(
        "BinaryAlexNet",
        _tiny_alexnet_body,
        model_name="binary_alexnet",
        input_shape=(96, 96, 3),
        input_tensor=None,
        num_classes=10,
        include_top=True,
        weights=weights,
    )


def before_softmax(model: keras.Model, layer: str) -> keras.Model:
    return keras.Model(model.inputs, model.get_layer(layer).output)


def close(actual, expected):
    # Float tolerance (different TensorFlow versions and kernels), never bits.
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_quicknet_loads_a_larq_zoo_file_and_predicts_like_larq():
    data = np.load(FIXTURES / "quicknet_tiny.npz")
    model = tiny_quicknet(weights=FIXTURES / "quicknet_tiny.h5")
    assert (
        len(model.weights)
        == 113
        == len(zoo.larq_weights_layout(FIXTURES / "quicknet_tiny.h5"))
    )
    logits = before_softmax(model, "logits").predict(data["inputs"], verbose=0)
    close(logits, data["logits"])
    close(model.predict(data["inputs"], verbose=0), data["outputs"])


@pytest.mark.parametrize(
    "file", ["alexnet_tiny.h5", "alexnet_tiny_model.h5"], ids=["weights", "model"]
)
def test_binary_alexnet_loads_larq_zoo_1x1_conv_head_as_dense(file):
    data = np.load(FIXTURES / "alexnet_tiny.npz")
    model = tiny_alexnet()
    zoo.load_larq_weights(model, FIXTURES / file)
    layout = zoo.larq_weights_layout(FIXTURES / file)
    assert len(layout) == len(model.weights) == 32
    # The 1×1 conv kernels (1, 1, C, U) became dense kernels (C, U).
    heads = [w for w in layout if len(w.shape) == 4 and w.shape[:2] == (1, 1)]
    assert [w.shape for w in heads] == [(1, 1, 32, 32), (1, 1, 32, 32), (1, 1, 32, 10)]
    dense = model.get_layer("binary_dense6").kernel
    assert tuple(dense.shape) == (32, 32)
    logits = before_softmax(model, "binary_dense8_bn").predict(
        data["inputs"], verbose=0
    )
    close(logits, data["logits"])
    close(model.predict(data["inputs"], verbose=0), data["outputs"])


def test_meliusnet_group_convolutions_merge_into_a_grouped_conv2d():
    data = np.load(FIXTURES / "meliusnet_stem.npz")
    full = zoo.MeliusNet22(input_shape=(32, 32, 3))
    stem = before_softmax(full, "stem_max_pool")
    layout = zoo.larq_weights_layout(FIXTURES / "meliusnet_stem.h5")
    assert sum("groupconv_conv" in w.layer for w in layout) == 4 + 8
    zoo.load_larq_weights(stem, FIXTURES / "meliusnet_stem.h5")
    close(stem.predict(data["inputs"], verbose=0), data["outputs"])


def mnist_tutorial() -> keras.Model:
    """The BNN of Larq's MNIST tutorial in bnncore layers."""
    from bnncore.layers import QuantConv2D, QuantDense

    kwargs = {
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "use_bias": False,
    }
    bn = keras.layers.BatchNormalization
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            QuantConv2D(
                32, 3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                use_bias=False,
            ),
            keras.layers.MaxPooling2D(2),
            bn(scale=False),
            QuantConv2D(64, 3, **kwargs),
            keras.layers.MaxPooling2D(2),
            bn(scale=False),
            QuantConv2D(64, 3, **kwargs),
            bn(scale=False),
            keras.layers.Flatten(),
            QuantDense(64, **kwargs),
            bn(scale=False),
            QuantDense(10, **kwargs),
            bn(scale=False, name="last_bn"),
            keras.layers.Activation("softmax"),
        ]
    )  # fmt: skip


def test_a_larq_users_own_model_loads_too():
    data = np.load(FIXTURES / "mnist_bnn.npz")
    model = mnist_tutorial()
    zoo.load_larq_weights(model, FIXTURES / "mnist_bnn.h5")
    logits = before_softmax(model, "last_bn").predict(data["inputs"], verbose=0)
    close(logits, data["logits"])
    close(model.predict(data["inputs"], verbose=0), data["outputs"])


def test_name_lists_split_in_chunks_as_tf_keras_does_are_read(tmp_path):
    # tf-keras splits an attribute over 64 KiB into name0, name1, ...
    path = tmp_path / "chunked.h5"
    shutil.copy(FIXTURES / "quicknet_tiny.h5", path)
    with h5py.File(path, "a") as f:
        names = [_text(n) for n in f.attrs["layer_names"]]
        del f.attrs["layer_names"]
        for i, part in enumerate((names[:30], names[30:60], names[60:])):
            f.attrs[f"layer_names{i}"] = np.array(part, dtype=h5py.string_dtype())
    assert zoo.is_larq_weights_file(path)
    chunked = zoo.larq_weights_layout(path)
    assert chunked == zoo.larq_weights_layout(FIXTURES / "quicknet_tiny.h5")


# ---------------------------------------------------------------------------
# Every Larq Zoo model's file layout, by position
# ---------------------------------------------------------------------------

# One model of each architecture module, built at 64×64 where the weights do
# not depend on the input size; the models with dense layers over the
# flattened features only without their top (BinaryAlexNet's top is checked
# on Larq's outputs above). The other variants of a module (QuickNetSmall and
# QuickNetLarge, the other BinaryDenseNets, the other tops and notops) and
# XNORNet (62 M weights even without its top, at least 217×217) are left out
# for time; their layouts map one to one as well (same shapes and variable
# kinds at every position).
CASES = [
    ("QuickNet", 113),
    ("RealToBinaryNet", 151),
    ("BinaryDenseNet28", 141),
    ("MeliusNet22", 216),
    ("BinaryResNetE18", 106),
    ("BiRealNet", 102),
    ("BinaryAlexNet:notop", 20),
    ("DoReFaNet:notop", 18),
]


def _expected_values(layout, model):
    """What each model variable must hold: the ``i + 1`` fills of its arrays."""
    entries = weight_entries(layout)
    expected = []
    pos = 0
    for w in model.weights:
        shape = tuple(w.shape)
        *_, source = entries[pos]
        if source == shape:
            expected.append(np.full(shape, pos + 1.0))
            pos += 1
        else:  # a split group convolution: G arrays along the output axis
            groups = shape[-1] // source[-1]
            expected.append(
                np.concatenate(
                    [np.full(source, pos + 1.0 + g) for g in range(groups)], axis=-1
                )
            )
            pos += groups
    assert pos == len(entries)
    return expected


@pytest.mark.parametrize("key,arrays", CASES, ids=[c[0] for c in CASES])
def test_every_array_of_a_larq_zoo_file_lands_on_its_variable(tmp_path, key, arrays):
    name, _, notop = key.partition(":")
    layout = LAYOUTS[key]
    assert len(weight_entries(layout)) == arrays
    path = tmp_path / f"{name}.h5"
    write_larq_h5(path, layout, lambda i, shape: None)
    keras.backend.clear_session()
    model = zoo.get(name)(input_shape=(64, 64, 3), include_top=not notop, weights=path)
    expected = _expected_values(layout, model)
    for variable, want in zip(model.weights, expected, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(variable), want, err_msg=variable.path
        )


def test_every_larq_zoo_model_has_a_layout_and_the_counts_of_the_issue():
    assert {k.partition(":")[0] for k in LAYOUTS} == set(zoo.names())
    counts = {k: len(weight_entries(v)) for k, v in LAYOUTS.items()}
    assert counts["QuickNet"] == 113
    assert counts["BinaryAlexNet"] == 32


def test_the_full_model_h5_of_model_save_loads_from_model_weights(tmp_path):
    layout = LAYOUTS["QuickNet"]
    path = tmp_path / "quicknet_model.h5"
    write_larq_h5(path, layout, lambda i, shape: None, full_model=True)
    assert zoo.is_larq_weights_file(path)
    assert len(zoo.larq_weights_layout(path)) == 113


# ---------------------------------------------------------------------------
# Errors: clear, naming the first misfit, nothing half-written
# ---------------------------------------------------------------------------


def _weights(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]


def test_a_shape_mismatch_names_the_first_misfit_and_changes_nothing():
    # The file has 10 classes; this model 7.
    other = build(
        "QuickNet",
        quicknet._body((4, 4, 4, 4), (4, 8, 16, 32)),
        model_name="quicknet",
        input_shape=(64, 64, 3),
        input_tensor=None,
        num_classes=7,
        include_top=True,
        weights=None,
    )
    before = _weights(other)
    with pytest.raises(ValueError) as info:
        zoo.load_larq_weights(other, FIXTURES / "quicknet_tiny.h5")
    message = str(info.value)
    assert "file array 111" in message
    assert "quant_dense" in message  # Larq's layer name
    assert "(32, 10)" in message and "(32, 7)" in message
    assert "logits" in message  # bnncore's layer
    for a, b in zip(before, _weights(other), strict=True):
        np.testing.assert_array_equal(a, b)


def _copy(tmp_path: Path) -> Path:
    path = tmp_path / "copy.h5"
    shutil.copy(FIXTURES / "quicknet_tiny.h5", path)
    return path


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _layer_names(f: h5py.File) -> list[str]:
    return [_text(n) for n in f.attrs["layer_names"]]


def test_a_file_with_too_few_arrays_says_what_is_missing(tmp_path):
    path = _copy(tmp_path)
    with h5py.File(path, "a") as f:  # drop Larq's classifier layer
        names = _layer_names(f)
        f.attrs["layer_names"] = np.array(
            [n for n in names if n != "quant_dense"], dtype=h5py.string_dtype()
        )
    with pytest.raises(ValueError, match=r"has 111 arrays.*nothing left for.*logits"):
        zoo.load_larq_weights(tiny_quicknet(), path)


def test_a_file_with_arrays_left_over_names_the_first():
    model = build(
        "QuickNet",
        quicknet._body((4, 4, 4, 4), (4, 8, 16, 32)),
        model_name="quicknet",
        input_shape=(64, 64, 3),
        input_tensor=None,
        num_classes=10,
        include_top=False,
        weights=None,
    )
    with pytest.raises(ValueError, match=r"has 113 arrays.*takes only 111.*array 111"):
        zoo.load_larq_weights(model, FIXTURES / "quicknet_tiny.h5")


def test_a_swapped_order_is_caught_by_the_variable_names(tmp_path):
    path = _copy(tmp_path)
    with h5py.File(path, "a") as f:
        group = f["batch_normalization"]
        group.attrs["weight_names"] = list(reversed(group.attrs["weight_names"]))
    with pytest.raises(ValueError, match=r"is a 'moving_variance'.*expects a 'gamma'"):
        tiny_quicknet(weights=path)


def test_a_keras3_weights_file_is_told_apart(tmp_path):
    model = tiny_quicknet()
    path = tmp_path / "k3.weights.h5"
    model.save_weights(path)
    assert not zoo.is_larq_weights_file(path)
    with pytest.raises(ValueError, match=r"Keras 3 weights file.*model\.load_weights"):
        zoo.load_larq_weights(model, path)
    # ... and the constructors still load it with Keras.
    again = tiny_quicknet(weights=path)
    for a, b in zip(_weights(model), _weights(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_not_hdf5_and_missing_files_are_refused(tmp_path):
    model = tiny_quicknet()
    text = tmp_path / "weights.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        zoo.load_larq_weights(model, text)
    with pytest.raises(ValueError, match="does not exist"):
        zoo.load_larq_weights(model, tmp_path / "nowhere.h5")
    with pytest.raises(ValueError, match=r"Received: path=3"):
        zoo.load_larq_weights(model, 3)


def _first_array(f: h5py.File) -> tuple[h5py.Group, str]:
    layer = next(n for n in _layer_names(f) if len(f[n].attrs["weight_names"]))
    return f[layer], _text(f[layer].attrs["weight_names"][0])


def test_links_to_other_files_are_never_followed(tmp_path):
    path = _copy(tmp_path)
    outside = tmp_path / "outside.h5"
    with h5py.File(path, "a") as f:
        group, name = _first_array(f)
        data = group[name][()]
        with h5py.File(outside, "w") as g:
            g["x"] = data
        del group[name]
        group[name] = h5py.ExternalLink(str(outside), "x")
    with pytest.raises(
        ValueError, match="ExternalLink; only arrays stored in the file"
    ):
        zoo.load_larq_weights(tiny_quicknet(), path)


def test_non_float_arrays_and_non_finite_values_are_refused(tmp_path):
    path = _copy(tmp_path)
    with h5py.File(path, "a") as f:
        group, name = _first_array(f)
        data = group[name][()]
        del group[name]
        group[name] = data.astype("int32")
    with pytest.raises(ValueError, match=r"floating point array.*int32"):
        zoo.load_larq_weights(tiny_quicknet(), path)
    with h5py.File(path, "a") as f:
        group, name = _first_array(f)
        data = group[name][()].astype("float32")
        data.flat[0] = np.nan
        del group[name]
        group[name] = data
    model = tiny_quicknet()
    before = _weights(model)
    with pytest.raises(ValueError, match="non-finite"):
        zoo.load_larq_weights(model, path)
    for a, b in zip(before, _weights(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_name_lists_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(larq_weights, "MAX_LAYERS", 10)
    with pytest.raises(ValueError, match=r"more than 10 names \(the limit\)"):
        zoo.larq_weights_layout(FIXTURES / "quicknet_tiny.h5")


def test_a_path_escaping_the_layer_group_is_refused(tmp_path):
    path = _copy(tmp_path)
    with h5py.File(path, "a") as f:
        group, _ = _first_array(f)
        names = [_text(n) for n in group.attrs["weight_names"]]
        names[0] = "../" + names[0]
        group.attrs["weight_names"] = np.array(names, dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match="bad path"):
        zoo.larq_weights_layout(path)


def test_imagenet_is_refused_with_what_to_do_instead():
    with pytest.raises(ValueError, match=r"'imagenet'.*download one yourself"):
        zoo.QuickNet(weights="imagenet")
