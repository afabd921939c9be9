"""Translator of Keras's ``model.to_json()`` into the service's graph definition.

The document is read as plain data by this module: every layer's
``class_name`` must be in the allow-list, every ``module`` and
``registered_name`` must point where that class really lives (``keras.layers``
or ``bnncore``), and every configuration key must be an argument of the
allow-listed layer (or one of a few Keras bookkeeping keys holding their
harmless default). Nothing is ever passed to Keras deserialization.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from service.schemas.layers import LAYER_TYPES

__all__ = ["TranslationError", "translate"]

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
    "noise_shape": None,
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


class TranslationError(ValueError):
    """A Keras JSON document that is not a model of allowed layers.

    The message starts with the path of the offending field.
    """


def _fail(path: str, message: str) -> TranslationError:
    return TranslationError(f"{path}: {message}")


def _dtype(path: str, value: Any) -> None:
    if value in (None, "float32"):
        return
    if (
        isinstance(value, dict)
        and value.get("class_name") == "DTypePolicy"
        and value.get("module") in (None, "keras")
        and value.get("registered_name") is None
        and value.get("config") == {"name": "float32"}
    ):
        return
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


def _layer(path: str, entry: Any) -> tuple[dict[str, Any], Any]:
    if not isinstance(entry, dict):
        raise _fail(path, "expected a layer object")
    class_name = entry.get("class_name")
    type_name = (
        _CLASS_ALIASES.get(class_name, class_name)
        if isinstance(class_name, str)
        else None
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
    module = entry.get("module")
    registered = entry.get("registered_name")
    if from_bnncore:
        if not (isinstance(module, str) and module.startswith("bnncore.")):
            raise _fail(f"{path}.module", f"expected a bnncore module for {class_name}")
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
    extra = set(entry) - {
        "module",
        "class_name",
        "config",
        "registered_name",
        "build_config",
        "name",
        "inbound_nodes",
    }
    if extra:
        raise _fail(path, f"unexpected keys {sorted(extra)}")
    config = entry.get("config")
    if not isinstance(config, dict):
        raise _fail(f"{path}.config", "expected an object")
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


def _history(path: str, tensor: Any) -> str:
    if not (
        isinstance(tensor, dict)
        and tensor.get("class_name") == "__keras_tensor__"
        and isinstance(tensor.get("config"), dict)
    ):
        raise _fail(path, "expected a __keras_tensor__ reference")
    history = tensor["config"].get("keras_history")
    if not (
        isinstance(history, list)
        and len(history) == 3
        and isinstance(history[0], str)
        and history[1:] == [0, 0]
    ):
        raise _fail(f"{path}.config.keras_history", "expected [layer_name, 0, 0]")
    return history[0]


def _sources(path: str, nodes: Any) -> list[str]:
    if not isinstance(nodes, list) or len(nodes) != 1:
        raise _fail(path, "expected exactly one inbound node (no shared layers)")
    node = nodes[0]
    kwargs = node.get("kwargs") if isinstance(node, dict) else None
    if not isinstance(node, dict) or not (
        kwargs is None
        or (
            isinstance(kwargs, dict)
            and set(kwargs) <= {"mask", "training"}
            and all(v is None for v in kwargs.values())
        )
    ):
        raise _fail(f"{path}[0]", "call arguments other than inputs are not supported")
    args = node.get("args")
    if not isinstance(args, list) or len(args) != 1:
        raise _fail(f"{path}[0].args", "expected one positional argument")
    arg = args[0]
    if isinstance(arg, list):
        return [_history(f"{path}[0].args[0][{i}]", t) for i, t in enumerate(arg)]
    return [_history(f"{path}[0].args[0]", arg)]


def _endpoint_names(path: str, value: Any) -> list[str]:
    if (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and value[1:] == [0, 0]
    ):
        return [value[0]]
    if isinstance(value, list) and value:
        names: list[str] = []
        for i, item in enumerate(value):
            names.extend(_endpoint_names(f"{path}[{i}]", item))
        return names
    raise _fail(path, "expected [layer_name, 0, 0] or a list of them")


def translate(document: dict[str, Any]) -> Any:
    """Translates a ``model.to_json()`` document into a validated Graph.

    Args:
        document: The parsed JSON object (``module``, ``class_name``,
            ``config``, ...).

    Returns:
        A :class:`service.schemas.definitions.Graph`.

    Raises:
        TranslationError: naming the path of the first offending field.
    """
    from service.schemas.definitions import Graph

    if document.get("module") not in _TOP_MODULES:
        raise _fail("module", f"{document.get('module')!r} is not a Keras model module")
    class_name = document.get("class_name")
    if class_name not in _TOP_CLASSES:
        raise _fail(
            "class_name", f"expected Sequential or Functional, got {class_name!r}"
        )
    if document.get("registered_name") not in (None, *_TOP_CLASSES):
        raise _fail("registered_name", f"unexpected {document['registered_name']!r}")
    config = document["config"]
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise _fail("config.layers", "expected a non-empty list of layers")
    name = config.get("name", "model")
    _dtype("config.dtype", config.get("dtype"))
    extra = set(config) - {
        "name",
        "trainable",
        "dtype",
        "layers",
        "input_layers",
        "output_layers",
        "build_input_shape",
    }
    if extra:
        raise _fail("config", f"unexpected keys {sorted(extra)}")

    layers: list[dict[str, Any]] = []
    outputs: list[Any]  # layer names, checked by Graph
    if class_name == "Sequential":
        previous = None
        for index, entry in enumerate(entries):
            data, _ = _layer(f"config.layers[{index}]", entry)
            if data["type"] == "Input":
                if index != 0:
                    raise _fail(f"config.layers[{index}]", "Input must come first")
                data.setdefault("name", "input")
            elif previous is None:
                raise _fail(
                    "config.layers[0]",
                    "the model has no input shape (build it with keras.Input first)",
                )
            else:
                data["inputs"] = [previous]
            previous = data.get("name")
            layers.append(data)
        outputs = [previous]
    else:
        for index, entry in enumerate(entries):
            data, nodes = _layer(f"config.layers[{index}]", entry)
            if data["type"] != "Input":
                data["inputs"] = _sources(
                    f"config.layers[{index}].inbound_nodes", nodes
                )
            layers.append(data)
        outputs = _endpoint_names("config.output_layers", config.get("output_layers"))
    try:
        return Graph.model_validate(
            {"name": name, "layers": layers, "outputs": outputs}
        )
    except ValidationError as error:
        first = error.errors()[0]
        loc = [str(p) for p in first["loc"] if not str(p)[:1].isupper()]
        where = "config"
        if len(loc) >= 2 and loc[0] == "layers":
            where = f"config.layers[{loc[1]}].config" + "".join(
                f".{p}" for p in loc[2:]
            )
        elif loc:
            where = "config." + ".".join(loc)
        raise _fail(where, first["msg"]) from None
