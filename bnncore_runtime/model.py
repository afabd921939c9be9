"""``load(path) -> Model``: an exported model, planned for the compiled core."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnncore_runtime import codec, container, planner
from bnncore_runtime import kernels as K
from bnncore_runtime.container import WeightsFileError, _short
from bnncore_runtime.definition import (
    MAX_DEFINITION_BYTES,
    DefinitionError,
    LayerSpec,
    parse_definition,
)
from bnncore_runtime.graph import Graph, ValueId
from bnncore_runtime.layers import (
    ExportFrontend,
    Spec,
    batchnorm_axis,
    infer_shapes,
    weight_shapes,
)
from bnncore_runtime.plan import CompiledPlan, default_threads
from bnncore_runtime.steps import FloatStep

__all__ = [
    "DEFINITION_FILE",
    "MAX_FILE_BYTES",
    "WEIGHTS_FILE",
    "Model",
    "TensorSpec",
    "from_bytes",
    "load",
    "read_file",
]

DEFINITION_FILE = "definition.json"
WEIGHTS_FILE = "weights.safetensors"
MAX_FILE_BYTES = 2**30
"""Default limit on the weights file's size (as :mod:`bnncore.export`'s)."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: its name, shape (``None`` for the batch) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


class Model(CompiledPlan):
    """An exported model whose every layer runs in the compiled core.

    Build it with :func:`load`. ``predict(x)`` takes a NumPy array (a list for
    several inputs) with the shape of :attr:`inputs` and returns float32
    arrays; it equals ``bnncore.engine.compile(model).predict`` bit for bit.

    Attributes:
        inputs: The model's inputs.
        outputs: The model's outputs.
        steps: The plan, in execution order.
        threads: Worker threads of the core.
    """

    def __init__(
        self,
        graph: Graph,
        steps: list[Any],
        specs: dict[ValueId, Spec],
        name: str,
        threads: int,
    ) -> None:
        super().__init__(
            steps,
            list(graph.inputs),
            list(graph.outputs),
            [tuple(shape) for shape in graph.input_shapes],
            ["float32"] * len(graph.inputs),
            name,
            threads,
        )
        self.inputs = [
            TensorSpec(str(value[0]), tuple(specs[value].shape))
            for value in graph.inputs
        ]
        self.outputs = [
            TensorSpec(str(value[0]), tuple(specs[value].shape))
            for value in graph.outputs
        ]

    @property
    def memory_bytes(self) -> int:
        """Bytes of parameters the plan holds: packed kernels (one bit per
        weight, padded to 64-bit words per output channel), float kernels and
        folded constants."""
        return self.weight_bytes

    def __repr__(self) -> str:
        return (
            f"<bnncore_runtime.Model {self.name!r}: {len(self.steps)} steps, "
            f"{self.memory_bytes:,} bytes of weights, isa={K.isa()!r}>"
        )


def read_file(
    path: str | os.PathLike,
    max_bytes: int,
    what: str,
    error: type[ValueError] = WeightsFileError,
) -> bytes:
    """The whole file, refused (before it is read) when larger than ``max_bytes``.

    Raises:
        error: naming ``what``, its size and the limit.
    """
    size = os.stat(path).st_size
    if size > max_bytes:
        raise error(f"{what}: {size:,} bytes exceeds the limit {max_bytes:,}")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while being read
        raise error(f"{what}: more than {max_bytes:,} bytes exceeds the limit")
    return data


def _attach(
    graph: Graph, decoded: codec.Decoded, model_name: str, specs: dict[ValueId, Spec]
) -> None:
    """Gives each layer its weights from the file; every stored tensor must
    belong to a layer, with the shape the layer's config implies."""
    unused = set(decoded.values)
    layers: dict[int, LayerSpec] = {}
    for node in graph.nodes:
        layer: LayerSpec = node.op
        shape = specs[node.inputs[0]].shape
        expected = weight_shapes(layer, shape)
        if id(layer) in layers:
            for key, want in expected.items():
                if layer.weights[key].shape != want:
                    raise WeightsFileError(
                        f"{layer.name}/{key}: shape {list(layer.weights[key].shape)} "
                        f"does not fit another call's input {list(shape)} "
                        f"(expected {list(want)})"
                    )
            continue
        layers[id(layer)] = layer
        prefixes = [layer.name, f"{model_name}/{layer.name}"]
        for key, want in expected.items():
            names = [f"{p}/{key}" for p in prefixes if f"{p}/{key}" in decoded.values]
            if not names:
                raise WeightsFileError(
                    f"{layer.name}/{key}: missing from the weights file (layer "
                    f"{layer.name!r} ({layer.class_name}) needs it)"
                )
            value = decoded.values[names[0]]
            if value.shape != want:
                raise WeightsFileError(
                    f"{names[0]}: shape {list(value.shape)} in the file, "
                    f"{list(want)} for layer {layer.name!r} ({layer.class_name}) "
                    f"on an input of shape {list(shape)}"
                )
            layer.weights[key] = value
            layer.encodings[key] = decoded.encodings[names[0]]
            unused.discard(names[0])
        if layer.class_name == "BatchNormalization":
            paths = [p for p in prefixes if p in decoded.batchnorms]
            if not paths:
                raise WeightsFileError(
                    f"{layer.name}: no folded BatchNormalization in the weights file "
                    "(the runtime reads BatchNormalization layers stored folded: "
                    "float32, without renorm)"
                )
            scale_name, offset_name = decoded.batchnorms[paths[0]]
            scale, offset = decoded.values[scale_name], decoded.values[offset_name]
            channels = shape[batchnorm_axis(layer, len(shape))]
            if scale.shape != (channels,):
                raise WeightsFileError(
                    f"{scale_name}: shape {list(scale.shape)} in the file, "
                    f"[{channels}] for layer {layer.name!r} on an input of shape "
                    f"{list(shape)}"
                )
            layer.batchnorm = (
                np.ascontiguousarray(scale, dtype=np.float32),
                np.ascontiguousarray(offset, dtype=np.float32),
            )
            unused.difference_update((scale_name, offset_name))
    if unused:
        raise WeightsFileError(
            f"the weights file has tensors no layer of {model_name!r} reads: "
            f"{_short(sorted(unused)[:5])}"
        )


