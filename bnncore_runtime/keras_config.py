"""Keras model configs read as plain data: the one reader of their structure.

Keras writes a model's structure into its config (``model.get_config()``, or
the ``config`` of ``model.to_json()``): the layers in order, and for a
functional model every call of every layer (``inbound_nodes``) with its
arguments, where each tensor is a ``__keras_tensor__`` naming the call that
produced it (``keras_history``: layer name, call index, output index). This
module reads that structure and nothing else: configs are plain dicts (JSON
data), nothing is imported, deserialized or evaluated, and there is no
TensorFlow or Keras here. What a layer *is* (its class and arguments) stays in
:attr:`LayerConfig.config` for the caller to judge.

Its users: the profile's call sites (:mod:`bnncore.analysis.graph`), the
engine's graph (:mod:`bnncore.engine.graph`) and the service's Keras-JSON
translator (``bnncore_service.schemas.from_keras``), which adds its own,
stricter policy on top.

Example:
    >>> model = read_model(keras_model.get_config())
    >>> [(layer.name, [t.history for t in call.tensors])
    ...  for layer in model.layers for call in layer.calls]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = [
    "MAX_ARGUMENT_DEPTH",
    "MODEL_CLASSES",
    "Call",
    "History",
    "KerasConfigError",
    "KerasTensor",
    "LayerConfig",
    "ModelConfig",
    "Shape",
    "is_tensor",
    "read_call",
    "read_endpoints",
    "read_history",
    "read_layer",
    "read_model",
    "read_shape",
    "read_tensor",
]

Shape = tuple[int | None, ...]
ModelKind = Literal["functional", "sequential"]

MODEL_CLASSES = frozenset({"Functional", "Model", "Sequential"})
"""Class names Keras writes for a (nested) Functional or Sequential model."""

MAX_ARGUMENT_DEPTH = 32
"""Deepest nesting of lists and dicts read in a call's arguments (Keras
writes two or three levels); deeper is refused, not recursed into."""

_TENSOR = "__keras_tensor__"


class KerasConfigError(ValueError):
    """A config whose structure is not what Keras writes.

    Attributes:
        path: Where in the config (``config.layers[2].inbound_nodes[0]``).
        message: What was expected and what was received.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class History(NamedTuple):
    """Which call produced a tensor (Keras's ``keras_history``).

    Attributes:
        layer: The producing layer's name.
        node: Which call of that layer (0 for the first).
        tensor: Which output of that call (0 for the first).
    """

    layer: str
    node: int
    tensor: int


@dataclass(frozen=True)
class KerasTensor:
    """A tensor in a call's arguments (a serialized ``__keras_tensor__``).

    Attributes:
        history: The call and output that produced it.
        shape: Its shape, batch first (``None`` when the config states none).
        dtype: Its dtype as written (``None`` when absent).
        path: Where it is in the config.
        raw: The serialized tensor itself, for callers with a stricter schema.
    """

    history: History
    shape: Shape | None
    dtype: Any
    path: str
    raw: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    """One call of a layer (an ``inbound_nodes`` entry).

    Attributes:
        args: The positional arguments, a :class:`KerasTensor` in place of
            each serialized tensor; other values are kept as written.
        kwargs: The keyword arguments, likewise.
        tensors: The tensors of ``args`` then ``kwargs``, flattened in order
            (dict values in their order).
        path: Where the call is in the config.
    """

    args: list[Any]
    kwargs: dict[str, Any]
    tensors: tuple[KerasTensor, ...]
    path: str


