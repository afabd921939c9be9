"""Translator of Keras's ``model.to_json()`` into the service's graph definition.

The translator returns plain data (:class:`Translation`): the graph
definition's fields, which :mod:`bnncore_service.schemas.definitions`
validates as a ``Graph``, so this module imports no definition schema (and the
definitions import it, not the reverse). The structure of the document
(layers, calls, tensors, nested Sequential models, inputs and outputs) is read
by the library's one Keras-config reader, :mod:`bnncore_runtime.keras_config`;
this module adds the service's policy on top.

The document is read as plain data by this module: every layer's
``class_name`` must be in the allow-list, every ``module`` and
``registered_name`` must point where that class really lives (``keras.layers``
or ``bnncore``), and every configuration key must be an argument of the
allow-listed layer (or one of a few Keras bookkeeping keys holding their
harmless default). Nothing is ever passed to Keras deserialization.

Nothing in the document is silently dropped: every key is either read,
checked to hold a harmless default, or refused. What the document states
about shapes (each layer's ``build_config``, the ``shape`` of each tensor
reference, the model's ``build_config`` and ``build_input_shape``) is
collected as :class:`ShapeClaim` s and compared with the estimate's shapes by
:func:`bnncore_service.keras_json.check_shapes`. ``compile_config``
(training configuration: optimizer, loss, metrics) is refused unless empty:
the service builds models for inference only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from bnncore_runtime.keras_config import (
    KerasConfigError,
    KerasTensor,
    read_call,
    read_endpoints,
    read_model,
)
from bnncore_service.schemas.layers import LAYER_TYPES

__all__ = [
    "ShapeClaim",
    "Translation",
    "TranslationError",
    "translate",
]

T = TypeVar("T")

_ANY = object()
_TOP_MODULES = {None, "keras", "keras.models", "keras.src.models.functional"}
_TOP_CLASSES = {"Sequential", "Functional", "Model"}
_COMPONENT_MODULES = {
    "keras.initializers": None,
    "keras.regularizers": None,
    "keras.constraints": None,
    "bnncore.constraints": "bnncore",
    "bnncore.quantizers": "bnncore",
}
# Keras bookkeeping keys that carry no model information when they hold
# these values; any other value is refused.
_BENIGN = {
    "quantization_config": None,
    "output_padding": None,
    "implementation": 1,
    "synchronized": False,
    "renorm": False,
    "renorm_clipping": None,
    "renorm_momentum": _ANY,
    "sparse": False,
    "ragged": False,
    "optional": False,
    "batch_size": None,
    "input_axes": None,
    "output_axes": None,
}
_CLASS_ALIASES = {"InputLayer": "Input"}
# Classes Keras defines outside its public modules, each read as an
# allow-listed type with the service's own implementation (nothing of the
# module is imported): (module, class_name) → layer type.
_PRIVATE_CLASSES = {("keras.src.applications.convnext", "LayerScale"): "LayerScale"}
# Functional operations on tensors (``x + y``), written as op nodes: their
# config is only a name and their inputs are positional arguments.
_OPS = {("keras.src.ops.numpy", "Add"): "Add"}
_ENTRY_KEYS = {"module", "class_name", "config", "registered_name"}
_LAYER_KEYS = _ENTRY_KEYS | {"build_config", "name", "inbound_nodes"}
_TENSOR_KEYS = {"class_name", "config"}
_TENSOR_CONFIG_KEYS = {"shape", "dtype", "keras_history"}
_NODE_KEYS = {"args", "kwargs"}
_MODEL_CONFIG_KEYS = {
    "name",
    "trainable",
    "dtype",
    "layers",
    "input_layers",
    "output_layers",
    "build_input_shape",
}


@dataclass(frozen=True)
class ShapeClaim:
    """A shape the document states, to be checked against the model's.

    Attributes:
        path: Where it is stated (``config.layers[2].build_config.input_shape``).
        sources: The layers whose output shapes it states, in order.
        value: What the document says: one shape (batch first, ``null``) for
            one source, a list of shapes for several (or when ``many``).
        many: Whether ``value`` is a list of shapes even for one source.
    """

    path: str
    sources: tuple[str, ...]
    value: Any
    many: bool = False


class TranslationError(ValueError):
    """A Keras JSON document that is not a model of allowed layers.

    The message starts with the path of the offending field.
    """


def _fail(path: str, message: str) -> TranslationError:
    return TranslationError(f"{path}: {message}")


@dataclass(frozen=True)
class Translation:
    """A Keras JSON document translated into plain data.

    Attributes:
        graph: The graph definition's fields (``name``, ``layers``,
            ``outputs``), to validate as a ``Graph``.
        claims: The shapes the document states, to check against the
            estimate once it is known.
        sources: For each layer of :attr:`graph`, where the document states it
            and its entry (a nested Sequential model's layers are in its
            ``config.layers``), to name the field in messages.
    """

    graph: dict[str, Any]
    claims: tuple[ShapeClaim, ...]
    sources: tuple[tuple[str, Any], ...]

    def refusal(self, error: Mapping[str, Any]) -> TranslationError:
        """A validation error of :attr:`graph` (one of pydantic's
        ``errors()``) as a refusal naming the document's field."""
        loc = [str(p) for p in error["loc"] if not str(p)[:1].isupper()]
        where, named = "config", ""
        if len(loc) >= 2 and loc[0] == "layers":
            path, entry = self.sources[int(loc[1])]
            where = f"{path}.config" + "".join(f".{p}" for p in loc[2:])
            named = _named(entry)
        elif loc:
            where = "config." + ".".join(loc)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error.get("type") != "missing" and "input" in error:
            received = repr(error["input"])
            if len(received) > 80:
                received = received[:77] + "..."
            message += f" (received {received})"
        return _fail(where, message + named)


