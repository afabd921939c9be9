"""Request-model fields read from a constructor's signature.

The definition language restates no constructor default: each argument of an
allow-listed class becomes a field with the constructor's own default, typed
by the argument's name (one vocabulary shared by every layer, plus a few
overrides per layer in :mod:`bnncore_service.schemas.layers`). An argument the
vocabulary does not know is an error at import time, so a new Keras argument
is a decision (type it or refuse it), never silently accepted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

__all__ = [
    "REQUIRED",
    "compact",
    "constructor_defaults",
    "model_class",
    "signature_fields",
]

REQUIRED: Any = ...
"""The default of a field without one (pydantic's marker)."""


def compact(value: Any) -> Any:
    """The shortest spelling of a size default: ``(1, 1)`` → ``1``,
    ``((1, 1), (1, 1))`` → ``1``; other values are returned unchanged.

    Keras writes a size argument's default once per axis; the definition
    language accepts one integer for all axes and normalizes it the same way.
    """
    if isinstance(value, tuple) and value:
        items = {compact(item) for item in value}
        if len(items) == 1:
            (item,) = items
            if isinstance(item, int) and not isinstance(item, bool):
                return item
    return value


def constructor_defaults(constructor: Callable[..., Any]) -> dict[str, Any]:
    """Each named argument of ``constructor`` → its default (:data:`REQUIRED`
    when it has none), in the signature's order; ``*args``/``**kwargs`` are
    left out."""
    out: dict[str, Any] = {}
    for parameter in inspect.signature(constructor).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        empty = parameter.default is inspect.Parameter.empty
        out[parameter.name] = REQUIRED if empty else parameter.default
    return out


def signature_fields(
    constructor: Callable[..., Any],
    *,
    types: Callable[[str], Any],
    overrides: Mapping[str, Any] = {},
    defaults: Mapping[str, Any] = {},
    skip: Collection[str] = (),
) -> dict[str, tuple[Any, Any]]:
    """The fields ``{name: (annotation, default)}`` of ``constructor``'s arguments.

    Args:
        constructor: The class (or function) whose signature is read.
        types: The annotation of an argument by its name (``None`` if unknown).
        overrides: Annotations that replace ``types`` for this constructor.
        defaults: Defaults that replace the signature's for this constructor.
        skip: Arguments that get no field (refused, or set by a base model).

    Returns:
        The fields in the signature's order. A ``None`` default makes the
        annotation nullable; a size default is :func:`compact`-ed; an argument
        without a default is required.

    Raises:
        TypeError: if an argument has no annotation in ``types`` or
            ``overrides`` and is not skipped.
    """
    fields: dict[str, tuple[Any, Any]] = {}
    for name, default in constructor_defaults(constructor).items():
        if name in skip:
            continue
        annotation = overrides.get(name, types(name))
        if annotation is None:
            raise TypeError(
                f"{getattr(constructor, '__qualname__', constructor)}: no type for "
                f"argument {name!r}; add it to the argument types or refuse it"
            )
        default = defaults.get(name, default)
        if default is None:
            annotation = annotation | None
        elif default is not REQUIRED:
            default = compact(default)
        fields[name] = (annotation, default)
    return fields


def model_class(
    name: str,
    bases: type | tuple[type, ...],
    tag: str,
    fields: Mapping[str, tuple[Any, Any]],
    *,
    doc: str | None,
    module: str,
    **class_vars: Any,
) -> Any:
    """A request model class: ``type`` (the one value ``tag``) then ``fields``.

    Args:
        name: The class name (the schema's title).
        bases: Its base model(s), which give the shared fields and checks.
        tag: The value of its ``type`` field.
        fields: ``{name: (annotation, default)}``, as
            :func:`signature_fields` returns them.
        doc: Its docstring (the schema's description).
        module: The module it is listed in.
        **class_vars: Class attributes (``_keras``, ``_rank``, ...).
    """
    annotations: dict[str, Any] = {"type": Literal[tag]}
    namespace: dict[str, Any] = {"__module__": module, "__doc__": doc, **class_vars}
    for field, (annotation, default) in fields.items():
        annotations[field] = annotation
        if default is not REQUIRED:
            namespace[field] = default
    namespace["__annotations__"] = annotations
    return type(name, bases if isinstance(bases, tuple) else (bases,), namespace)
