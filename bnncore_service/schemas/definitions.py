"""The four forms of a model definition: Sequential, Graph, Zoo and Keras JSON.

Every form validates into a model whose :meth:`normalized` dict is the
canonical definition (aliases resolved, defaults filled, names generated);
its SHA-256 is the content hash that makes registration idempotent. Sequential
and Keras-JSON definitions also give a :class:`Graph` (:meth:`graph`), the one
internal form the estimate and the builder work on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    FailFast,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    ValidationError,
    model_validator,
)

from bnncore_service.schemas.common import Bool, Dim, Name, StrictModel, snake_name
from bnncore_service.schemas.from_keras import ShapeClaim, translate
from bnncore_service.schemas.layers import LAYER_TYPES, AnyLayer, Input, LayerSpec

__all__ = [
    "HARD_MAX_LAYERS",
    "Definition",
    "Graph",
    "KerasJSON",
    "Sequential",
    "Zoo",
    "content_hash",
    "keras_json_graph",
]

HARD_MAX_LAYERS = 4096
Shape = Annotated[list[Dim], Field(min_length=1, max_length=4)]
# Fail fast: the errors of the first invalid layer only (a body of thousands
# of bad layers costs one layer's errors).
Layers = Annotated[
    list[AnyLayer], Field(min_length=1, max_length=HARD_MAX_LAYERS), FailFast()
]


def content_hash(normalized: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of a definition."""
    text = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class _Definition(StrictModel):
    def normalized(self) -> dict[str, Any]:
        """The canonical definition as JSON-ready data."""
        return self.model_dump(mode="json")

    def graph(self) -> Graph:
        """The definition as a :class:`Graph` (not available for Zoo)."""
        raise NotImplementedError


class Graph(_Definition):
    """A graph of named layers; ``Input`` layers are the model inputs.

    Each non-``Input`` layer names its ``inputs`` (earlier layers); merge layers
    (``Add``, ``Concatenate``, ...) take several. ``outputs`` names the model
    outputs. Every layer must lead to an output.
    """

    name: Name = "model"
    layers: Layers
    outputs: Annotated[list[Name], Field(min_length=1, max_length=64)]

    @model_validator(mode="after")
    def _check_graph(self) -> Graph:
        seen: dict[str, LayerSpec] = {}
        for index, layer in enumerate(self.layers):
            where = f"layers[{index}]"
            if layer.name is None:
                raise ValueError(f"{where}.name: required in a graph definition")
            if layer.name in seen:
                raise ValueError(f"{where}.name: duplicate name {layer.name!r}")
            sources = layer.inputs or []
            low, high = layer._min_inputs, layer._max_inputs
            if not low <= len(sources) <= high:
                allowed = f"{low}" if low == high else f"{low} to {high}"
                raise ValueError(
                    f"{where}.inputs: a {layer.type} layer takes {allowed} inputs, "
                    f"received {len(sources)}"
                )
            for source in sources:
                if source not in seen:
                    raise ValueError(
                        f"{where}.inputs: {source!r} is not the name of an earlier "
                        "layer"
                    )
            seen[layer.name] = layer
        if not any(isinstance(layer, Input) for layer in self.layers):
            raise ValueError("layers: a graph needs at least one Input layer")
        for index, output in enumerate(self.outputs):
            if output not in seen:
                raise ValueError(f"outputs[{index}]: no layer named {output!r}")
        if len(set(self.outputs)) != len(self.outputs):
            raise ValueError("outputs: names must be distinct")
        used = set(self.outputs)
        for layer in reversed(self.layers):
            if layer.name in used:
                used.update(layer.inputs or [])
        for index, layer in enumerate(self.layers):
            if layer.name not in used:
                raise ValueError(
                    f"layers[{index}]: layer {layer.name!r} does not lead to any output"
                )
        return self

    def graph(self) -> Graph:
        return self

    def inputs(self) -> list[Input]:
        """The ``Input`` layers, in order."""
        return [layer for layer in self.layers if isinstance(layer, Input)]