def _named(entry: Any) -> str:
    """`` (layer 'conv1', type Conv2D)`` for messages: the layer as the
    document names it ("" when the entry does not say)."""
    if not isinstance(entry, dict):
        return ""
    config = entry.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    name = entry.get("name", name)
    kind = entry.get("class_name")
    parts = [f"layer {str(name)[:64]!r}" if name is not None else "", ""]
    if isinstance(kind, str):
        parts[1] = f"type {kind[:64]}"
    text = ", ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def _keys(path: str, value: dict[str, Any], allowed: set[str]) -> None:
    extra = set(value) - allowed
    if extra:
        raise _fail(
            path,
            f"unexpected keys {sorted(extra)} (allowed: {', '.join(sorted(allowed))})",
        )


def _dtype(path: str, value: Any) -> None:
    if value in (None, "float32"):
        return
    if (
        isinstance(value, dict)
        and set(value) <= _ENTRY_KEYS
        and value.get("class_name") == "DTypePolicy"
        and value.get("module") in (None, "keras")
        and value.get("registered_name") is None
        and value.get("config") == {"name": "float32"}
    ):
        return
    if isinstance(value, dict):
        _keys(path, value, _ENTRY_KEYS)
    raise _fail(path, f"only float32 is supported, received {value!r}")


def _component(path: str, value: Any, activation: bool = False) -> Any:
    """A serialized quantizer/constraint/initializer/regularizer → spec data."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if not isinstance(value, dict):
        raise _fail(path, f"expected a name or an object, received {value!r}")
    module = value.get("module")
    class_name = value.get("class_name")
    registered = value.get("registered_name")
    if activation and module == "builtins" and class_name == "function":
        config = value.get("config")
        if registered != "function" or not isinstance(config, str):
            raise _fail(path, "malformed function reference")
        package, _, name = config.rpartition(">")
        if package not in ("", "bnncore"):
            raise _fail(
                f"{path}.config", f"functions only from bnncore, received {config!r}"
            )
        return name
    if not isinstance(module, str) or module not in _COMPONENT_MODULES:
        raise _fail(
            f"{path}.module",
            f"{module!r} is not allowed (allowed: {', '.join(_COMPONENT_MODULES)})",
        )
    if not isinstance(class_name, str):
        raise _fail(f"{path}.class_name", "expected a string")
    owner = _COMPONENT_MODULES[module]
    expected = None if owner is None else f"{owner}>{class_name}"
    if registered != expected:
        raise _fail(
            f"{path}.registered_name",
            f"expected {expected!r} for {module}.{class_name}, received {registered!r}",
        )
    config = value.get("config") or {}
    if not isinstance(config, dict):
        raise _fail(f"{path}.config", "expected an object")
    extra = set(value) - {"module", "class_name", "config", "registered_name"}
    if extra:
        raise _fail(path, f"unexpected keys {sorted(extra)}")
    return {"type": class_name, **_strip_benign(f"{path}.config", config)}


def _strip_benign(path: str, config: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, item in config.items():
        if key in _BENIGN:
            allowed = _BENIGN[key]
            if allowed is not _ANY and item != allowed:
                raise _fail(
                    f"{path}.{key}",
                    f"only {allowed!r} is supported, received {item!r}",
                )
            continue
        out[key] = item
    return out


def _layer_config(path: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A layer entry's ``config`` object, after checking the entry's keys and
    that its ``name``, if given, is ``config.name``."""
    _keys(path, entry, _LAYER_KEYS)
    config = entry.get("config")
    if not isinstance(config, dict):
        raise _fail(f"{path}.config", "expected an object")
    if "name" in entry and entry["name"] != config.get("name"):
        raise _fail(
            f"{path}.name",
            f"{entry['name']!r} differs from config.name {config.get('name')!r}",
        )
    return config


