"""Stable names for a model's variables: the layer path plus the variable name.

Keras's own ``variable.path`` depends on how a model was built: a Sequential
model prefixes its own name (``"sequential/dense/kernel"``), the same model
rebuilt by ``keras.models.model_from_json`` does not (``"dense/kernel"``), and
a nested model's prefix comes and goes the same way. The weights file needs a
name that both sides compute alike, so it uses the *layer path*: the names of
the layers leading from the top model to the layer that owns the variable,
then the variable's path inside that layer. For a functional model this is
exactly ``variable.path`` (``"quant_conv2d/kernel"``, ``"block/dense/bias"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras

__all__ = ["walk_layers", "weight_names"]


def walk_layers(model: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every layer reachable through ``model.layers``, depth first, with its path.

    Yields:
        ``(prefix, layer)``: ``prefix`` is the tuple of layer names from the top
        model down to ``layer`` (inclusive). A layer shared by two models is
        yielded once, at its first position.
    """
    seen: set[int] = set()

    def visit(container: Any, prefix: tuple[str, ...]) -> Iterator[Any]:
        for layer in getattr(container, "layers", []):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            path = (*prefix, layer.name)
            yield path, layer
            if isinstance(layer, keras.Model):
                yield from visit(layer, path)

    yield from visit(model, ())


def _relative(variable: Any, owner: str) -> str:
    """``variable``'s path below the layer named ``owner`` (else its name)."""
    parts = str(variable.path).split("/")
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == owner:
            return "/".join(parts[index + 1 :])
    return str(variable.name)


def weight_names(model: Any) -> dict[str, Any]:
    """The file name of each of ``model``'s variables, in ``model.weights`` order.

    A variable is named after the first layer (in :func:`walk_layers` order)
    that lists it in its ``weights``: ``"<layer path>/<variable path in the
    layer>"``. Variables that no layer lists (weights a subclassed model makes
    itself) are named by their path below the model. Each variable appears once,
    even when several layers share it.

    Args:
        model: A built ``keras.Model``.

    Returns:
        Name → variable, in the order of ``model.weights``.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if two variables get the same name.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model. Received: model of type {type(model).__name__}"
        )
    found: dict[int, str] = {}
    for path, layer in walk_layers(model):
        if isinstance(layer, keras.Model):
            continue  # its layers are visited; its own variables are below
        for variable in layer.weights:
            if id(variable) not in found:
                relative = _relative(variable, layer.name)
                found[id(variable)] = "/".join((*path, relative))
    names: dict[str, Any] = {}
    for variable in model.weights:
        if id(variable) in found:
            name = found[id(variable)]
        else:
            name = _relative(variable, model.name)
        if name in names and names[name] is not variable:
            raise ValueError(
                f"Two variables of model {model.name!r} get the weights-file name "
                f"{name!r} ({names[name].path!r} and {variable.path!r}); give "
                "their layers distinct names."
            )
        names[name] = variable
    return names