class Sequential(_Definition):
    """A stack of layers applied in order to one input of shape ``input_shape``.

    ``input_shape`` excludes the batch dimension. Layers without a ``name`` get
    Keras's default (``quant_conv2d``, ``quant_conv2d_1``, ...).
    """

    name: Name = "model"
    input_shape: Shape
    layers: Layers

    @model_validator(mode="after")
    def _check_layers(self) -> Sequential:
        taken = {layer.name for layer in self.layers if layer.name is not None}
        counts: dict[str, int] = {}
        names: set[str] = set()
        for index, layer in enumerate(self.layers):
            where = f"layers[{index}]"
            if isinstance(layer, Input):
                raise ValueError(
                    f"{where}.type: Input is for graph definitions; a Sequential "
                    "definition takes input_shape"
                )
            if layer.inputs is not None:
                raise ValueError(
                    f"{where}.inputs: not allowed in a Sequential definition (use "
                    "the graph form, with 'outputs')"
                )
            if layer._min_inputs > 1:
                raise ValueError(
                    f"{where}.type: {layer.type} merges several inputs; use the "
                    "graph form"
                )
            if layer.name is None:
                base = snake_name(layer.type)
                while True:
                    n = counts.get(base, 0)
                    counts[base] = n + 1
                    candidate = base if n == 0 else f"{base}_{n}"
                    if candidate not in taken and candidate not in names:
                        break
                object.__setattr__(layer, "name", candidate)
            if layer.name in names or layer.name == "input":
                raise ValueError(f"{where}.name: duplicate name {layer.name!r}")
            names.add(layer.name)
        return self

    def graph(self) -> Graph:
        # The layers are validated already: chain copies of them without
        # validating again (a Sequential definition is a valid graph by
        # construction: unique names, one input each, all leading to the end).
        layers: list[LayerSpec] = [
            Input(type="Input", name="input", shape=list(self.input_shape))
        ]
        previous = "input"
        for layer in self.layers:
            layers.append(layer.model_copy(update={"inputs": [previous]}))
            previous = layer.name
        return Graph.model_construct(name=self.name, layers=layers, outputs=[previous])


class Zoo(_Definition):
    """A reference architecture of ``bnncore.zoo`` by name.

    Attributes:
        zoo: Architecture name (see ``GET /v2``'s ``zoo_models``).
        input_shape: ``[height, width, channels]``.
        num_classes: Classes of the top layer.
        include_top: Whether the classifier head is included.
    """

    zoo: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
    input_shape: Annotated[tuple[Dim, ...], Field(min_length=3, max_length=3)] = (
        224,
        224,
        3,
    )
    num_classes: Annotated[int, Strict(), Field(ge=1, le=100_000)] = 1000
    include_top: Bool = True


class KerasJSON(_Definition):
    """The output of Keras's ``model.to_json()`` (as a JSON object).

    It is translated by the service's own parser into a :class:`Graph`; it is
    never handed to Keras deserialization. Only allow-listed layers,
    quantizers, constraints, initializers and regularizers are accepted.
    """

    module: str | None = None
    class_name: str
    config: dict[str, Any]
    registered_name: str | None = None
    build_config: dict[str, Any] | None = None
    compile_config: dict[str, Any] | None = None

    _graph: Graph | None = None
    _claims: list[ShapeClaim] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _translate(self) -> KerasJSON:
        self._graph, self._claims = keras_json_graph(self.model_dump())
        return self

    def graph(self) -> Graph:
        assert self._graph is not None
        return self._graph

    def shape_claims(self) -> list[ShapeClaim]:
        """The shapes the document states (``build_config``, tensor
        references), as :class:`~bnncore_service.schemas.from_keras.ShapeClaim`
        s; checked against the estimate by
        :func:`bnncore_service.keras_json.check_shapes`."""
        return list(self._claims)

    def normalized(self) -> dict[str, Any]:
        return self.graph().normalized()


def keras_json_graph(document: dict[str, Any]) -> tuple[Graph, list[ShapeClaim]]:
    """A ``model.to_json()`` document as a validated :class:`Graph`, and the
    shapes it states.

    Raises:
        bnncore_service.schemas.from_keras.TranslationError: naming the path of
            the document's first offending field.
    """
    translation = translate(document)
    try:
        graph = Graph.model_validate(translation.graph)
    except ValidationError as error:
        raise translation.refusal(error.errors()[0]) from None
    return graph, list(translation.claims)


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "zoo" in value:
            return "Zoo"
        if "class_name" in value or "module" in value:
            return "KerasJSON"
        if "outputs" in value:
            return "Graph"
        return "Sequential"
    if isinstance(value, _Definition):
        return type(value).__name__
    return None


Definition = Annotated[
    Annotated[Sequential, Tag("Sequential")]
    | Annotated[Graph, Tag("Graph")]
    | Annotated[Zoo, Tag("Zoo")]
    | Annotated[KerasJSON, Tag("KerasJSON")],
    Discriminator(
        _kind,
        custom_error_type="definition_form",
        custom_error_message=(
            "expected a definition object: Sequential (input_shape, layers), Graph "
            "(layers, outputs), Zoo (zoo) or Keras JSON (class_name, config)"
        ),
    ),
]
"""Any definition form, told apart by its keys."""

DefinitionKind = Literal["Sequential", "Graph", "Zoo", "KerasJSON"]
assert "Input" in LAYER_TYPES