def _private(
    path: str, entry: dict[str, Any], type_name: str, op: bool
) -> tuple[dict[str, Any], Any]:
    """A class of :data:`_PRIVATE_CLASSES` or :data:`_OPS`, read as the
    allow-listed ``type_name`` (its arguments validated as any layer's)."""
    class_name = entry["class_name"]
    if entry.get("registered_name") != class_name:
        raise _fail(
            f"{path}.registered_name",
            f"expected {class_name!r}, received {entry.get('registered_name')!r}",
        )
    config = _layer_config(path, entry)
    if op:
        _keys(f"{path}.config", config, {"name"})
        return {"type": type_name, "name": config.get("name")}, entry.get(
            "inbound_nodes"
        )
    data: dict[str, Any] = {"type": type_name}
    for key, value in _strip_benign(f"{path}.config", config).items():
        if key == "dtype":
            _dtype(f"{path}.config.dtype", value)
        else:
            data[key] = value
    return data, entry.get("inbound_nodes")


def _layer(path: str, entry: Any) -> tuple[dict[str, Any], Any]:
    if not isinstance(entry, dict):
        raise _fail(path, "expected a layer object")
    class_name = entry.get("class_name")
    type_name = (
        _CLASS_ALIASES.get(class_name, class_name)
        if isinstance(class_name, str)
        else None
    )
    module = entry.get("module")
    if isinstance(module, str) and isinstance(class_name, str):
        op = _OPS.get((module, class_name))
        private = op or _PRIVATE_CLASSES.get((module, class_name))
        if private is not None:
            return _private(path, entry, private, op is not None)
    if isinstance(class_name, str) and class_name in _TOP_CLASSES:
        raise _fail(
            f"{path}.class_name",
            f"a nested model ({class_name!r}) is not supported: every layer must "
            "be a direct layer of the model (build it from the nested model's "
            "layers)",
        )
    if isinstance(module, str) and module.startswith("keras.src."):
        raise _fail(
            f"{path}.module",
            f"{class_name!r} from module {module!r} is not a public Keras layer "
            "(Keras internals are never loaded); allowed: the layer types of "
            "keras.layers and bnncore listed in docs/service.md",
        )
    if type_name is None or type_name not in LAYER_TYPES:
        raise _fail(
            f"{path}.class_name",
            f"{class_name!r} is not an allowed layer type (allowed: "
            f"{', '.join(sorted(LAYER_TYPES))})",
        )
    spec = LAYER_TYPES[type_name]
    target = getattr(spec, "_keras", None)
    from_bnncore = target is not None and target.__module__.startswith("bnncore")
    registered = entry.get("registered_name")
    if from_bnncore:
        # Exactly the module the class is defined in (what Keras writes) or
        # the package that exports it; never a prefix match.
        modules = (target.__module__, "bnncore.layers")
        if module not in modules:
            raise _fail(
                f"{path}.module",
                f"expected {' or '.join(map(repr, modules))} for {class_name}, "
                f"received {module!r}",
            )
        if registered != f"bnncore>{class_name}":
            raise _fail(
                f"{path}.registered_name",
                f"expected 'bnncore>{class_name}', received {registered!r}",
            )
    else:
        if module not in (None, "keras.layers"):
            raise _fail(f"{path}.module", f"expected 'keras.layers', got {module!r}")
        if registered is not None:
            raise _fail(f"{path}.registered_name", f"unexpected {registered!r}")
    config = _layer_config(path, entry)
    config = _strip_benign(f"{path}.config", config)
    data: dict[str, Any] = {"type": type_name}
    for key, value in config.items():
        where = f"{path}.config.{key}"
        if key == "dtype":
            _dtype(where, value)
        elif type_name == "Input" and key == "batch_shape":
            if not isinstance(value, list) or not value or value[0] is not None:
                raise _fail(where, "expected [null, ...dims]")
            data["shape"] = value[1:]
        elif type_name == "Input" and key == "shape":
            data["shape"] = value
        elif key == "activation" and value == "linear" and type_name != "Activation":
            data[key] = None
        elif key == "activation":
            data[key] = _component(where, value, activation=True)
        elif isinstance(value, dict):
            data[key] = _component(where, value)
        else:
            data[key] = value
    return data, entry.get("inbound_nodes")


