"""Writing, reading and loading the packed weights file of a model."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import IO, Any

import keras
import numpy as np
from keras import ops

from bnncore.export import batchnorm, codec, container, kernels
from bnncore.export.container import WeightsFileError
from bnncore.export.naming import walk_layers, weight_names

__all__ = [
    "MAX_FILE_BYTES",
    "WeightsMismatchError",
    "encode",
    "load_weights",
    "mismatches",
    "read_weights",
    "to_bytes",
    "write_weights",
]

log = logging.getLogger("bnncore")

MAX_FILE_BYTES = 2**30
"""Default limit on the size of a weights file that :func:`read_weights` reads."""

Source = str | os.PathLike | bytes | bytearray | memoryview


class WeightsMismatchError(WeightsFileError):
    """A well-formed weights file that does not fit the model.

    Attributes:
        differences: One line per difference (missing, unexpected, shape, dtype).
    """

    def __init__(self, model_name: str, differences: list[str]) -> None:
        self.differences = list(differences)
        lines = "\n".join(f"  - {d}" for d in differences)
        super().__init__(
            f"The weights do not match model {model_name!r} "
            f"({len(differences)} difference{'s' * (len(differences) != 1)}); "
            f"nothing was assigned:\n{lines}"
        )


def _check_built(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model. Received: model of type {type(model).__name__}"
        )
    unbuilt = [layer.name for _, layer in walk_layers(model) if not layer.built]
    if not model.built or unbuilt:
        where = f"layer {unbuilt[0]!r} of model" if unbuilt else "model"
        raise ValueError(
            f"{where} {model.name!r} is not built, so it has no weights yet. Build "
            "it first: call it on a batch of inputs (model(x)), call "
            "model.build(input_shape), or start it with keras.Input(shape)."
        )


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(value), dtype=np.float32)


def _kernels(model: Any, ids: set[int]) -> dict[int, tuple[Any, Any, str]]:
    """id(kernel variable) → (quantizer, layer, attribute) for quantized kernels."""
    found = {}
    for _, layer in walk_layers(model):
        mapping = getattr(layer, "kernel_quantizers", None)
        if not isinstance(mapping, Mapping):
            continue
        for attribute, quantizer in mapping.items():
            variable = getattr(layer, attribute, None)
            if quantizer is not None and id(variable) in ids:
                found[id(variable)] = (quantizer, layer, attribute)
    return found


def _fold_batchnorm(
    layer: Any, names: dict[int, str], taken: set[str]
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]] | None:
    """Scale and offset tensors of a foldable BatchNormalization, or ``None``."""
    variables = batchnorm.layer_variables(layer)
    if not all(v is None or id(v) in names for v in variables.values()):
        return None
    prefix = names[id(layer.moving_mean)].rpartition("/")[0]
    scale_name = f"{prefix}/scale" if prefix else "scale"
    offset_name = f"{prefix}/offset" if prefix else "offset"
    if {scale_name, offset_name} & taken:
        return None
    values = {k: None if v is None else _numpy(v) for k, v in variables.items()}
    scale, offset = batchnorm.fold(values, layer.epsilon)
    try:
        back = batchnorm.unfold(
            scale,
            offset,
            layer.epsilon,
            has_gamma=values["gamma"] is not None,
            has_beta=values["beta"] is not None,
        )
    except ValueError:
        return None
    again = batchnorm.fold({"gamma": None, "beta": None, **back}, layer.epsilon)
    if not (np.allclose(again[0], scale) and np.allclose(again[1], offset)):
        return None
    recorded = {k: None if v is None else names[id(v)] for k, v in variables.items()}
    return (
        {scale_name: scale, offset_name: offset},
        {
            scale_name: {
                "encoding": "batchnorm_folded",
                "role": "scale",
                "offset": offset_name,
                "epsilon": float(layer.epsilon),
                "variables": recorded,
            },
            offset_name: {
                "encoding": "batchnorm_folded",
                "role": "offset",
                "scale": scale_name,
            },
        },
    )


def encode(model: Any) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """The tensors of ``model``'s weights file and the encoding of each.

    Args:
        model: A built ``keras.Model`` whose variables are all float32.

    Returns:
        ``(tensors, encodings)``, both keyed by tensor name.

    Raises:
        ValueError: the model is not built, or has a variable that is not float32.
    """
    _check_built(model)
    by_name = weight_names(model)
    other = [f"{n} ({v.dtype})" for n, v in by_name.items() if v.dtype != "float32"]
    if other:
        raise ValueError(
            "Only float32 variables can be exported; received "
            f"{', '.join(other[:5])}{' ...' if len(other) > 5 else ''}."
        )
    names = {id(v): n for n, v in by_name.items()}
    quantized = _kernels(model, set(names))
    tensors: dict[str, np.ndarray] = {}
    encodings: dict[str, dict[str, Any]] = {}
    done: set[int] = set()
    views: dict[int, dict[str, Any]] = {}
    for _, layer in walk_layers(model):
        if batchnorm.foldable(layer):
            folded = _fold_batchnorm(layer, names, set(by_name))
            if folded is not None:
                tensors.update(folded[0])
                encodings.update(folded[1])
                done.update(id(v) for v in layer.weights)
    for name, variable in by_name.items():
        if id(variable) in done:
            continue
        encoded = None
        if id(variable) in quantized:
            quantizer, layer, attribute = quantized[id(variable)]
            if id(layer) not in views:
                views[id(layer)] = layer.quantized_weights
            latent = _numpy(variable)
            view = _numpy(views[id(layer)][attribute])
            encoded = kernels.encode_kernel(name, quantizer, latent, view)
        if encoded is None:
            tensors[name] = np.ascontiguousarray(_numpy(variable))
            encodings[name] = {"encoding": "float32"}
        else:
            tensors.update(encoded[0])
            encodings.update(encoded[1])
    return tensors, encodings


def to_bytes(model: Any) -> bytes:
    """The weights file of ``model``, as bytes (see :func:`write_weights`)."""
    tensors, encodings = encode(model)
    return container.dump(tensors, codec.metadata_for(encodings))


def write_weights(model: Any, destination: str | os.PathLike | IO[bytes]) -> int:
    """Writes ``model``'s packed weights file.

    Args:
        model: A built ``keras.Model``.
        destination: A path, or a binary file object with ``write``.

    Returns:
        The number of bytes written.
    """
    data = to_bytes(model)
    if hasattr(destination, "write"):
        destination.write(data)
    else:
        path = os.fspath(destination)
        temporary = f"{path}.partial"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    return len(data)


def _read_source(source: Any, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > max_bytes:
            raise WeightsFileError(
                f"file: {len(data):,} bytes exceeds the limit {max_bytes:,}"
            )
        return data
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise WeightsFileError(
                    f"file: {size:,} bytes exceeds the limit {max_bytes:,}"
                )
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise WeightsFileError(f"file: more than {max_bytes:,} bytes")
        return data
    raise TypeError(
        f"Expected a path or bytes. Received: source of type {type(source).__name__}"
    )


def read_weights(
    source: Source,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    max_header_bytes: int = container.MAX_HEADER_BYTES,
    max_elements: int = codec.MAX_ELEMENTS,
) -> dict[str, np.ndarray]:
    """Reads and decodes a weights file: float32 arrays ready to assign.

    Safe on untrusted input: the file is parsed as JSON and raw arrays only
    (never unpickled or evaluated), and every size is checked against the
    limits and against the bytes actually present before anything is decoded.

    Args:
        source: A path, or the file's bytes.
        max_bytes: Largest file accepted.
        max_header_bytes: Largest JSON header (metadata included) accepted.
        max_elements: Most values the decoded arrays may hold together.

    Returns:
        Variable name (see :func:`bnncore.export.weight_names`) → float32 array
        of the variable's shape. Packed kernels come back as latent values that
        the layer's quantizer maps to the stored ones; folded BatchNorms as
        ``gamma``/``beta``/``moving_mean``/``moving_variance`` giving the same
        affine map.

    Raises:
        WeightsFileError: (a ``ValueError``) naming what is wrong.
        TypeError: ``source`` is neither a path nor bytes.
    """
    data = _read_source(source, max_bytes)
    metadata, entries, arrays = container.parse(data, max_header_bytes=max_header_bytes)
    return codec.decode(metadata, entries, arrays, max_elements=max_elements)


def mismatches(model: Any, weights: Mapping[str, np.ndarray]) -> list[str]:
    """Every difference between decoded weights and ``model``'s variables.

    Args:
        model: A built ``keras.Model``.
        weights: What :func:`read_weights` returned.

    Returns:
        One line per missing variable, unexpected name, shape or dtype
        difference; empty when the weights fit.
    """
    _check_built(model)
    expected = weight_names(model)
    problems = []
    for name, variable in expected.items():
        shape = [int(d) for d in variable.shape]
        if name not in weights:
            problems.append(
                f"missing from the file: {name!r} (shape {shape}, {variable.dtype})"
            )
            continue
        value = np.asarray(weights[name])
        if list(value.shape) != shape:
            problems.append(
                f"{name!r}: shape {list(value.shape)} in the file, {shape} in the model"
            )
        if str(value.dtype) != str(variable.dtype):
            problems.append(
                f"{name!r}: dtype {value.dtype} in the file, {variable.dtype} in "
                "the model"
            )
    for name in weights:
        if name not in expected:
            problems.append(f"not in the model: {name!r}")
    return problems


def load_weights(
    model: Any, source: Source | Mapping[str, np.ndarray], **limits: int
) -> None:
    """Assigns a weights file to ``model`` — all of it, or nothing.

    Args:
        model: A built ``keras.Model`` with the architecture the file was
            written from (for example, built from its ``definition.json``).
        source: A path, the file's bytes, or what :func:`read_weights` returned.
        **limits: ``max_bytes``, ``max_header_bytes``, ``max_elements`` for
            :func:`read_weights`.

    Raises:
        WeightsFileError: a malformed file (nothing is assigned).
        WeightsMismatchError: the file does not fit the model; the message
            lists every difference (nothing is assigned).
    """
    if isinstance(source, Mapping):
        weights = dict(source)
    else:
        weights = read_weights(source, **limits)
    problems = mismatches(model, weights)
    if problems:
        raise WeightsMismatchError(model.name, problems)
    for name, variable in weight_names(model).items():
        variable.assign(weights[name])
