"""Registered versions served without TensorFlow: the store's definition and
uploaded weights planned by ``bnncore_runtime`` (NumPy and the compiled core).

An inference replica (``BNN_ROLE=inference``, ``bnncore_service/inference_app.py``)
serves a version through :func:`load`:

1. the stored definition (the service's normalized Sequential or Graph form,
   validated when it was registered) is rewritten as the Keras-JSON
   document that ``bnncore.export.save`` writes (:func:`keras_document`):
   class names and configs only, nothing imported or evaluated, and read
   again by the runtime's own strict reader;
2. the uploaded weights file (``bnncore.export.write_weights``: 1-bit kernels
   packed, BatchNorm folded) and the document go to
   ``bnncore_runtime.from_bytes``, which plans the model for the compiled core.

The plan is the one ``bnncore.engine.compile`` makes for the model a full
replica builds (one planner, one core), so both replicas answer with the same
bits. A version the runtime cannot run (a layer the core does not run, no
uploaded weights, a plain float32 weights file, a zoo definition) raises
:class:`NeedsFullReplicaError` (HTTP 501), naming the reason: it is served by a
full replica.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

# The runtime's reader and planner (bnncore_runtime.definition, .layers,
# .codec and what they import: ~30 ms) are imported by the functions that use
# them, so that the first model loaded pays for them, not the replica's start.
import bnncore_runtime  # its names are imported on first use (PEP 562)
from bnncore_service.inference.serving import InferenceService
from bnncore_service.inference.tensors import InferenceError
from bnncore_service.peak import BYTES_PER_ELEMENT, SCRATCH_BYTES, RequestCost
from bnncore_service.records import StoredWeights, VersionRecord
from bnncore_service.registry import Registry

__all__ = [
    "ENGINE",
    "NeedsFullReplicaError",
    "RuntimeInferenceService",
    "RuntimeServed",
    "cost",
    "keras_document",
    "load",
    "request_cost",
]

ENGINE = "packed"
"""The engine an inference replica reports (``X-BNN-Engine``): the packed
engine's plan and core, run by ``bnncore_runtime``."""

_ROUTE = "route it to a full replica (BNN_ROLE=full), which runs it with TensorFlow"


class NeedsFullReplicaError(InferenceError):
    """A version this replica cannot serve without TensorFlow (HTTP 501).

    The message says why (the layer, the weights file or the definition form)
    and that a full replica serves it.

    Attributes:
        why: The reason alone.
    """

    def __init__(self, name: str, version: int, why: str) -> None:
        self.why = why
        super().__init__(
            501,
            f"model {name!r} version {version} cannot be served by this inference "
            f"replica (BNN_ROLE=inference, no TensorFlow): {why}; {_ROUTE}",
            reason="needs_full_replica",
        )


class _RefusedError(ValueError):
    """Why a definition or weights file cannot run here (made into
    :class:`NeedsFullReplicaError` once the version is known)."""


# --------------------------------------------------------------------------
# The stored definition as Keras JSON
# --------------------------------------------------------------------------


def _value(value: Any) -> Any:
    """A normalized argument as Keras serializes it: a component object
    ``{"type": T, ...}`` becomes ``{"class_name": T, "config": {...}}``."""
    if isinstance(value, dict):
        if isinstance(value.get("type"), str):
            config = {k: _value(v) for k, v in value.items() if k != "type"}
            return {"class_name": value["type"], "config": config}
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def _tensor(name: str) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}


def _layer(layer: dict[str, Any], sources: list[str], merge: bool) -> dict[str, Any]:
    # Unset arguments (None) are left out: the runtime's defaults are Keras's
    # (a pool's strides default to its pool size, as Keras serializes them).
    config = {
        key: _value(value)
        for key, value in layer.items()
        if key not in ("type", "inputs") and value is not None
    }
    tensors = [_tensor(source) for source in sources]
    return {
        "class_name": layer["type"],
        "config": config,
        "inbound_nodes": [{"args": [tensors] if merge else tensors, "kwargs": {}}],
    }


def _input(name: str, shape: list[int]) -> dict[str, Any]:
    return {
        "class_name": "InputLayer",
        "config": {"name": name, "batch_shape": [None, *shape], "dtype": "float32"},
        "inbound_nodes": [],
    }