def _input_shape(path: str, build_config: Any) -> Any:
    """The ``input_shape`` a layer's or model's ``build_config`` states
    (``None``: it states nothing)."""
    if build_config is None:
        return None
    if not isinstance(build_config, dict):
        raise _fail(path, f"expected an object, received {build_config!r}")
    _keys(path, build_config, {"input_shape"})
    return build_config.get("input_shape")


def _read(read: Callable[[], T]) -> T:
    """A piece of the document read by :mod:`bnncore_runtime.keras_config`,
    its errors as refusals naming the field."""
    try:
        return read()
    except KerasConfigError as error:
        if error.path.endswith(".keras_history"):
            raise _fail(error.path, "expected [layer_name, 0, 0]") from None
        raise _fail(error.path, error.message) from None


def _source(path: str, value: Any, claims: list[ShapeClaim]) -> str:
    """The layer a call argument comes from: a tensor of the first call of a
    layer (no shared layers), with the service's keys and dtype only; its
    shape, if stated, is a :class:`ShapeClaim`."""
    if not isinstance(value, KerasTensor):
        raise _fail(path, "expected a __keras_tensor__ reference")
    _keys(path, value.raw, _TENSOR_KEYS)
    config = value.raw["config"]
    _keys(f"{path}.config", config, _TENSOR_CONFIG_KEYS)
    if value.dtype not in (None, "float32"):
        raise _fail(
            f"{path}.config.dtype",
            f"only float32 is supported, received {value.dtype!r}",
        )
    if value.history[1:] != (0, 0):
        raise _fail(f"{path}.config.keras_history", "expected [layer_name, 0, 0]")
    if value.shape is not None:
        claims.append(
            ShapeClaim(
                f"{path}.config.shape", (value.history.layer,), list(value.shape)
            )
        )
    return value.history.layer


def _sources(
    path: str, nodes: Any, claims: list[ShapeClaim], positional: bool = False
) -> list[str]:
    if not isinstance(nodes, list) or len(nodes) != 1:
        raise _fail(path, "expected exactly one inbound node (no shared layers)")
    node = nodes[0]
    if isinstance(node, dict):
        _keys(f"{path}[0]", node, _NODE_KEYS)
    kwargs = node.get("kwargs") if isinstance(node, dict) else None
    if not isinstance(node, dict) or not (
        kwargs is None
        or (
            isinstance(kwargs, dict)
            and set(kwargs) <= {"mask", "training"}
            and kwargs.get("mask") is None
            and kwargs.get("training") in (None, False)
        )
    ):
        raise _fail(f"{path}[0]", "call arguments other than inputs are not supported")
    call = _read(lambda: read_call(node, f"{path}[0]"))
    args = call.args
    if positional:  # an op node: each input is its own argument
        if len(args) < 2:
            raise _fail(f"{path}[0].args", "expected two or more tensors")
        return [
            _source(f"{path}[0].args[{i}]", item, claims) for i, item in enumerate(args)
        ]
    if len(args) != 1:
        raise _fail(f"{path}[0].args", "expected one positional argument")
    arg = args[0]
    if isinstance(arg, list):
        return [
            _source(f"{path}[0].args[0][{i}]", item, claims)
            for i, item in enumerate(arg)
        ]
    return [_source(f"{path}[0].args[0]", arg, claims)]


def _endpoint_names(path: str, value: Any) -> list[str]:
    """``[name, 0, 0]`` or a list of them (one level, as Keras writes)."""
    try:
        ends = read_endpoints(value, path)
    except KerasConfigError:
        ends = ()
    if not ends or any(end[1:] != (0, 0) for end in ends):
        raise _fail(path, "expected [layer_name, 0, 0] or a list of them")
    return [end.layer for end in ends]


def _is_nested(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("class_name") == "Sequential"
        and entry.get("module") == "keras"
    )


