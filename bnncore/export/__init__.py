"""True low-bit export: a model as its definition JSON plus a packed weights file.

``save(model, directory)`` writes

* ``definition.json`` — ``model.to_json()`` as a JSON document (the Keras-JSON
  form the service's definition language accepts);
* ``weights.safetensors`` — a safetensors file in which every 1-bit kernel is
  bit-packed (8 weights per byte), every k-bit kernel is packed at k bits,
  every BatchNormalization is folded to a per-channel float32 scale and offset
  and every other weight is float32, with metadata saying how to unpack each
  tensor.

``read_weights`` decodes such a file (safely: bounded, never unpickled) into
float32 arrays keyed by the names of :func:`weight_names`, and ``load_weights``
assigns them to a model after checking every name, shape and dtype. See
``docs/export.md`` for the format.

Example:
    >>> bnncore.export.save(model, "exported/")
    >>> same = bnncore.export.load("exported/")      # predicts as ``model`` does
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from bnncore.export.codec import FORMAT, FORMAT_VERSION, MAX_ELEMENTS
from bnncore.export.container import MAX_HEADER_BYTES, WeightsFileError
from bnncore.export.naming import weight_names
from bnncore.export.weights import (
    MAX_FILE_BYTES,
    WeightsMismatchError,
    encode,
    load_weights,
    mismatches,
    read_weights,
    to_bytes,
    write_weights,
)

__all__ = [
    "DEFINITION_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_ELEMENTS",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "WEIGHTS_FILE",
    "Exported",
    "WeightsFileError",
    "WeightsMismatchError",
    "encode",
    "load",
    "load_weights",
    "mismatches",
    "read_weights",
    "save",
    "to_bytes",
    "to_definition",
    "weight_names",
    "write_weights",
]

DEFINITION_FILE = "definition.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class Exported:
    """What :func:`save` wrote.

    Attributes:
        definition: Path of ``definition.json``.
        weights: Path of ``weights.safetensors``.
        weights_bytes: Size of the weights file.
    """

    definition: Path
    weights: Path
    weights_bytes: int


def to_definition(model: Any) -> dict[str, Any]:
    """The model's Keras-JSON definition: ``json.loads(model.to_json())``
    without its training configuration, which an inference export does not
    hold and the service refuses: ``compile_config`` (optimizer, loss and
    metrics of a compiled model) and the flip-ratio metrics (a quantizer's
    ``metrics``, a quantized layer's ``flip_ratio_names``).

    Raises:
        TypeError: ``model`` is not a ``keras.Model``.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model. Received: model of type {type(model).__name__}"
        )
    definition = _without_training_metrics(json.loads(model.to_json()))
    definition.pop("compile_config", None)
    return definition


def _without_training_metrics(value: Any) -> Any:
    """``value`` with every bnncore object's flip-ratio metrics left out."""
    if isinstance(value, list):
        return [_without_training_metrics(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: _without_training_metrics(item) for key, item in value.items()}
    config = out.get("config")
    registered = out.get("registered_name")
    if isinstance(config, dict) and str(registered).startswith("bnncore>"):
        config.pop("flip_ratio_names", None)
        if out.get("module") == "bnncore.quantizers":
            config.pop("metrics", None)
    return out


def save(model: Any, directory: str | os.PathLike) -> Exported:
    """Writes ``definition.json`` and ``weights.safetensors`` into ``directory``.

    The directory is created if needed; existing files of those names are
    replaced (each file is written to a temporary name, then renamed).

    Args:
        model: A built ``keras.Model`` with float32 variables.
        directory: Where to write.

    Returns:
        The paths written and the weights file's size.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    weights_path = folder / WEIGHTS_FILE
    size = write_weights(model, weights_path)
    definition_path = folder / DEFINITION_FILE
    temporary = folder / f"{DEFINITION_FILE}.partial"
    temporary.write_text(json.dumps(to_definition(model), indent=1), encoding="utf-8")
    os.replace(temporary, definition_path)
    return Exported(definition_path, weights_path, size)


def load(directory: str | os.PathLike, custom_objects: dict | None = None) -> Any:
    """Rebuilds a model that :func:`save` wrote, with its weights.

    The definition goes through ``keras.models.model_from_json``: use this on
    your own files only (the service never deserializes client JSON with Keras).

    Args:
        directory: The directory :func:`save` wrote.
        custom_objects: Passed to ``keras.models.model_from_json``.

    Returns:
        The ``keras.Model``, with the file's weights assigned.
    """
    folder = Path(directory)
    text = (folder / DEFINITION_FILE).read_text(encoding="utf-8")
    model = keras.models.model_from_json(text, custom_objects=custom_objects)
    load_weights(model, folder / WEIGHTS_FILE)
    return model