def _threads(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"Expected a positive integer. Received: threads={threads!r}.")
    return threads


def load(
    path: str | os.PathLike,
    *,
    threads: int | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    max_header_bytes: int = container.MAX_HEADER_BYTES,
    max_elements: int = codec.MAX_ELEMENTS,
) -> Model:
    """Loads an export directory (``definition.json`` and ``weights.safetensors``,
    as ``bnncore.export.save`` writes them) into a :class:`Model`.

    The files are untrusted input: the weights are read with the same strict,
    bounded reader as ``bnncore.export.read_weights``, the definition as
    strict JSON whose layers must be ones the runtime knows, and every weight's
    shape is checked against its layer. Nothing is imported or evaluated.

    Args:
        path: The export directory.
        threads: Worker threads (default: ``BNN_ENGINE_THREADS`` when set,
            else the CPUs available to the process).
        max_bytes: Largest weights file read.
        max_header_bytes: Largest safetensors header read.
        max_elements: Most values the weights decode to.

    Returns:
        The model, planned for the compiled core.

    Raises:
        WeightsFileError: a malformed weights file, or one that does not fit
            the definition (a ``ValueError``).
        DefinitionError: a malformed definition (a ``ValueError``).
        UnsupportedLayerError: a layer the compiled core cannot run, named
            (a ``ValueError``): the runtime never falls back.
    """
    threads = _threads(threads)
    directory = os.fspath(path)  # os.path, not pathlib: a faster import
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Expected an export directory ({DEFINITION_FILE} and {WEIGHTS_FILE}). "
            f"Received: path={str(path)!r}, which is not a directory."
        )
    text = read_file(
        os.path.join(directory, DEFINITION_FILE), MAX_DEFINITION_BYTES, DEFINITION_FILE,
        DefinitionError,
    )  # fmt: skip
    name, graph = parse_definition(text)
    data = read_file(os.path.join(directory, WEIGHTS_FILE), max_bytes, "file")
    return _plan(name, graph, data, threads, max_header_bytes, max_elements)


def from_bytes(
    definition: str | bytes,
    weights: bytes,
    *,
    threads: int | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    max_header_bytes: int = container.MAX_HEADER_BYTES,
    max_elements: int = codec.MAX_ELEMENTS,
) -> Model:
    """:func:`load` for a definition and a weights file held in memory (for
    example read from a model store), with the same checks and limits.

    Args:
        definition: The text of a ``definition.json``.
        weights: The bytes of a ``weights.safetensors``.
        threads, max_bytes, max_header_bytes, max_elements: As for :func:`load`.
    """
    threads = _threads(threads)
    if not isinstance(definition, str | bytes):
        raise TypeError(
            "Expected the definition's JSON text (str or bytes). "
            f"Received: definition of type {type(definition).__name__}."
        )
    if not isinstance(weights, bytes | bytearray | memoryview):
        raise TypeError(
            "Expected the weights file's bytes. "
            f"Received: weights of type {type(weights).__name__}."
        )
    if len(weights) > max_bytes:
        raise WeightsFileError(
            f"file: {len(weights):,} bytes exceeds the limit {max_bytes:,}"
        )
    name, graph = parse_definition(definition)
    return _plan(name, graph, weights, threads, max_header_bytes, max_elements)


def _plan(
    name: str,
    graph: Graph,
    data: bytes | bytearray | memoryview,
    threads: int,
    max_header_bytes: int,
    max_elements: int,
) -> Model:
    metadata, entries, arrays = container.parse(data, max_header_bytes=max_header_bytes)
    del data
    decoded = codec.decode(metadata, entries, arrays, max_elements=max_elements)
    del arrays
    specs = infer_shapes(graph)
    _attach(graph, decoded, name, specs)
    steps = planner.build_plan(ExportFrontend(), graph, specs, "native")
    for step in steps:
        if isinstance(step, FloatStep) and step.fn is None:  # never: float_step raises
            raise RuntimeError(f"{step.name}: no native implementation")
    for node in graph.nodes:  # the plan holds what it needs
        node.op.weights.clear()
    return Model(graph, steps, specs, name, threads)