@dataclass(frozen=True)
class LayerConfig:
    """One entry of a model's ``layers``.

    Attributes:
        name: The layer's name (the entry's ``name``, else ``config.name``).
        class_name: Its class name as written (``None`` when not a string).
        module: Its ``module`` as written.
        registered_name: Its ``registered_name`` as written.
        config: Its ``config`` (the layer's arguments), as written.
        calls: Its calls in this model (none in a Sequential model, and none
            for an ``InputLayer``).
        path: Where the entry is.
        raw: The entry itself.
    """

    name: str
    class_name: str | None
    module: Any
    registered_name: Any
    config: dict[str, Any]
    calls: tuple[Call, ...]
    path: str
    raw: dict[str, Any] = field(compare=False, repr=False)

    @property
    def is_input(self) -> bool:
        """Whether this is an ``InputLayer`` (a model input)."""
        return self.class_name == "InputLayer"

    @property
    def is_model(self) -> bool:
        """Whether this layer is itself a Functional or Sequential model."""
        return self.class_name in MODEL_CLASSES and isinstance(
            self.config.get("layers"), list | tuple
        )

    @property
    def is_functional(self) -> bool:
        """Whether this layer is a Functional model (a subclass included: its
        config has ``input_layers``), whose calls Keras numbers from 1 in a
        model's ``input_layers`` / ``output_layers``."""
        return self.class_name == "Functional" or (
            self.is_model and "input_layers" in self.config
        )

    def as_model(self) -> ModelConfig:
        """This layer's config read as a nested model (see :attr:`is_model`).

        Raises:
            KerasConfigError: a config that is not a model's.
        """
        kind: ModelKind = (
            "sequential" if self.class_name == "Sequential" else "functional"
        )
        return read_model(self.config, f"{self.path}.config", kind)


@dataclass(frozen=True)
class ModelConfig:
    """A Functional or Sequential model's config.

    Attributes:
        kind: ``"functional"`` or ``"sequential"``.
        name: The model's name (``None`` when absent).
        layers: Its layers in the config's order.
        inputs: The model's inputs (``input_layers``); for a Sequential model
            its first layer's output when that is an ``InputLayer``, else none.
        outputs: The model's outputs (``output_layers``); for a Sequential
            model its last layer's output. Their ``node`` indexes the layer's
            :attr:`LayerConfig.calls`, as in ``keras_history``: Keras numbers
            a nested Functional model's calls from 1 in ``input_layers`` and
            ``output_layers`` (0 is the call that built it, not in this
            model), and from 0 in ``inbound_nodes``; the reader renumbers the
            former.
        path: Where the config is.
    """

    kind: ModelKind
    name: str | None
    layers: tuple[LayerConfig, ...]
    inputs: tuple[History, ...]
    outputs: tuple[History, ...]
    path: str

    def layer(self, name: str) -> LayerConfig:
        """The layer named ``name``.

        Raises:
            KeyError: no layer has that name.
        """
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def chain(self) -> Iterator[tuple[LayerConfig, History | None]]:
        """A Sequential model's layers after its ``InputLayer``, each with the
        output it is applied to (``None`` for the first layer of a model
        without an ``InputLayer``, which is applied to the model's input)."""
        layers = list(self.layers)
        previous = None
        if layers and layers[0].is_input:
            previous = History(layers[0].name, 0, 0)
            layers = layers[1:]
        for layer in layers:
            yield layer, previous
            previous = History(layer.name, 0, 0)