def keras_document(normalized: dict[str, Any]) -> dict[str, Any]:
    """The Keras-JSON (``Functional``) document of a stored definition.

    Args:
        normalized: The stored definition (``Registry.normalized_of``): the
            service's Sequential (``input_shape``, ``layers``) or Graph
            (``layers`` with ``inputs``, ``outputs``) form, each layer its
            ``type`` (a Keras class name) and constructor arguments.

    Returns:
        The document ``bnncore_runtime`` reads (``definition.json``).

    Raises:
        ValueError: a zoo definition (built by ``bnncore.zoo``, which needs
            Keras) or a form this reader does not know.
    """
    if "zoo" in normalized:
        raise _RefusedError(
            f"it is a zoo definition ({normalized['zoo']!r}), which bnncore.zoo "
            "builds with Keras; register the architecture as Keras JSON "
            "(bnncore.export.to_definition(model)) to serve it from inference "
            "replicas"
        )
    layers = normalized.get("layers")
    if not isinstance(layers, list):
        raise _RefusedError("the stored definition has no 'layers' list")
    name = str(normalized.get("name", "model"))
    documents: list[dict[str, Any]] = []
    inputs: list[str] = []
    if "input_shape" in normalized:  # Sequential: one chain from "input"
        documents.append(_input("input", list(normalized["input_shape"])))
        inputs.append("input")
        previous = "input"
        for layer in layers:
            documents.append(_layer(layer, [previous], merge=False))
            previous = str(layer["name"])
        outputs = [previous]
    else:  # Graph
        for layer in layers:
            if layer["type"] == "Input":
                documents.append(_input(str(layer["name"]), list(layer["shape"])))
                inputs.append(str(layer["name"]))
                continue
            sources = [str(s) for s in layer.get("inputs") or []]
            documents.append(_layer(layer, sources, merge=len(sources) > 1))
        outputs = [str(o) for o in normalized.get("outputs") or []]
    return {
        "class_name": "Functional",
        "config": {
            "name": name,
            "layers": documents,
            "input_layers": [[n, 0, 0] for n in inputs],
            "output_layers": [[n, 0, 0] for n in outputs],
        },
    }


# --------------------------------------------------------------------------
# Request cost and loading
# --------------------------------------------------------------------------


def _elements(shape: Iterable[int | None]) -> int:
    return math.prod(int(d or 1) for d in list(shape)[1:])


def request_cost(document: str) -> RequestCost:
    """What a request costs on the runtime, from the document's shapes alone.

    Per row: the inputs twice (the request's array and its float32 copy),
    every value of the graph as if all were held to the end (the runtime
    reuses buffers, so this bounds it), and the outputs once more (the
    copies returned). Fixed: :data:`bnncore_service.peak.SCRATCH_BYTES`.

    Raises:
        ValueError: a definition the runtime cannot read (the reason named).
    """
    # Imported with the first model (see the note at the imports).
    from bnncore_runtime.definition import parse_definition
    from bnncore_runtime.layers import infer_shapes

    _, graph = parse_definition(document)
    specs = infer_shapes(graph)
    inputs = sum(_elements(specs[v].shape) for v in graph.inputs)
    outputs = [_elements(specs[v].shape) for v in graph.outputs]
    held = sum(_elements(specs[v].shape) for n in graph.nodes for v in n.outputs)
    return RequestCost(
        row_bytes=(2 * inputs + held + sum(outputs)) * BYTES_PER_ELEMENT,
        fixed_bytes=SCRATCH_BYTES,
        output_elements=tuple(outputs),
    )


def _weights_format(data: bytes) -> str | None:
    """The ``__metadata__.format`` of a safetensors file (``None`` when
    absent or unreadable: the runtime's reader then names the problem)."""
    # Imported with the first model (see the note at the imports).
    from bnncore_runtime.container import MAX_HEADER_BYTES

    if len(data) < 8:
        return None
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        return None
    try:
        header = json.loads(bytes(data[8 : 8 + length]))
    except ValueError:
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    found = metadata.get("format") if isinstance(metadata, dict) else None
    return found if isinstance(found, str) else None


@dataclass
class RuntimeServed:
    """A version loaded on the runtime (the interface of
    :class:`bnncore_service.inference.Served` that inference uses).

    Attributes:
        key: ``(content_hash, weights sha256)``.
        model: The ``bnncore_runtime.Model``.
    """

    key: tuple[str, str | None]
    model: bnncore_runtime.Model
    packed_note: str = ""

    @property
    def packed(self) -> bnncore_runtime.Model:
        """The model on the packed engine's plan and core (as ``Served.packed``)."""
        return self.model

    def engine_for(self, requested: str) -> str:
        """``"packed"`` for ``auto`` or ``packed``.

        Raises:
            InferenceError: 501 for ``keras`` (no TensorFlow here).
        """
        if requested == "keras":
            raise InferenceError(
                501,
                "parameters.engine: received 'keras', but this inference replica "
                "(BNN_ROLE=inference) has no TensorFlow; use 'auto' or 'packed', "
                "or send the request to a full replica",
                reason="needs_full_replica",
            )
        return ENGINE

    def predict(self, arrays: list[np.ndarray], engine: str) -> list[np.ndarray]:
        """Runs a batch (blocking): one array per model output, in order."""
        result = self.model.predict(arrays if len(arrays) > 1 else arrays[0])
        results = result if isinstance(result, list) else [result]
        return [np.asarray(out) for out in results]