def _nested(
    where: str, entry: dict[str, Any], alias: dict[str, str], claims: list[ShapeClaim]
) -> list[tuple[str, Any, list[str] | None]]:
    """A Sequential model used as a layer of a functional model, as the
    entries of its layers with their inputs, chained by
    :meth:`~bnncore_runtime.keras_config.ModelConfig.chain`: the first takes
    the nested model's input, and the nested model's name stands for the last
    (``alias``). Its
    ``InputLayer``, ``build_config`` and ``build_input_shape`` become shape
    claims on that input."""
    _keys(where, entry, _LAYER_KEYS | {"compile_config"})
    if entry.get("registered_name") is not None:
        raise _fail(
            f"{where}.registered_name", f"unexpected {entry['registered_name']!r}"
        )
    if entry.get("compile_config") not in (None, {}):
        raise _fail(f"{where}.compile_config", "training configuration is not accepted")
    config = entry.get("config")
    if not isinstance(config, dict):
        raise _fail(f"{where}.config", "expected an object")
    _keys(
        f"{where}.config",
        config,
        _MODEL_CONFIG_KEYS - {"input_layers", "output_layers"},
    )
    _dtype(f"{where}.config.dtype", config.get("dtype"))
    if config.get("trainable", True) is not True:
        raise _fail(f"{where}.config.trainable", "only true is supported")
    name = config.get("name")
    if not isinstance(name, str) or entry.get("name", name) != name:
        raise _fail(f"{where}.name", "expected the nested model's config.name")
    inner = config.get("layers")
    if not isinstance(inner, list) or len(inner) < 2:
        raise _fail(f"{where}.config.layers", "expected an InputLayer and layers")
    source = _sources(f"{where}.inbound_nodes", entry.get("inbound_nodes"), claims)
    if len(source) != 1:
        raise _fail(f"{where}.inbound_nodes", "a nested model takes one input")
    first, _ = _layer(f"{where}.config.layers[0]", inner[0])
    if first["type"] != "Input":
        raise _fail(f"{where}.config.layers[0]", "expected an InputLayer")
    claims.append(
        ShapeClaim(
            f"{where}.config.layers[0].config.batch_shape",
            (source[0],),
            [None, *first["shape"]],
        )
    )
    for path, stated in (
        (
            f"{where}.build_config",
            _input_shape(f"{where}.build_config", entry.get("build_config")),
        ),
        (f"{where}.config.build_input_shape", config.get("build_input_shape")),
    ):
        if stated is not None:
            claims.append(ShapeClaim(path, (source[0],), stated))
    for k, layer in enumerate(inner[1:], start=1):
        path = f"{where}.config.layers[{k}]"
        if not isinstance(layer, dict) or _is_nested(layer):
            _layer(path, layer)  # refused with its reason
        if "inbound_nodes" in layer:
            raise _fail(f"{path}.inbound_nodes", "not expected in a Sequential model")
    model = _read(lambda: read_model(config, f"{where}.config", kind="sequential"))
    flat: list[tuple[str, Any, list[str] | None]] = []
    for layer_config, applied_to in model.chain():
        # The nested model's input is the outer layer it is called on.
        if applied_to is None or applied_to == model.inputs[0]:
            previous = source[0]
        else:
            previous = applied_to.layer
        flat.append((layer_config.path, layer_config.raw, [previous]))
    alias[name] = model.outputs[0].layer
    return flat


def _model_claims(
    document: dict[str, Any], config: dict[str, Any], inputs: list[str]
) -> list[ShapeClaim]:
    """What the model's ``build_config`` and ``build_input_shape`` state:
    the input shape (one input) or the list of them."""
    claims = []
    for path, value in (
        (
            "build_config.input_shape",
            _input_shape("build_config", document.get("build_config")),
        ),
        ("config.build_input_shape", config.get("build_input_shape")),
    ):
        if value is not None:
            claims.append(ShapeClaim(path, tuple(inputs), value, many=len(inputs) > 1))
    return claims


