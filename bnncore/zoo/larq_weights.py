"""Larq Zoo's weight files (tf-keras ``.h5``) loaded into ``bnncore.zoo``'s models.

Larq Zoo's released weights and the files a Larq user writes with
``model.save_weights("x.h5")`` (or the full-model ``model.save("x.h5")``) are
tf-keras's legacy HDF5 layout: the root (or its ``model_weights`` group) lists
``layer_names`` in model order; each layer's group lists its ``weight_names``
in the layer's order; the arrays sit at those paths. :func:`load_larq_weights`
reads that layout with h5py and maps it onto a Keras 3 model **by position**:
array *i* of the file goes to variable *i* of ``model.weights``, with three
conversions:

* a name the two Keras versions spell differently: tf-keras's
  ``depthwise_kernel`` is Keras 3's ``kernel``;
* a 1×1 convolution kernel ``(1, 1, C, U)`` onto a dense kernel ``(C, U)``
  (Larq Zoo's BinaryAlexNet classifier is a 1×1 ``QuantConv2D`` over a
  reshape of the flattened features, bnncore's is a ``QuantDense``; the
  elements are in the same order);
* ``G`` consecutive per-group kernels ``(kh, kw, Cin/G, Cout/G)`` onto one
  grouped ``Conv2D(groups=G)`` kernel ``(kh, kw, Cin/G, Cout)``, concatenated
  along the output axis (Larq Zoo's MeliusNet splits a grouped convolution
  into ``G`` convolutions and concatenates their outputs).

The file is data, never code: only groups, attributes of names and floating
point datasets are read (no model configuration, no pickle, no links to other
files, no virtual or external datasets); name lists are bounded; every array's
shape and name are checked against the model before any data is read, and the
model is changed only after the whole file has been read and checked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import keras
import numpy as np

__all__ = [
    "LarqWeight",
    "is_larq_weights_file",
    "larq_weights_layout",
    "load_larq_weights",
]

MAX_LAYERS = 100_000
"""Most layer names a file may list."""

MAX_WEIGHTS_PER_LAYER = 10_000
"""Most weight names one layer may list."""

MAX_NAME_LENGTH = 1_024
"""Longest layer or weight name accepted (characters)."""

MAX_RANK = 8
"""Highest rank of an array accepted."""

_RENAMES = {"depthwise_kernel": "kernel"}
"""tf-keras variable name → Keras 3 variable name."""

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class LarqWeight:
    """One array of a tf-keras ``.h5`` weights file, in file order.

    Attributes:
        position: Index among all the file's arrays (0-based).
        layer_index: Index of its layer in the file's ``layer_names``.
        layer: The layer's name in the file (``"quant_conv2d_3"``).
        name: The weight's name in the file (``"quant_conv2d_3/kernel:0"``).
        shape: The array's shape.
        dtype: The array's NumPy dtype name (``"float32"``).
    """

    position: int
    layer_index: int
    layer: str
    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def variable_name(self) -> str:
        """The Keras 3 variable name it maps to (``"kernel"``, ``"gamma"``, ...)."""
        base = self.name.rsplit("/", 1)[-1].split(":", 1)[0]
        return _RENAMES.get(base, base)

    def describe(self) -> str:
        return (
            f"file array {self.position} (layer {self.layer_index} "
            f"{self.layer!r}, weight {self.name!r}, shape {self.shape})"
        )


def _error(path: str, message: str) -> ValueError:
    return ValueError(f"Larq weights file {path!r}: {message}")


def _names(obj: Any, attr: str, limit: int, path: str, where: str) -> list[str]:
    """A list-of-names attribute, bounded, also when tf-keras split it in
    chunks (``attr0``, ``attr1``, ...) because it was over 64 KiB."""
    keys = [attr] if attr in obj.attrs else []
    if not keys:
        chunk = 0
        while f"{attr}{chunk}" in obj.attrs:
            keys.append(f"{attr}{chunk}")
            chunk += 1
            if chunk > limit:
                raise _error(path, f"{where}: too many chunks of {attr!r}")
        if not keys:
            raise _error(path, f"{where} has no {attr!r} attribute")
    names: list[str] = []
    for key in keys:
        attr_id = obj.attrs.get_id(key)
        shape = attr_id.shape
        size = int(np.prod(shape)) if shape else 1
        if len(names) + size > limit:
            raise _error(
                path, f"{where}: {attr!r} lists more than {limit} names (the limit)"
            )
        if size == 0:
            continue
        if len(shape) != 1 or attr_id.dtype.kind not in "SUO":
            raise _error(
                path,
                f"{where}: expected {attr!r} to be a list of strings. Found "
                f"shape {shape} and dtype {attr_id.dtype}",
            )
        for value in obj.attrs[key]:
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf8")
                except UnicodeDecodeError:
                    raise _error(
                        path, f"{where}: a name in {attr!r} is not UTF-8"
                    ) from None
            if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_LENGTH:
                raise _error(
                    path,
                    f"{where}: expected names of 1 to {MAX_NAME_LENGTH} "
                    f"characters in {attr!r}. Found: {str(value)[:80]!r}",
                )
            names.append(value)
    return names


def _child(group: h5py.Group, name: str, path: str, where: str) -> Any:
    """``group[name]`` following hard links only (nothing outside the file)."""
    obj: Any = group
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise _error(path, f"{where}: bad path {name!r}")
        if not isinstance(obj, h5py.Group) or part not in obj:
            raise _error(path, f"{where}: {name!r} is not in the file")
        link = obj.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise _error(
                path,
                f"{where}: {name!r} is a {type(link).__name__}; only arrays "
                "stored in the file itself are read",
            )
        obj = obj[part]
    return obj


def _weights_root(f: h5py.File, path: str) -> h5py.Group:
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        return f
    if "model_weights" in f:
        root = _child(f, "model_weights", path, "the file")
        if isinstance(root, h5py.Group) and (
            "layer_names" in root.attrs or "layer_names0" in root.attrs
        ):
            return root
    if "layers" in f or "vars" in f:
        raise _error(
            path,
            "this is a Keras 3 weights file (.weights.h5), not tf-keras's "
            "layout; load it with model.load_weights(path)",
        )
    raise _error(
        path,
        "not a tf-keras weights file: expected the attribute 'layer_names' at "
        "the root (model.save_weights('x.h5')) or in the group 'model_weights' "
        "(model.save('x.h5'))",
    )


def _open(path: PathLike) -> tuple[str, h5py.File]:
    if not isinstance(path, str | os.PathLike):
        raise ValueError(
            f"Expected path to be the path of a local .h5 file. Received: path={path!r}"
        )
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ValueError(f"Larq weights file {name!r} does not exist")
    if not h5py.is_hdf5(name):
        raise _error(name, "not an HDF5 file")
    return name, h5py.File(name, "r")


def _layout(f: h5py.File, path: str) -> list[tuple[LarqWeight, h5py.Dataset]]:
    root = _weights_root(f, path)
    layers = _names(root, "layer_names", MAX_LAYERS, path, "the weights group")
    out: list[tuple[LarqWeight, h5py.Dataset]] = []
    for layer_index, layer in enumerate(layers):
        where = f"layer {layer_index} {layer!r}"
        if "/" in layer:
            raise _error(path, f"{where}: a layer name cannot contain '/'")
        group = _child(root, layer, path, where)
        if not isinstance(group, h5py.Group):
            raise _error(path, f"{where} is not a group")
        for name in _names(group, "weight_names", MAX_WEIGHTS_PER_LAYER, path, where):
            dataset = _child(group, name, path, where)
            if not isinstance(dataset, h5py.Dataset):
                raise _error(path, f"{where}: {name!r} is not an array")
            if dataset.is_virtual or dataset.external:
                raise _error(
                    path,
                    f"{where}: {name!r} is a virtual or external dataset; only "
                    "arrays stored in the file itself are read",
                )
            if dataset.dtype.kind != "f" or len(dataset.shape) > MAX_RANK:
                raise _error(
                    path,
                    f"{where}: {name!r} must be a floating point array of rank at "
                    f"most {MAX_RANK}. Found dtype {dataset.dtype}, shape "
                    f"{dataset.shape}",
                )
            weight = LarqWeight(
                position=len(out),
                layer_index=layer_index,
                layer=layer,
                name=name,
                shape=tuple(int(d) for d in dataset.shape),
                dtype=str(dataset.dtype),
            )
            out.append((weight, dataset))
    return out


def is_larq_weights_file(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file in tf-keras's weights layout
    (``save_weights("x.h5")`` or ``save("x.h5")``), as Larq Zoo's releases."""
    name = os.fspath(path)
    if not os.path.isfile(name) or not h5py.is_hdf5(name):
        return False
    with h5py.File(name, "r") as f:
        if "layer_names" in f.attrs or "layer_names0" in f.attrs:
            return True
        link = f.get("model_weights", getlink=True)
        if not isinstance(link, h5py.HardLink):
            return False
        group = f["model_weights"]
        return isinstance(group, h5py.Group) and (
            "layer_names" in group.attrs or "layer_names0" in group.attrs
        )