def read_shape(value: Any, path: str) -> Shape:
    """A shape as Keras writes it: a list of sizes, ``null`` for unknown.

    Raises:
        KerasConfigError: anything else.
    """
    if not isinstance(value, list | tuple) or not all(
        d is None or _index(d) for d in value
    ):
        raise KerasConfigError(
            path,
            "expected a list of sizes (non-negative integers or null), "
            f"received {_short(value)}",
        )
    return tuple(value)


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a serialized Keras tensor (``__keras_tensor__``)."""
    return isinstance(value, dict) and value.get("class_name") == _TENSOR


def read_history(value: Any, path: str) -> History:
    """``[layer name, call index, output index]`` as a :class:`History`.

    Raises:
        KerasConfigError: anything else.
    """
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not isinstance(value[0], str)
        or not (_index(value[1]) and _index(value[2]))
    ):
        raise KerasConfigError(
            path,
            "expected [layer name, call index, output index], received "
            f"{_short(value)}",
        )
    return History(value[0], value[1], value[2])


def read_tensor(value: Any, path: str) -> KerasTensor:
    """A serialized ``__keras_tensor__`` (see :func:`is_tensor`).

    Raises:
        KerasConfigError: not a tensor, or a malformed history or shape.
    """
    if not is_tensor(value):
        raise KerasConfigError(path, f"expected a {_TENSOR}, received {_short(value)}")
    config = value.get("config")
    if not isinstance(config, dict):
        raise KerasConfigError(
            f"{path}.config", f"expected an object, received {_short(config)}"
        )
    history = read_history(config.get("keras_history"), f"{path}.config.keras_history")
    shape = config.get("shape")
    return KerasTensor(
        history=history,
        shape=None if shape is None else read_shape(shape, f"{path}.config.shape"),
        dtype=config.get("dtype"),
        path=path,
        raw=value,
    )


def _arguments(value: Any, path: str, found: list[KerasTensor], depth: int = 0) -> Any:
    if is_tensor(value):
        tensor = read_tensor(value, path)
        found.append(tensor)
        return tensor
    if isinstance(value, dict | list | tuple) and depth >= MAX_ARGUMENT_DEPTH:
        raise KerasConfigError(
            path, f"arguments nested deeper than {MAX_ARGUMENT_DEPTH} levels"
        )
    if isinstance(value, dict):
        return {
            key: _arguments(item, f"{path}.{key}", found, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        items = [
            _arguments(item, f"{path}[{i}]", found, depth + 1)
            for i, item in enumerate(value)
        ]
        return items if isinstance(value, list) else tuple(items)
    return value


def read_call(node: Any, path: str) -> Call:
    """One ``inbound_nodes`` entry: ``{"args": [...], "kwargs": {...}}``.

    Raises:
        KerasConfigError: not an object, ``args`` not a list, ``kwargs`` not
            an object, a malformed tensor, or arguments nested deeper than
            :data:`MAX_ARGUMENT_DEPTH`.
    """
    if not isinstance(node, dict):
        raise KerasConfigError(path, f"expected an object, received {_short(node)}")
    args = node.get("args")
    args = [] if args is None else args
    kwargs = node.get("kwargs")
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, list | tuple):  # get_config() writes tuples
        raise KerasConfigError(
            f"{path}.args", f"expected a list, received {_short(args)}"
        )
    if not isinstance(kwargs, dict):
        raise KerasConfigError(
            f"{path}.kwargs", f"expected an object, received {_short(kwargs)}"
        )
    found: list[KerasTensor] = []
    read_args = list(_arguments(args, f"{path}.args", found))
    read_kwargs = _arguments(kwargs, f"{path}.kwargs", found)
    return Call(read_args, read_kwargs, tuple(found), path)


def read_endpoints(value: Any, path: str) -> tuple[History, ...]:
    """A model's ``input_layers`` / ``output_layers``: one
    ``[name, call, output]`` or a list of them.

    Raises:
        KerasConfigError: anything else (Keras's dict-structured inputs and
            outputs included).
    """
    if (
        isinstance(value, list | tuple)
        and len(value) == 3
        and isinstance(value[0], str)
    ):
        return (read_history(value, path),)
    if not isinstance(value, list | tuple):
        raise KerasConfigError(
            path,
            "expected [layer name, call index, output index] or a list of them, "
            f"received {_short(value)}",
        )
    return tuple(read_history(item, f"{path}[{i}]") for i, item in enumerate(value))


def read_layer(entry: Any, path: str, *, calls: bool = True) -> LayerConfig:
    """One entry of a model's ``layers``.

    Args:
        entry: The entry (``module``, ``class_name``, ``config``, ...).
        path: Where it is, for error messages.
        calls: Whether to read its ``inbound_nodes``.

    Raises:
        KerasConfigError: not an object, no ``config`` object, no name, or
            malformed ``inbound_nodes``.
    """
    if not isinstance(entry, dict):
        raise KerasConfigError(
            path, f"expected a layer object, received {_short(entry)}"
        )
    config = entry.get("config")
    if not isinstance(config, dict):
        raise KerasConfigError(
            f"{path}.config", f"expected an object, received {_short(config)}"
        )
    named = "name" in entry  # Keras writes it beside config in a Functional model
    name = entry["name"] if named else config.get("name")
    if not isinstance(name, str):
        raise KerasConfigError(
            f"{path}.name" if named else f"{path}.config.name",
            f"expected a name, received {_short(name)}",
        )
    read: tuple[Call, ...] = ()
    nodes = entry.get("inbound_nodes")
    if calls and nodes is not None:
        if not isinstance(nodes, list | tuple):
            raise KerasConfigError(
                f"{path}.inbound_nodes", f"expected a list, received {_short(nodes)}"
            )
        read = tuple(
            read_call(node, f"{path}.inbound_nodes[{i}]")
            for i, node in enumerate(nodes)
        )
    class_name = entry.get("class_name")
    return LayerConfig(
        name=name,
        class_name=class_name if isinstance(class_name, str) else None,
        module=entry.get("module"),
        registered_name=entry.get("registered_name"),
        config=config,
        calls=read,
        path=path,
        raw=entry,
    )


def _as_calls(
    layers: tuple[LayerConfig, ...], ends: tuple[History, ...], path: str
) -> tuple[History, ...]:
    """Model inputs/outputs with a nested Functional model's node renumbered
    to index its calls in this model (see :attr:`ModelConfig.outputs`)."""
    functional = {layer.name for layer in layers if layer.is_functional}
    read = []
    for i, end in enumerate(ends):
        if end.layer in functional:
            if end.node < 1:
                raise KerasConfigError(
                    f"{path}[{i}]" if len(ends) > 1 else path,
                    f"expected a call index of 1 or more for the nested "
                    f"Functional model {end.layer!r}, received {end.node}",
                )
            end = History(end.layer, end.node - 1, end.tensor)
        read.append(end)
    return tuple(read)


def read_model(
    config: Any, path: str = "config", kind: ModelKind | None = None
) -> ModelConfig:
    """A model's config: ``model.get_config()``, or the ``config`` of
    ``model.to_json()``.

    Args:
        config: The config.
        path: Where it is, for error messages.
        kind: ``"functional"`` or ``"sequential"``; by default functional when
            the config names ``input_layers`` or ``output_layers``.

    Returns:
        The model's layers, their calls and its inputs and outputs.

    Raises:
        KerasConfigError: naming the first field that is not what Keras writes.
    """
    if not isinstance(config, dict):
        raise KerasConfigError(path, f"expected an object, received {_short(config)}")
    if kind is None:
        functional = "input_layers" in config or "output_layers" in config
        kind = "functional" if functional else "sequential"
    entries = config.get("layers")
    if not isinstance(entries, list | tuple):
        raise KerasConfigError(
            f"{path}.layers", f"expected a list of layers, received {_short(entries)}"
        )
    name = config.get("name")
    layers = tuple(
        read_layer(entry, f"{path}.layers[{i}]", calls=kind == "functional")
        for i, entry in enumerate(entries)
    )
    if kind == "functional":
        inputs = _as_calls(
            layers,
            read_endpoints(config.get("input_layers"), f"{path}.input_layers"),
            f"{path}.input_layers",
        )
        outputs = _as_calls(
            layers,
            read_endpoints(config.get("output_layers"), f"{path}.output_layers"),
            f"{path}.output_layers",
        )
    else:
        first = layers[0] if layers else None
        inputs = (History(first.name, 0, 0),) if first and first.is_input else ()
        outputs = (History(layers[-1].name, 0, 0),) if layers else ()
    return ModelConfig(
        kind=kind,
        name=name if isinstance(name, str) else None,
        layers=layers,
        inputs=inputs,
        outputs=outputs,
        path=path,
    )
