"""An export's ``definition.json`` (Keras's JSON form of a model) as a graph.

The definition is untrusted input: it is parsed as strict JSON (no duplicate
keys, no NaN, bounded size and nesting), nothing in it is imported or
evaluated, and only the structure is read: the layers' class names, their
configs and the calls between them. Sequential and Functional models are
read; anything else (nested models, subclassed models, custom layers) is
refused with an error naming it. Which layers can run is decided later, by
:mod:`bnncore_runtime.layers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def _fail(where: str, message: str) -> DefinitionError:
    return DefinitionError(f"definition{where}: {message}")


def _dict(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"expected an object, received {_short(value)}")
    return value


def _list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, f"expected a list, received {_short(value)}")
    return value


def _name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 1024:
        raise _fail(where, f"expected a name (1 to 1024 characters), received "
                           f"{_short(value)}")  # fmt: skip
    return value


def _batch_shape(where: str, config: dict[str, Any]) -> tuple[int | None, ...]:
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
            f"{where}.batch_shape",
            "expected [null, d1, ...] with 1 to 7 positive sizes, received "
            f"{_short(shape)}",
        )
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    if dtype != "float32":
        raise _fail(f"{where}.dtype", f"received {_short(dtype)}, allowed: 'float32'")
    return tuple(shape)


def _layer(where: str, raw: Any) -> LayerSpec:
    raw = _dict(where, raw)
    class_name = raw.get("class_name")
    if not isinstance(class_name, str):
        raise _fail(f"{where}.class_name", f"received {_short(class_name)}")
    config = _dict(f"{where}.config", raw.get("config"))
    name = _name(f"{where}.config.name", config.get("name"))
    return LayerSpec(name, class_name, config)


def _tensor(where: str, raw: Any, names: set[str]) -> TensorRef:
    config = _dict(where, raw.get("config"))
    history = config.get("keras_history")
    if (
        not isinstance(history, list)
        or len(history) != 3
        or not isinstance(history[0], str)
        or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < MAX_LAYERS
            for i in history[1:]
        )
    ):
        raise _fail(
            f"{where}.keras_history",
            f"expected [layer name, node, tensor], received {_short(history)}",
        )
    if history[0] not in names:
        raise _fail(f"{where}.keras_history", f"no layer named {history[0]!r}")
    return TensorRef((history[0], history[1], history[2]), None)


def _call_argument(where: str, raw: Any, names: set[str], depth: int = 0) -> Any:
    """A call argument: a tensor, a list of tensors, or a plain constant."""
    if isinstance(raw, dict):
        if raw.get("class_name") == "__keras_tensor__":
            return _tensor(where, raw, names)
        raise _fail(where, f"unsupported call argument {_short(raw)}")
    if isinstance(raw, list) and depth < 2:
        return [
            _call_argument(f"{where}[{i}]", item, names, depth + 1)
            for i, item in enumerate(raw)
        ]
    if raw is None or isinstance(raw, bool):
        return raw
    raise _fail(where, f"unsupported call argument {_short(raw)}")


def _entries(where: str, raw: Any, names: set[str]) -> list[ValueId]:
    raw = _list(where, raw)
    if len(raw) == 3 and isinstance(raw[0], str):
        raw = [raw]
    values: list[ValueId] = []
    for index, item in enumerate(raw):
        ref = _tensor(f"{where}[{index}]", {"config": {"keras_history": item}}, names)
        values.append(ref.value)
    return values


Parsed = tuple[list[Node], list[ValueId], list[ValueId], list[tuple]]


def _functional(config: dict[str, Any]) -> Parsed:
    raw_layers = _list(".config.layers", config.get("layers"))
    if len(raw_layers) > MAX_LAYERS:
        raise _fail(
            ".config.layers", f"{len(raw_layers):,} layers exceed {MAX_LAYERS:,}"
        )
    layers = [_layer(f".config.layers[{i}]", r) for i, r in enumerate(raw_layers)]
    names = {layer.name for layer in layers}
    if len(names) != len(layers):
        raise _fail(".config.layers", "two layers have the same name")
    shapes: dict[str, tuple] = {}
    nodes: list[Node] = []
    for index, (layer, raw) in enumerate(zip(layers, raw_layers, strict=True)):
        where = f".config.layers[{index}]"
        if layer.class_name == "InputLayer":
            shapes[layer.name] = _batch_shape(f"{where}.config", layer.config)
            continue
        inbound = _list(f"{where}.inbound_nodes", raw.get("inbound_nodes", []))
        if len(nodes) + len(inbound) > MAX_LAYERS:
            raise _fail(where, f"more than {MAX_LAYERS:,} layer calls")
        for node_index, call in enumerate(inbound):
            call_where = f"{where}.inbound_nodes[{node_index}]"
            call = _dict(call_where, call)
            args = _call_argument(f"{call_where}.args", call.get("args", []), names)
            kwargs = _dict(f"{call_where}.kwargs", call.get("kwargs", {}))
            for key, value in kwargs.items():
                if key not in ("mask", "training") or value not in (None, False):
                    raise _fail(
                        f"{call_where}.kwargs",
                        f"unsupported keyword argument {key}={_short(value)}",
                    )
            out = (layer.name, node_index, 0)
            nodes.append(Node(layer, list(args), {}, [out]))
    inputs = _entries(".config.input_layers", config.get("input_layers"), names)
    outputs = _entries(".config.output_layers", config.get("output_layers"), names)
    input_shapes = []
    for value in inputs:
        if value[0] not in shapes or value[1:] != (0, 0):
            raise _fail(".config.input_layers", f"{value[0]!r} is not an InputLayer")
        input_shapes.append(shapes[value[0]])
    return nodes, inputs, outputs, input_shapes


def _sequential(config: dict[str, Any]) -> Parsed:
    raw_layers = _list(".config.layers", config.get("layers"))
    if len(raw_layers) > MAX_LAYERS:
        raise _fail(
            ".config.layers", f"{len(raw_layers):,} layers exceed {MAX_LAYERS:,}"
        )
    layers = [_layer(f".config.layers[{i}]", r) for i, r in enumerate(raw_layers)]
    if len({layer.name for layer in layers}) != len(layers):
        raise _fail(".config.layers", "two layers have the same name")
    if layers and layers[0].class_name == "InputLayer":
        shape = _batch_shape(".config.layers[0].config", layers[0].config)
        layers = layers[1:]
    else:
        shape = _batch_shape(
            ".config", {"batch_shape": config.get("build_input_shape")}
        )
    source: ValueId = ("input", 0, 0)
    current = source
    nodes = []
    for index, layer in enumerate(layers):
        if layer.class_name == "InputLayer":
            raise _fail(f".config.layers[{index + 1}]", "a second InputLayer")
        out = (layer.name, 0, 0)
        nodes.append(Node(layer, [TensorRef(current, None)], {}, [out]))
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
            "", f"{len(text):,} bytes exceed the limit {MAX_DEFINITION_BYTES:,}"
        )
    try:
        raw = load_json("definition", text)
    except ValueError as error:
        raise DefinitionError(str(error)) from None
    raw = _dict("", raw)
    class_name = raw.get("class_name")
    config = _dict(".config", raw.get("config"))
    name = config.get("name", "model")
    name = _name(".config.name", name)
    if class_name == "Sequential":
        nodes, inputs, outputs, shapes = _sequential(config)
    elif class_name in ("Functional", "Model") and "input_layers" in config:
        nodes, inputs, outputs, shapes = _functional(config)
    else:
        raise _fail(
            ".class_name",
            f"received {_short(class_name)}, allowed: 'Sequential', 'Functional' "
            "(a subclassed model needs its Python code: use bnncore.engine)",
        )
    for node in nodes:
        if node.op.class_name in ("Sequential", "Functional", "Model"):
            raise _fail(
                f" layer {node.op.name!r}",
                f"nested models ({node.op.class_name}) are not read by the "
                "runtime; export the model flattened, or use bnncore.engine",
            )
    add_extra_outputs(nodes, outputs)
    try:
        ordered = toposort(nodes, inputs)
    except Exception as error:
        raise _fail("", f"the layers' calls do not form a graph ({error})") from None
    graph = Graph(prune(ordered, outputs), inputs, outputs, shapes)
    return name, graph