def load(
    name: str,
    version: int,
    key: tuple[str, str | None],
    normalized: dict[str, Any],
    weights: bytes | None,
    max_bytes: int,
) -> RuntimeServed:
    """Plans a stored version for the compiled core (blocking).

    Args:
        name, version: The version (for messages).
        key: Its served-model cache key.
        normalized: Its stored definition.
        weights: Its uploaded weights file, ``None`` when none was uploaded.
        max_bytes: Largest weights file read (``BNN_MAX_WEIGHTS_BYTES``).

    Raises:
        NeedsFullReplicaError: the version needs TensorFlow (501), with the reason.
    """
    # Imported with the first model (see the note at the imports).
    from bnncore_runtime.codec import FORMAT

    document = json.dumps(_document(name, version, normalized))
    if weights is None:
        raise NeedsFullReplicaError(
            name,
            version,
            "no weights were uploaded, and its initial weights are drawn by Keras "
            "when the model is built; upload a bnncore weights file "
            "(bnncore.export.write_weights) with PUT .../weights to a full replica",
        )
    if _weights_format(weights) != FORMAT:
        raise NeedsFullReplicaError(
            name,
            version,
            "its uploaded weights are a plain float32 safetensors file, whose "
            "latent kernels and unfolded BatchNorms only Keras applies; upload "
            "them as a bnncore weights file (bnncore.export.write_weights)",
        )
    try:
        model = bnncore_runtime.from_bytes(document, weights, max_bytes=max_bytes)
    except ValueError as error:  # Unsupported layer, definition or weights file
        raise NeedsFullReplicaError(name, version, str(error)) from None
    if not model.binary_layers:
        # A full replica runs such a model with Keras
        # (bnncore_service.inference.Served),
        # whose float rounding the core does not reproduce: every replica of
        # a store answers a request with the same bits.
        raise NeedsFullReplicaError(
            name,
            version,
            "it has no binary layer, so a full replica runs it with Keras rather "
            "than the packed engine, and only Keras gives its answers",
        )
    return RuntimeServed(key, model)


def _document(name: str, version: int, normalized: dict[str, Any]) -> dict[str, Any]:
    try:
        return keras_document(normalized)
    except _RefusedError as error:
        raise NeedsFullReplicaError(name, version, str(error)) from None


def cost(name: str, version: int, normalized: dict[str, Any]) -> RequestCost:
    """:func:`request_cost` of a stored version.

    Raises:
        NeedsFullReplicaError: the runtime cannot read or run its definition.
    """
    document = json.dumps(_document(name, version, normalized))
    try:
        return request_cost(document)
    except ValueError as error:
        raise NeedsFullReplicaError(name, version, str(error)) from None


# --------------------------------------------------------------------------
# The inference replica's service
# --------------------------------------------------------------------------

_REFUSALS_KEPT = 4096
"""Refusals remembered (by definition hash, or definition and weights)."""


class RuntimeInferenceService(InferenceService):
    """:class:`~bnncore_service.inference.InferenceService` of an inference replica:
    the same cache, scheduling, batching and statistics, with versions loaded
    by :func:`load` (``bnncore_runtime``) and request costs from
    :func:`request_cost`.

    A refusal is remembered by what decides it (the definition's hash, or the
    definition and the weights file's sha256), so a version that needs a full
    replica costs a dictionary lookup per request, not a read of its files.
    """

    def __init__(self, settings: Any, registry: Registry, metrics: Any) -> None:
        super().__init__(settings, registry, metrics)
        self._refused: OrderedDict[Any, str] = OrderedDict()

    def _not_found(self, message: str) -> Exception:
        return InferenceError(404, message)

    def _remember(self, key: Any, error: NeedsFullReplicaError) -> None:
        self._refused[key] = error.why
        while len(self._refused) > _REFUSALS_KEPT:
            self._refused.popitem(last=False)

    def _check_refused(self, key: Any, record: VersionRecord) -> None:
        why = self._refused.get(key)
        if why is not None:
            raise NeedsFullReplicaError(record.name, record.version, why)

    async def _cost_of(self, record: VersionRecord) -> RequestCost:
        self._check_refused(record.content_hash, record)

        def from_definition() -> RequestCost:
            normalized = self.registry.normalized_of(record.content_hash)
            return cost(record.name, record.version, normalized)

        try:
            return await run_in_threadpool(from_definition)
        except NeedsFullReplicaError as error:
            self._remember(record.content_hash, error)
            raise

    async def _load(  # type: ignore[override]
        self,
        record: VersionRecord,
        weights: StoredWeights | None,
        key: tuple[str, str | None],
    ) -> RuntimeServed:
        self._check_refused(record.content_hash, record)
        self._check_refused(key, record)

        def plan() -> RuntimeServed:
            normalized = self.registry.normalized_of(record.content_hash)
            data = None if weights is None else weights.read()
            return load(
                record.name,
                record.version,
                key,
                normalized,
                data,
                self.settings.max_weights_bytes,
            )

        try:
            return await run_in_threadpool(plan)
        except NeedsFullReplicaError as error:
            self._remember(key, error)
            raise