def translate(document: dict[str, Any]) -> Translation:
    """Translates a ``model.to_json()`` document into graph definition data.

    Args:
        document: The parsed JSON object (``module``, ``class_name``,
            ``config``, ...).

    Returns:
        The graph definition's data (to validate as a
        :class:`bnncore_service.schemas.definitions.Graph`) and the shapes the
        document states.

    Raises:
        TranslationError: naming the path of the first offending field.
    """
    if document.get("module") not in _TOP_MODULES:
        raise _fail("module", f"{document.get('module')!r} is not a Keras model module")
    class_name = document.get("class_name")
    if class_name not in _TOP_CLASSES:
        raise _fail(
            "class_name", f"expected Sequential or Functional, got {class_name!r}"
        )
    if document.get("registered_name") not in (None, *_TOP_CLASSES):
        raise _fail("registered_name", f"unexpected {document['registered_name']!r}")
    compile_config = document.get("compile_config")
    if compile_config not in (None, {}):
        shown = sorted(compile_config) if isinstance(compile_config, dict) else None
        raise _fail(
            "compile_config",
            "training configuration is not accepted (received "
            f"{'keys ' + repr(shown) if shown else repr(compile_config)}); the "
            "service builds models for inference only: send to_json() of the "
            "model before compile(), or leave compile_config out",
        )
    config = document["config"]
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise _fail("config.layers", "expected a non-empty list of layers")
    name = config.get("name", "model")
    _dtype("config.dtype", config.get("dtype"))
    _keys("config", config, _MODEL_CONFIG_KEYS)
    if config.get("trainable", True) is not True:
        raise _fail(
            "config.trainable",
            f"only true is supported, received {config['trainable']!r}",
        )

    claims: list[ShapeClaim] = []
    layers: list[dict[str, Any]] = []
    outputs: list[Any]  # layer names, checked by Graph
    alias: dict[str, str] = {}
    flat: list[tuple[str, Any, list[str] | None]] = []
    for index, entry in enumerate(entries):
        where = f"config.layers[{index}]"
        if class_name != "Sequential" and _is_nested(entry):
            flat.extend(_nested(where, entry, alias, claims))
        else:
            flat.append((where, entry, None))
    for index, (where, entry, chained) in enumerate(flat):
        try:
            data, nodes = _layer(where, entry)
        except TranslationError as error:
            raise TranslationError(f"{error}{_named(entry)}") from None
        if data["type"] == "Input":
            if class_name == "Sequential":
                if index != 0:
                    raise _fail(where, "Input must come first")
                data.setdefault("name", "input")
            if entry.get("build_config") is not None:
                raise _fail(f"{where}.build_config", "not expected on an InputLayer")
            if nodes not in (None, []):
                raise _fail(f"{where}.inbound_nodes", "expected [] for an InputLayer")
        elif class_name == "Sequential":
            if not layers:
                raise _fail(
                    "config.layers[0]",
                    "the model has no input shape (build it with keras.Input first)",
                )
            if nodes is not None:
                raise _fail(
                    f"{where}.inbound_nodes", "not expected in a Sequential model"
                )
            data["inputs"] = [layers[-1].get("name")]
        elif chained is not None:  # a layer of a nested Sequential model
            data["inputs"] = chained
        else:
            data["inputs"] = _sources(
                f"{where}.inbound_nodes",
                nodes,
                claims,
                positional=(entry.get("module"), entry.get("class_name")) in _OPS,
            )
        if data["type"] != "Input":
            stated = _input_shape(f"{where}.build_config", entry.get("build_config"))
            if stated is not None:
                claims.append(
                    ShapeClaim(
                        f"{where}.build_config.input_shape",
                        tuple(data["inputs"]),
                        stated,
                        many=LAYER_TYPES[data["type"]]._min_inputs > 1,
                    )
                )
        layers.append(data)
    if alias:  # a nested model's name stands for its last layer
        for data in layers:
            if "inputs" in data:
                data["inputs"] = [alias.get(n, n) for n in data["inputs"]]
        claims = [
            ShapeClaim(
                c.path, tuple(alias.get(n, n) for n in c.sources), c.value, c.many
            )
            for c in claims
        ]
    inputs = [str(d.get("name")) for d in layers if d["type"] == "Input"]
    if class_name == "Sequential":
        outputs = [layers[-1].get("name")]
        for key in ("input_layers", "output_layers"):
            if key in config:
                raise _fail(f"config.{key}", "not expected in a Sequential model")
    else:
        outputs = _endpoint_names("config.output_layers", config.get("output_layers"))
        outputs = [alias.get(n, n) for n in outputs]
        if "build_input_shape" in config:
            raise _fail(
                "config.build_input_shape", "not expected in a Functional model"
            )
        stated = _endpoint_names("config.input_layers", config.get("input_layers"))
        if stated != inputs:
            raise _fail(
                "config.input_layers",
                f"names {stated} but the model's InputLayers are {inputs}, in that "
                "order",
            )
    claims.extend(_model_claims(document, config, inputs))
    return Translation(
        graph={"name": name, "layers": layers, "outputs": outputs},
        claims=tuple(claims),
        sources=tuple((where, entry) for where, entry, _ in flat),
    )
