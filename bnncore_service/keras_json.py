"""Keras JSON definitions: ``model.to_json()`` as a validated graph definition,
and the check of the shapes the document states.

The translation is :mod:`bnncore_service.schemas.from_keras`, which returns
plain data (the document's structure read by the library's one Keras-config
reader, :mod:`bnncore_runtime.keras_config`, under the service's policy);
:mod:`bnncore_service.schemas.definitions` validates it as a ``Graph``. This
module is their user-facing front: :func:`translate` gives the validated
``Graph``, and :func:`check_shapes` compares what the document states about
shapes (:class:`ShapeClaim`) with the estimate's once it is known. Nothing is
ever passed to Keras deserialization.
"""

from __future__ import annotations

from typing import Any

from bnncore_service.estimate import DefinitionError
from bnncore_service.schemas.definitions import Graph, keras_json_graph
from bnncore_service.schemas.from_keras import ShapeClaim, TranslationError

__all__ = [
    "ShapeClaim",
    "TranslationError",
    "check_shapes",
    "translate",
    "translate_with_claims",
]


def translate(document: dict[str, Any]) -> Graph:
    """Translates a ``model.to_json()`` document into a validated Graph.

    Args:
        document: The parsed JSON object (``module``, ``class_name``,
            ``config``, ...).

    Returns:
        A :class:`bnncore_service.schemas.definitions.Graph`.

    Raises:
        TranslationError: naming the path of the first offending field.
    """
    return keras_json_graph(document)[0]


def translate_with_claims(document: dict[str, Any]) -> tuple[Graph, list[ShapeClaim]]:
    """:func:`translate`, and the shapes the document states
    (:class:`ShapeClaim`), for :func:`check_shapes` once the estimate is known.

    Raises:
        TranslationError: naming the path of the first offending field.
    """
    return keras_json_graph(document)


def _any_batch(value: Any, many: bool) -> Any:
    """A stated shape (or list of them) with an integer batch size read as
    ``None``; anything else is returned as it is (and compared as such)."""

    def one(shape: Any) -> Any:
        if isinstance(shape, list) and shape and type(shape[0]) is int:
            return [None, *shape[1:]]
        return shape

    if many:
        return [one(s) for s in value] if isinstance(value, list) else value
    return one(value)


def check_shapes(definition: Any, estimate: Any) -> None:
    """Compares the shapes a Keras JSON definition states with the estimate's.

    Args:
        definition: Any validated definition (only Keras JSON states shapes).
        estimate: Its :class:`bnncore_service.schemas.reports.Estimate` (``None`` for a
            zoo definition).

    Raises:
        bnncore_service.estimate.DefinitionError: the first stated shape that is not
            the model's, naming its path (422).
    """
    claims: list[ShapeClaim] = getattr(definition, "shape_claims", lambda: [])()
    if not claims or estimate is None:
        return
    graph = definition.graph()
    shapes: dict[str, list[int | None]] = {
        layer.name: list(shape)
        for layer, shape in zip(graph.inputs(), estimate.inputs, strict=True)
    }
    shapes.update((row.name, list(row.output_shape)) for row in estimate.layers)
    for claim in claims:
        expected: Any = [shapes[name] for name in claim.sources]
        if not claim.many:
            expected = expected[0]
        stated = claim.value
        if claim.path.endswith("build_config.input_shape"):
            # A layer built by adapt() (Normalization) records the batch
            # size of the adapt data; the batch is not part of the model.
            stated = _any_batch(stated, claim.many)
        if stated != expected:
            raise DefinitionError(
                f"definition: {claim.path}: states {claim.value!r} but the model's "
                f"shape there is {expected!r}"
            )
