"""An export's ``definition.json`` (Keras's JSON form of a model) as a graph.

The definition is untrusted input: it is parsed as strict JSON (no duplicate
keys, no NaN, bounded size and nesting), nothing in it is imported or
evaluated, and only the structure is read (by the one Keras-config reader,
:mod:`bnncore_runtime.keras_config`): the layers' class names, their configs
and the calls between them. Sequential and Functional models are
read; anything else (nested models, subclassed models, custom layers) is
refused with an error naming it. Which layers can run is decided later, by
:mod:`bnncore_runtime.layers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bnncore_runtime.container import _short, load_json
from bnncore_runtime.graph import (
    Graph,
    Node,
    TensorRef,
    ValueId,
    add_extra_outputs,
    prune,
    toposort,
)
from bnncore_runtime.keras_config import (
    MODEL_CLASSES,
    Call,
    History,
    KerasConfigError,
    KerasTensor,
    ModelConfig,
    read_model,
)

__all__ = [
    "MAX_DEFINITION_BYTES",
    "MAX_LAYERS",
    "DefinitionError",
    "LayerSpec",
    "parse_definition",
]

MAX_DEFINITION_BYTES = 64 * 2**20
"""Largest ``definition.json`` read, in bytes."""
MAX_LAYERS = 10_000
"""Most layers (and calls) a definition may have."""

_ROOT = "definition.config"


class DefinitionError(ValueError):
    """A ``definition.json`` that is malformed or not a model the runtime reads."""


@dataclass(eq=False)
class LayerSpec:
    """One layer of a definition: what the planner's front end reads.

    Attributes:
        name: The layer's name.
        class_name: Its Keras class name (``QuantConv2D``, ``Dense``, ...).
        config: Its config, as in the definition.
        weights: Its variables' forward values by short name (``kernel``,
            ``bias``), filled from the weights file.
        batchnorm: A BatchNormalization's folded ``(scale, offset)``.
        encodings: How each of ``weights`` was stored (``float32``,
            ``sign_bits``, ``levels``).
    """

    name: str
    class_name: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    batchnorm: tuple[np.ndarray, np.ndarray] | None = None
    encodings: dict[str, str] = field(default_factory=dict)


def _fail(path: str, message: str) -> DefinitionError:
    return DefinitionError(f"{path}: {message}")


def _dict(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, received {_short(value)}")
    return value


def _name(path: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 1024:
        raise _fail(path, f"expected a name (1 to 1024 characters), received "
                          f"{_short(value)}")  # fmt: skip
    return value


def _batch_shape(path: str, config: dict[str, Any]) -> tuple[int | None, ...]:
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    if (
        not isinstance(shape, list)
        or not 2 <= len(shape) <= 8
        or shape[0] is not None
        or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 2**31
            for d in shape[1:]
        )
    ):
        raise _fail(
            f"{path}.batch_shape",
            "expected [null, d1, ...] with 1 to 7 positive sizes, received "
            f"{_short(shape)}",
        )
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    if dtype != "float32":
        raise _fail(f"{path}.dtype", f"received {_short(dtype)}, allowed: 'float32'")
    return tuple(shape)


def _read(
    config: dict[str, Any], kind: Literal["functional", "sequential"]
) -> tuple[ModelConfig, list[LayerSpec]]:
    """The model's structure, read by :func:`read_model` within the bounds,
    and a :class:`LayerSpec` of each layer (named by its ``config.name``, the
    name the weights file uses)."""
    entries = config.get("layers")
    if isinstance(entries, list) and len(entries) > MAX_LAYERS:
        raise _fail(f"{_ROOT}.layers", f"{len(entries):,} layers exceed {MAX_LAYERS:,}")
    try:
        model = read_model(config, _ROOT, kind)
    except KerasConfigError as error:
        raise DefinitionError(str(error)) from None
    specs = []
    for layer in model.layers:
        if layer.class_name is None:
            raise _fail(
                f"{layer.path}.class_name",
                f"received {_short(layer.raw.get('class_name'))}",
            )
        name = _name(f"{layer.path}.config.name", layer.config.get("name"))
        specs.append(LayerSpec(name, layer.class_name, layer.config))
    if len({spec.name for spec in specs}) != len(specs):
        raise _fail(f"{_ROOT}.layers", "two layers have the same name")
    return model, specs


def _value(history: History, path: str, names: set[str]) -> ValueId:
    if history.node >= MAX_LAYERS or history.tensor >= MAX_LAYERS:
        raise _fail(
            path,
            f"expected [layer name, node, tensor] with indexes below "
            f"{MAX_LAYERS:,}, received {_short(list(history))}",
        )
    if history.layer not in names:
        raise _fail(path, f"no layer named {history.layer!r}")
    return tuple(history)


def _as_written(value: Any) -> Any:
    """A call argument as the definition writes it (for messages)."""
    if isinstance(value, KerasTensor):
        return value.raw
    if isinstance(value, list):
        return [_as_written(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_written(item) for key, item in value.items()}
    return value


def _argument(value: Any, path: str, names: set[str], depth: int = 0) -> Any:
    """A call argument: a tensor, a list of tensors, or a plain constant."""
    if isinstance(value, KerasTensor):
        where = f"{value.path}.config.keras_history"
        return TensorRef(_value(value.history, where, names), None)
    if isinstance(value, list) and depth < 2:
        return [
            _argument(item, f"{path}[{i}]", names, depth + 1)
            for i, item in enumerate(value)
        ]
    if value is None or isinstance(value, bool):
        return value
    raise _fail(path, f"unsupported call argument {_short(_as_written(value))}")


def _node(spec: LayerSpec, index: int, call: Call, names: set[str]) -> Node:
    """The graph node of one call of a layer."""
    for key, value in call.kwargs.items():
        if key not in ("mask", "training") or value not in (None, False):
            raise _fail(
                f"{call.path}.kwargs",
                f"unsupported keyword argument {key}={_short(_as_written(value))}",
            )
    args = _argument(call.args, f"{call.path}.args", names)
    return Node(spec, args, {}, [(spec.name, index, 0)])


Parsed = tuple[list[Node], list[ValueId], list[ValueId], list[tuple]]


def _functional(config: dict[str, Any]) -> Parsed:
    model, specs = _read(config, "functional")
    names = {spec.name for spec in specs}
    shapes: dict[str, tuple] = {}
    nodes: list[Node] = []
    for layer, spec in zip(model.layers, specs, strict=True):
        if layer.is_input:
            shapes[spec.name] = _batch_shape(f"{layer.path}.config", layer.config)
            continue
        if len(nodes) + len(layer.calls) > MAX_LAYERS:
            raise _fail(layer.path, f"more than {MAX_LAYERS:,} layer calls")
        nodes.extend(
            _node(spec, index, call, names) for index, call in enumerate(layer.calls)
        )
    ends = []
    for field_name, histories in (
        ("input_layers", model.inputs),
        ("output_layers", model.outputs),
    ):
        path = f"{_ROOT}.{field_name}"
        ends.append([_value(h, f"{path}[{i}]", names) for i, h in enumerate(histories)])
    inputs, outputs = ends
    input_shapes = []
    for value in inputs:
        if value[0] not in shapes or value[1:] != (0, 0):
            raise _fail(f"{_ROOT}.input_layers", f"{value[0]!r} is not an InputLayer")
        input_shapes.append(shapes[value[0]])
    return nodes, inputs, outputs, input_shapes


def _sequential(config: dict[str, Any]) -> Parsed:
    model, specs = _read(config, "sequential")
    layers = list(zip(model.layers, specs, strict=True))
    if layers and layers[0][0].is_input:
        shape = _batch_shape(f"{layers[0][0].path}.config", layers[0][0].config)
        layers = layers[1:]
    else:
        shape = _batch_shape(_ROOT, {"batch_shape": config.get("build_input_shape")})
    source: ValueId = ("input", 0, 0)
    current = source
    nodes = []
    for layer, spec in layers:
        if layer.is_input:
            raise _fail(layer.path, "a second InputLayer")
        out = (spec.name, 0, 0)
        nodes.append(Node(spec, [TensorRef(current, None)], {}, [out]))
        current = out
    return nodes, [source], [current], [shape]


def parse_definition(text: str | bytes) -> tuple[str, Graph]:
    """Reads a definition into ``(model name, graph)``.

    The graph's nodes have :class:`LayerSpec` ops (without weights yet).

    Raises:
        DefinitionError: naming the field, the value received and what is
            allowed.
    """
    if len(text) > MAX_DEFINITION_BYTES:
        raise _fail(
            "definition",
            f"{len(text):,} bytes exceed the limit {MAX_DEFINITION_BYTES:,}",
        )
    try:
        raw = load_json("definition", text)
    except ValueError as error:
        raise DefinitionError(str(error)) from None
    raw = _dict("definition", raw)
    class_name = raw.get("class_name")
    config = _dict(_ROOT, raw.get("config"))
    name = config.get("name", "model")
    name = _name(f"{_ROOT}.name", name)
    if class_name == "Sequential":
        nodes, inputs, outputs, shapes = _sequential(config)
    elif class_name in ("Functional", "Model") and "input_layers" in config:
        nodes, inputs, outputs, shapes = _functional(config)
    else:
        raise _fail(
            "definition.class_name",
            f"received {_short(class_name)}, allowed: 'Sequential', 'Functional' "
            "(a subclassed model needs its Python code: use bnncore.engine)",
        )
    for node in nodes:
        if node.op.class_name in MODEL_CLASSES:
            raise _fail(
                f"definition layer {node.op.name!r}",
                f"nested models ({node.op.class_name}) are not read by the "
                "runtime; export the model flattened, or use bnncore.engine",
            )
    add_extra_outputs(nodes, outputs)
    try:
        ordered = toposort(nodes, inputs)
    except Exception as error:
        raise _fail(
            "definition", f"the layers' calls do not form a graph ({error})"
        ) from None
    graph = Graph(prune(ordered, outputs), inputs, outputs, shapes)
    return name, graph