def larq_weights_layout(path: PathLike) -> list[LarqWeight]:
    """The arrays of a tf-keras ``.h5`` weights file, in file order (no data).

    Raises:
        ValueError: if the file is not in tf-keras's layout or breaks a limit.
    """
    name, f = _open(path)
    with f:
        return [weight for weight, _ in _layout(f, name)]


@dataclass(frozen=True)
class _Step:
    variable: Any
    sources: tuple[int, ...]
    kind: str  # "copy", "dense_from_1x1", "grouped"


def _targets(model: keras.Model) -> list[tuple[Any, Any]]:
    """``(layer, variable)`` in the order of ``model.weights``."""
    owner: dict[int, Any] = {}
    for layer in model.layers:
        for variable in layer.weights:
            owner.setdefault(id(variable), layer)
    return [(owner.get(id(v)), v) for v in model.weights]


def _describe_target(index: int, layer: Any, variable: Any) -> str:
    layer_name = getattr(layer, "name", "?")
    return (
        f"model variable {index} {variable.path!r} (layer {layer_name!r}, "
        f"shape {tuple(variable.shape)})"
    )


def _plan(model: keras.Model, weights: Sequence[LarqWeight], path: str) -> list[_Step]:
    targets = _targets(model)
    steps = []
    pos = 0
    for index, (layer, variable) in enumerate(targets):
        want = tuple(int(d) for d in variable.shape)
        target = _describe_target(index, layer, variable)
        if pos >= len(weights):
            raise _error(
                path,
                f"has {len(weights)} arrays, but model {model.name!r} needs more: "
                f"nothing left for {target}",
            )
        source = weights[pos]
        if source.variable_name != variable.name:
            raise _error(
                path,
                f"does not fit model {model.name!r} by position: "
                f"{source.describe()} is a {source.variable_name!r}, but the "
                f"model expects a {variable.name!r} there: {target}",
            )
        groups = int(getattr(layer, "groups", 1) or 1)
        if source.shape == want:
            steps.append(_Step(variable, (pos,), "copy"))
            pos += 1
        elif len(want) == 2 and source.shape == (1, 1, *want):
            steps.append(_Step(variable, (pos,), "dense_from_1x1"))
            pos += 1
        elif (
            groups > 1
            and variable is getattr(layer, "kernel", None)
            and want[-1] % groups == 0
            and source.shape == (*want[:-1], want[-1] // groups)
            and pos + groups <= len(weights)
            and all(
                w.shape == source.shape and w.variable_name == "kernel"
                for w in weights[pos : pos + groups]
            )
        ):
            steps.append(_Step(variable, tuple(range(pos, pos + groups)), "grouped"))
            pos += groups
        else:
            raise _error(
                path,
                f"does not fit model {model.name!r} by position: "
                f"{source.describe()} found where the model expects shape "
                f"{want}: {target}",
            )
    if pos != len(weights):
        raise _error(
            path,
            f"has {len(weights)} arrays, but model {model.name!r} takes only "
            f"{pos}; the first one left over is {weights[pos].describe()}",
        )
    return steps


def load_larq_weights(model: keras.Model, path: PathLike) -> None:
    """Loads a Larq / Larq Zoo tf-keras ``.h5`` weights file into ``model``.

    The file is mapped onto ``model.weights`` by position (see the module
    docstring for the renames and reshapes). Nothing is assigned unless the
    whole file fits.

    Args:
        model: A Keras 3 model of the same architecture as the file's
            (``bnncore.zoo.QuickNet()`` for ``quicknet_weights.h5``, the model
            with ``include_top=False`` for a ``_notop`` file).
        path: A local file written by tf-keras's ``model.save_weights("x.h5")``
            or ``model.save("x.h5")``.

    Raises:
        ValueError: if the file is not in tf-keras's layout, breaks a limit,
            or does not fit the model; the message names the first array that
            does not fit (its position, layer, name and shape) and what the
            model expects there.

    Example:
        >>> model = bnncore.zoo.QuickNet()
        >>> bnncore.zoo.load_larq_weights(model, "quicknet_weights.h5")
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected model to be a keras.Model. Received: model={model!r}"
        )
    name, f = _open(path)
    with f:
        layout = _layout(f, name)
        weights = [weight for weight, _ in layout]
        steps = _plan(model, weights, name)
        values = []
        for step in steps:
            arrays = []
            for pos in step.sources:
                array = np.asarray(layout[pos][1][()])
                if not np.all(np.isfinite(array)):
                    raise _error(
                        name, f"{weights[pos].describe()} has non-finite values"
                    )
                arrays.append(array)
            if step.kind == "grouped":
                value = np.concatenate(arrays, axis=-1)
            else:
                value = arrays[0].reshape(tuple(step.variable.shape))
            values.append(value)
    for step, value in zip(steps, values, strict=True):
        step.variable.assign(value.astype(step.variable.dtype))
