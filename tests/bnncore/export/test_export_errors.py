"""Corrupted, truncated, oversized and mismatched files: clear errors, no change."""

from __future__ import annotations

import json
from collections.abc import Callable

import keras
import numpy as np
import pytest
from export_models import randomize

import bnncore as lq

WeightsFileError = lq.export.WeightsFileError


def tiny(units: int = 4, names: bool = True) -> keras.Model:
    named = (lambda n: {"name": n}) if names else (lambda n: {})
    inputs = keras.Input((5,))
    x = lq.layers.QuantDense(units, kernel_quantizer="ste_sign", **named("q"))(inputs)
    x = keras.layers.BatchNormalization(**named("bn"))(x)
    outputs = keras.layers.Dense(3, **named("d"))(x)
    return keras.Model(inputs, outputs, **named("tiny"))


@pytest.fixture(scope="module")
def source() -> bytes:
    return lq.export.to_bytes(randomize(tiny(), seed=2))


def split(data: bytes) -> tuple[dict, bytes]:
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join(header: dict | str, body: bytes) -> bytes:
    text = header if isinstance(header, str) else json.dumps(header)
    raw = text.encode()
    return len(raw).to_bytes(8, "little") + raw + body


def edit_header(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def mutate(data: bytes) -> bytes:
        header, body = split(data)
        change(header)
        return join(header, body)

    return mutate


def edit_encodings(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(header: dict) -> None:
        encodings = json.loads(header["__metadata__"]["encodings"])
        change(encodings)
        header["__metadata__"]["encodings"] = json.dumps(encodings)

    return edit_header(edit)


def set_key(*path_and_value):
    *path, value = path_and_value

    def change(tree: dict) -> None:
        for key in path[:-1]:
            tree = tree[key]
        tree[path[-1]] = value

    return change


def replace_body(data: bytes, change: Callable[[bytearray, dict], None]) -> bytes:
    header, body = split(data)
    body = bytearray(body)
    change(body, header)
    return join(header, bytes(body))


def spare_bits(body: bytearray, header: dict) -> None:
    end = header["q/kernel"]["data_offsets"][1]  # 5×4 = 20 bits in 3 bytes
    body[end - 1] |= 0xF0


CORRUPTIONS = {
    "too short": (lambda d: d[:5], "too short"),
    "truncated header": (lambda d: d[:40], "runs past the end"),
    "truncated data": (lambda d: d[:-1], "truncated"),
    "trailing bytes": (lambda d: d + b"\0", "trailing"),
    "huge header length": (lambda d: (2**40).to_bytes(8, "little") + d[8:], "limit"),
    "header not JSON": (lambda d: join("{" + " " * 10, split(d)[1]), "not valid JSON"),
    "deeply nested JSON": (lambda d: join("[" * 100_000, b""), "not valid JSON"),
    "header not object": (lambda d: join("[]", split(d)[1]), "JSON object"),
    "duplicate key": (
        lambda d: join(json.dumps(split(d)[0])[:-1] + ',"d/bias":{}}', split(d)[1]),
        "duplicate key",
    ),
    "no metadata": (edit_header(lambda h: h.pop("__metadata__")), "__metadata__"),
    "other format": (
        edit_header(set_key("__metadata__", "format", "other")),
        "metadata.format",
    ),
    "future version": (
        edit_header(set_key("__metadata__", "format_version", "3")),
        "format_version",
    ),
    "encodings not JSON": (
        edit_header(set_key("__metadata__", "encodings", "{oops")),
        "metadata.encodings",
    ),
    "tensor without encoding": (
        edit_encodings(lambda e: e.pop("d/bias")),
        "no encoding for tensors",
    ),
    "unknown encoding": (
        edit_encodings(set_key("d/bias", "encoding", "zip")),
        "encoding is one of",
    ),
    "wrong tensor dtype": (edit_header(set_key("d/bias", "dtype", "F16")), "dtype"),
    "overflowing shape": (
        edit_header(set_key("d/bias", "shape", [2**62, 2**62])),
        "more than",
    ),
    "negative dimension": (
        edit_header(set_key("d/bias", "shape", [-3])),
        "non-negative integers",
    ),
    "count not matching bytes": (
        edit_header(set_key("d/bias", "shape", [4])),
        "needs 16 bytes but data_offsets hold 12",
    ),
    "overlapping offsets": (
        edit_header(set_key("d/bias", "data_offsets", [0, 12])),
        "tile the data section",
    ),
    "encoded shape bomb": (
        edit_encodings(set_key("q/kernel", "shape", [2**40, 2**40, 2**40])),
        "elements (max_elements=",
    ),
    "packed shape not matching": (
        edit_encodings(set_key("q/kernel", "shape", [5, 5])),
        "packed tensor has shape [3], expected [4]",
    ),
    "code out of range": (
        edit_encodings(
            set_key(
                "q/kernel",
                {
                    "encoding": "levels",
                    "bits": 1,
                    "levels": [-1.0],
                    "shape": [5, 4],
                    "bit_order": "little",
                },
            )
        ),
        "out of range for 1 levels",
    ),
    "non-zero spare bits": (
        lambda d: replace_body(d, spare_bits),
        "unused bits",
    ),
    "big-endian bits": (
        edit_encodings(set_key("q/kernel", "bit_order", "big")),
        "bit_order",
    ),
    "NaN epsilon": (
        edit_header(
            lambda h: h["__metadata__"].update(
                encodings=h["__metadata__"]["encodings"].replace("0.001", "NaN")
            )
        ),
        "NaN is not allowed",
    ),
    "negative epsilon": (
        edit_encodings(set_key("bn/scale", "epsilon", -1.0)),
        "epsilon",
    ),
    "missing variable": (
        edit_encodings(lambda e: e["bn/scale"]["variables"].pop("moving_mean")),
        "variables",
    ),
    "broken reference": (
        edit_encodings(set_key("bn/scale", "offset", "d/bias")),
        "refers back to it",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_bad_files_raise_a_clear_error_and_change_nothing(
    case: str, source: bytes
) -> None:
    mutate, message = CORRUPTIONS[case]
    bad = mutate(source)
    with pytest.raises(WeightsFileError) as raised:
        lq.export.read_weights(bad)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)
    model = tiny()
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(WeightsFileError):
        lq.export.load_weights(model, bad)
    for variable, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_limits_are_enforced(source: bytes, tmp_path) -> None:
    with pytest.raises(WeightsFileError, match="exceeds the limit 100"):
        lq.export.read_weights(source, max_bytes=100)
    path = tmp_path / "w.safetensors"
    path.write_bytes(source)
    with pytest.raises(WeightsFileError, match="exceeds the limit 100"):
        lq.export.read_weights(path, max_bytes=100)
    with pytest.raises(
        WeightsFileError, match=r"header: length .* exceeds the limit 64"
    ):
        lq.export.read_weights(source, max_header_bytes=64)
    with pytest.raises(WeightsFileError, match="more than 10 values"):
        lq.export.read_weights(source, max_elements=10)
    assert set(lq.export.read_weights(path)) == set(lq.export.read_weights(source))
    with pytest.raises(TypeError, match="source of type int"):
        lq.export.read_weights(123)


def unchanged(model: keras.Model, action: Callable[[], None]) -> None:
    before = [v.numpy().copy() for v in model.weights]
    action()
    for variable, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_other_names_are_all_listed(source: bytes) -> None:
    model = tiny(names=False)  # Keras's generated names differ from the file's
    expected = list(lq.export.weight_names(model))
    file_names = list(lq.export.read_weights(source))

    def load() -> None:
        with pytest.raises(lq.export.WeightsMismatchError) as raised:
            lq.export.load_weights(model, source)
        error = raised.value
        assert len(error.differences) == len(expected) + len(file_names)
        for name in expected:
            assert f"missing from the file: {name!r}" in str(error)
        for name in file_names:
            assert f"not in the model: {name!r}" in str(error)
        assert "nothing was assigned" in str(error)

    unchanged(model, load)


def test_other_shapes_and_dtypes_are_all_listed(source: bytes) -> None:
    model = tiny(units=6)

    def load() -> None:
        with pytest.raises(lq.export.WeightsMismatchError) as raised:
            lq.export.load_weights(model, source)
        differences = raised.value.differences
        assert (
            "'q/kernel': shape [5, 4] in the file, [5, 6] in the model" in differences
        )
        assert (
            "'d/kernel': shape [4, 3] in the file, [6, 3] in the model" in differences
        )
        for name in (
            "q/bias",
            "bn/gamma",
            "bn/beta",
            "bn/moving_mean",
            "bn/moving_variance",
        ):
            assert f"{name!r}: shape [4] in the file, [6] in the model" in differences
        assert len(differences) == 7

    unchanged(model, load)
    weights = lq.export.read_weights(source)
    weights["d/bias"] = weights["d/bias"].astype(np.float64)
    weights["extra"] = np.zeros(1, np.float32)
    model = tiny()

    def load_dict() -> None:
        with pytest.raises(lq.export.WeightsMismatchError) as raised:
            lq.export.load_weights(model, weights)
        assert raised.value.differences == [
            "'d/bias': dtype float64 in the file, float32 in the model",
            "not in the model: 'extra'",
        ]

    unchanged(model, load_dict)


def test_export_refuses_unbuilt_models_and_other_dtypes() -> None:
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="is not built"):
        lq.export.to_bytes(unbuilt)
    with pytest.raises(TypeError, match=r"Expected a keras\.Model"):
        lq.export.to_bytes(keras.layers.Dense(2))
    inputs = keras.Input((3,), name="x")
    doubled = keras.Model(
        inputs, keras.layers.Dense(2, dtype="float64", name="d")(inputs)
    )
    with pytest.raises(ValueError, match=r"Only float32 .* d/kernel \(float64\)"):
        lq.export.to_bytes(doubled)
