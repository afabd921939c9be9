"""Counting: bit widths, parameters, memory, MACs, BOPs and activations.

The rules (documented with examples in ``docs/profile.md``); the facts about
each layer type (which kernels multiply inputs and how often, which layers
fold for inference) come from the table of layer rules,
:mod:`bnncore_runtime.layer_rules`, which the service's estimate of a
definition applies too:

* A weight counts at the ``precision`` of the quantizer applied to it in the
  forward pass (``layer.kernel_quantizers``), else at its dtype's width. A
  quantizer without a declared precision counts 32 bits.
* ``params`` is Keras's count (every weight, once), so the totals equal
  ``model.count_params()``. A weight shared by several layers is counted at its
  first appearance only.
* Memory: BatchNormalization folds into a scale and an offset per channel, so
  it counts 2 values per channel at its variables' width, whatever ``center`` /
  ``scale`` are; every other weight counts once at its bit width.
  ``inference_params`` counts parameters the same way.
* MACs: non-bias kernel weights × output positions (Dense, Conv, Depthwise and
  both parts of Separable); × input positions for transposed convolutions (every
  input value meets every kernel weight); kernel weights for locally connected
  layers (no weight sharing). A MAC's precision is max(input bits, kernel bits)
  where the input bits are the ``input_quantizer`` precision, or 32 without one.
  BOPs = MACs × input bits × kernel bits.
* Activations at batch 1: output elements, at the output's precision (a
  quantizer's precision for quantizer layers and quantizer activations, else
  the output dtype's width).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import keras

from bnncore import quantizers
from bnncore.analysis.graph import (
    Call,
    call_sites,
    flat_shapes,
    model_kind,
    recorded_call,
)
from bnncore.analysis.records import (
    LayerProfile,
    ModelProfile,
    Shape,
    Totals,
    WeightProfile,
    bit_counts,
)
from bnncore_runtime.layer_rules import LayerRule, MacTerm, dtype_bits, rule_of

__all__ = [
    "check_built",
    "dtype_bits",
    "input_precision",
    "is_mac_layer",
    "output_precision",
    "profile_layer",
    "profile_model",
]

DEFAULT_BITS = 32

_Sources = Mapping[str | None, int]  # producer name → bits of its output


def _quantizer_name(quantizer: Any) -> str:
    if isinstance(quantizer, keras.layers.Layer):
        return type(quantizer).__name__
    return getattr(quantizer, "__name__", type(quantizer).__name__)


def _precision(quantizer: Any) -> int:
    return quantizers.get_precision(quantizer) or DEFAULT_BITS


def _elements(shape: Shape) -> int | None:
    """Elements of one sample (batch dimension dropped); ``None`` if unknown."""
    dims = shape[1:]
    if any(d is None for d in dims):
        return None
    return math.prod(dims)  # type: ignore[arg-type]


def _bytes(elements: int, bits: int) -> int:
    return -(-elements * bits // 8)


@dataclass
class _Context:
    """State shared across one profile: weights already counted, trainability."""

    trainable_ids: set[int]
    seen: set[int] = field(default_factory=set)


# ----------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------


def _quantized_attributes(layer: Any) -> dict[int, tuple[int, str]]:
    """id(variable) → (bits, quantizer name) for the layer's quantized weights."""
    mapping = getattr(layer, "kernel_quantizers", None)
    if not isinstance(mapping, Mapping):
        return {}
    found = {}
    for attribute, quantizer in mapping.items():
        if quantizer is None:
            continue
        variable = getattr(layer, attribute, None)
        if variable is not None:
            found[id(variable)] = (_precision(quantizer), _quantizer_name(quantizer))
    return found


def _weight_profiles(layer: Any, context: _Context) -> tuple[WeightProfile, ...]:
    quantized = _quantized_attributes(layer)
    weights = []
    for variable in getattr(layer, "weights", []):
        bits, quantizer = quantized.get(id(variable), (None, None))
        counted = id(variable) not in context.seen
        context.seen.add(id(variable))
        weights.append(
            WeightProfile(
                name=str(variable.name),
                path=str(getattr(variable, "path", variable.name)),
                shape=tuple(int(d) for d in variable.shape),
                dtype=str(variable.dtype),
                bits=bits if bits is not None else dtype_bits(variable.dtype),
                trainable=id(variable) in context.trainable_ids,
                quantizer=quantizer,
                counted=counted,
            )
        )
    return tuple(weights)


@dataclass
class _ParamCounts:
    params: int = 0
    trainable: int = 0
    by_bits: Counter = field(default_factory=Counter)
    inference: int = 0
    inference_by_bits: Counter = field(default_factory=Counter)
    memory_bits: int = 0
    memory_bits_8: int = 0


def _count_params(layer: Any, weights: tuple[WeightProfile, ...]) -> _ParamCounts:
    counts = _ParamCounts()
    counted = [w for w in weights if w.counted]
    for w in counted:
        counts.params += w.params
        counts.trainable += w.params if w.trainable else 0
        counts.by_bits[w.bits] += w.params
    rule = rule_of(layer)
    if rule is not None and rule.fold is not None and counted:
        # Folded at inference into one scale and one offset per channel.
        variable = getattr(layer, rule.fold.channels)
        inference = rule.fold.params(math.prod(int(d) for d in variable.shape))
        bits = dtype_bits(variable.dtype)
        counts.inference = inference
        counts.inference_by_bits[bits] += inference
        counts.memory_bits = inference * bits
        counts.memory_bits_8 = inference * min(bits, 8)
        return counts
    for w in counted:
        counts.inference += w.params
        counts.inference_by_bits[w.bits] += w.params
        counts.memory_bits += w.params * w.bits
        counts.memory_bits_8 += w.params * min(w.bits, 8)
    return counts


# ----------------------------------------------------------------------------
# MACs
# ----------------------------------------------------------------------------


def _mac_terms(rule: LayerRule, layer: Any, call: Call) -> tuple[MacTerm, ...]:
    """The layer's MAC terms in one call, by its rule (shapes without batch)."""
    assert rule.macs is not None
    inputs = [shape[1:] for shape in call.input_shapes]
    output = call.output_shapes[0][1:] if call.output_shapes else None
    return rule.macs(layer, inputs, output)


def _unknown_shape_note(call: Call) -> str:
    if not call.output_shapes:
        return (
            "MACs not counted: Keras recorded no shapes for this layer (it was "
            "never called on symbolic inputs, as in subclassed models)."
        )
    return (
        "MACs not counted for a call with unknown spatial size: input "
        f"{list(call.input_shapes)}, output {list(call.output_shapes)}."
    )


def is_mac_layer(layer: Any) -> bool:
    """Whether the layer multiplies its inputs by weights (MACs counted)."""
    rule = rule_of(layer)
    return rule is not None and rule.macs is not None


@dataclass
class _MacCounts:
    macs: int = 0
    by_bits: Counter = field(default_factory=Counter)
    bops: int = 0
    notes: list[str] = field(default_factory=list)


def _count_macs(
    layer: Any,
    calls: tuple[Call, ...],
    weights: tuple[WeightProfile, ...],
    input_bits: int,
) -> _MacCounts:
    counts = _MacCounts()
    rule = rule_of(layer)
    if rule is None or rule.macs is None:
        silent = rule is not None and rule.weights_without_macs
        if any(w.params for w in weights) and not silent:
            counts.notes.append(
                f"MACs are not counted for {type(layer).__name__} layers."
            )
        return counts
    bits_by_id = {id(v): w.bits for v, w in zip(layer.weights, weights, strict=True)}
    for call in calls:
        terms = _mac_terms(rule, layer, call)
        if any(term.positions is None for term in terms):
            counts.notes.append(_unknown_shape_note(call))
            continue
        for term in terms:
            kernel = getattr(layer, term.weight, None)
            if kernel is None:
                continue
            kernel_bits = bits_by_id.get(id(kernel), dtype_bits(kernel.dtype))
            macs = math.prod(int(d) for d in kernel.shape) * cast(int, term.positions)
            counts.macs += macs
            counts.by_bits[max(input_bits, kernel_bits)] += macs
            counts.bops += macs * input_bits * kernel_bits
    return counts


# ----------------------------------------------------------------------------
# Precisions and activations
# ----------------------------------------------------------------------------


def input_precision(layer: Any) -> int | None:
    """The layer's ``input_quantizer`` precision (32 if undeclared), else None."""
    quantizer = getattr(layer, "input_quantizer", None)
    return None if quantizer is None else _precision(quantizer)


def output_precision(layer: Any) -> int:
    """Bits of the values a layer outputs."""
    if isinstance(layer, quantizers.Quantizer):
        return _precision(layer)
    declared = quantizers.get_precision(getattr(layer, "activation", None))
    if declared is not None:
        return declared
    try:
        return dtype_bits(keras.tree.flatten(layer.output)[0].dtype)
    except (AttributeError, ValueError, RuntimeError, IndexError):
        return dtype_bits(getattr(layer, "compute_dtype", None) or "float32")


@dataclass
class _Activations:
    elements: int = 0
    bytes: int = 0
    peak: int = 0
    notes: list[str] = field(default_factory=list)


def _count_activations(
    calls: tuple[Call, ...], bits: int, source_bits: Mapping[str | None, int]
) -> _Activations:
    result = _Activations()
    for call in calls:
        out_bytes = 0
        for shape in call.output_shapes:
            elements = _elements(shape)
            if elements is None:
                result.notes.append(f"Output shape {shape} has unknown dimensions.")
                continue
            result.elements += elements
            out_bytes += _bytes(elements, bits)
        in_bytes = 0
        for shape, source in zip(call.input_shapes, call.input_sources, strict=False):
            elements = _elements(shape)
            if elements is not None:
                in_bytes += _bytes(elements, source_bits.get(source, DEFAULT_BITS))
        result.bytes += out_bytes
        result.peak = max(result.peak, in_bytes + out_bytes)
    return result


# ----------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------


def _layer_row(
    layer: Any, calls: tuple[Call, ...], context: _Context, sources: _Sources
) -> LayerProfile:
    weights = _weight_profiles(layer, context)
    params = _count_params(layer, weights)
    in_precision = input_precision(layer)
    macs = _count_macs(layer, calls, weights, in_precision or DEFAULT_BITS)
    out_bits = output_precision(layer)
    activations = _count_activations(calls, out_bits, sources)
    return LayerProfile(
        name=layer.name,
        type=type(layer).__name__,
        calls=len(calls),
        input_precision=in_precision,
        output_precision=out_bits,
        input_shapes=calls[0].input_shapes if calls else (),
        output_shapes=calls[0].output_shapes if calls else (),
        params=params.params,
        trainable_params=params.trainable,
        non_trainable_params=params.params - params.trainable,
        params_by_bits=bit_counts(params.by_bits),
        inference_params=params.inference,
        inference_params_by_bits=bit_counts(params.inference_by_bits),
        memory_bits=params.memory_bits,
        memory_bits_8bit_floats=params.memory_bits_8,
        macs=macs.macs,
        macs_by_bits=bit_counts(macs.by_bits),
        bops=macs.bops,
        activation_elements=activations.elements,
        activation_bytes=activations.bytes,
        peak_activation_bytes=activations.peak,
        weights=weights,
        notes=tuple(dict.fromkeys(macs.notes + activations.notes)),
    )


def _summed(rows: Iterable[LayerProfile], attribute: str, factor: int = 1) -> Any:
    rows = list(rows)
    first = getattr(rows[0], attribute) if rows else 0
    if isinstance(first, Mapping):
        total: Counter = Counter()
        for row in rows:
            total.update(getattr(row, attribute))
        return bit_counts({b: n * factor for b, n in total.items()})
    return sum(getattr(row, attribute) for row in rows) * factor


def _nested_row(
    model: Any, calls: tuple[Call, ...], context: _Context, sources: _Sources
) -> LayerProfile:
    children = _rows(model, context)
    out_bits = children[-1].output_precision if children else DEFAULT_BITS
    activations = _count_activations(calls, out_bits, sources)
    times = max(len(calls), 1)
    return LayerProfile(
        name=model.name,
        type=type(model).__name__,
        calls=len(calls),
        # As Larq: what the model's first layer quantizes its input to.
        input_precision=children[0].input_precision if children else None,
        output_precision=out_bits,
        input_shapes=calls[0].input_shapes if calls else (),
        output_shapes=calls[0].output_shapes if calls else (),
        params=_summed(children, "params"),
        trainable_params=_summed(children, "trainable_params"),
        non_trainable_params=_summed(children, "non_trainable_params"),
        params_by_bits=_summed(children, "params_by_bits"),
        inference_params=_summed(children, "inference_params"),
        inference_params_by_bits=_summed(children, "inference_params_by_bits"),
        memory_bits=_summed(children, "memory_bits"),
        memory_bits_8bit_floats=_summed(children, "memory_bits_8bit_floats"),
        macs=_summed(children, "macs", times),
        macs_by_bits=_summed(children, "macs_by_bits", times),
        bops=_summed(children, "bops", times),
        activation_elements=activations.elements,
        activation_bytes=activations.bytes,
        peak_activation_bytes=max(
            [activations.peak, *(c.peak_activation_bytes for c in children)]
        ),
        layers=tuple(children),
        notes=tuple(activations.notes),
    )


def _leftover_row(model: Any, context: _Context) -> LayerProfile | None:
    """A row for weights the model owns outside of its layers (if any)."""
    own = [v for v in model.weights if id(v) not in context.seen]
    if not own:
        return None
    weights = []
    for variable in own:
        context.seen.add(id(variable))
        weights.append(
            WeightProfile(
                name=str(variable.name),
                path=str(getattr(variable, "path", variable.name)),
                shape=tuple(int(d) for d in variable.shape),
                dtype=str(variable.dtype),
                bits=dtype_bits(variable.dtype),
                trainable=id(variable) in context.trainable_ids,
            )
        )
    params = _count_params(None, tuple(weights))
    return LayerProfile(
        name=f"{model.name}/(own weights)",
        type="ModelWeights",
        calls=0,
        input_precision=None,
        output_precision=DEFAULT_BITS,
        input_shapes=(),
        output_shapes=(),
        params=params.params,
        trainable_params=params.trainable,
        non_trainable_params=params.params - params.trainable,
        params_by_bits=bit_counts(params.by_bits),
        inference_params=params.inference,
        inference_params_by_bits=bit_counts(params.inference_by_bits),
        memory_bits=params.memory_bits,
        memory_bits_8bit_floats=params.memory_bits_8,
        macs=0,
        macs_by_bits=bit_counts(),
        bops=0,
        activation_elements=0,
        activation_bytes=0,
        peak_activation_bytes=0,
        weights=tuple(weights),
        notes=("Weights created by the model itself, outside of its layers.",),
    )


def _input_bits(model: Any) -> dict[str | None, int]:
    bits: dict[str | None, int] = {None: DEFAULT_BITS}
    if model_kind(model) == "functional":
        for op in model.operations:
            if isinstance(op, keras.layers.InputLayer):
                bits[op.name] = dtype_bits(op.output.dtype)
    return bits


def _rows(model: Any, context: _Context) -> list[LayerProfile]:
    sites = call_sites(model)
    sources = _input_bits(model)
    for site in sites:
        if not isinstance(site.op, keras.Model):
            sources[site.op.name] = output_precision(site.op)
    rows = []
    for site in sites:
        if isinstance(site.op, keras.Model):
            row = _nested_row(site.op, site.calls, context, sources)
            sources[site.op.name] = row.output_precision
        else:
            row = _layer_row(site.op, site.calls, context, sources)
        rows.append(row)
    leftover = _leftover_row(model, context)
    if leftover is not None:
        rows.append(leftover)
    return rows


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _totals(rows: list[LayerProfile]) -> Totals:
    params_by_bits = _summed(rows, "params_by_bits") if rows else bit_counts()
    macs = _summed(rows, "macs")
    macs_by_bits = _summed(rows, "macs_by_bits") if rows else bit_counts()
    inference = _summed(rows, "inference_params")
    memory_bits = _summed(rows, "memory_bits")
    memory_bytes = -(-memory_bits // 8)
    f32_bytes = inference * 4
    return Totals(
        params=_summed(rows, "params"),
        trainable_params=_summed(rows, "trainable_params"),
        non_trainable_params=_summed(rows, "non_trainable_params"),
        inference_params=inference,
        params_by_bits=params_by_bits,
        inference_params_by_bits=(
            _summed(rows, "inference_params_by_bits") if rows else bit_counts()
        ),
        binary_params=params_by_bits.get(1, 0),
        float_params=params_by_bits.get(32, 0),
        memory_bits=memory_bits,
        memory_bytes=memory_bytes,
        memory_bytes_8bit_floats=-(-_summed(rows, "memory_bits_8bit_floats") // 8),
        float32_equivalent_bytes=f32_bytes,
        compression=_ratio(f32_bytes, memory_bytes),
        memory_saving=(1 - memory_bytes / f32_bytes) if f32_bytes else None,
        macs=macs,
        macs_by_bits=macs_by_bits,
        binary_mac_ratio=_ratio(macs_by_bits.get(1, 0), macs),
        ternary_mac_ratio=_ratio(macs_by_bits.get(2, 0), macs),
        bops=_summed(rows, "bops"),
        peak_activation_bytes=max((r.peak_activation_bytes for r in rows), default=0),
    )


def _shapes_or_empty(model: Any, attribute: str) -> tuple[Shape, ...]:
    try:
        return flat_shapes(getattr(model, attribute))
    except (AttributeError, ValueError, RuntimeError):
        return ()


def profile_model(model: keras.Model) -> ModelProfile:
    """Profiles a built Keras model (no checks; see :func:`bnncore.models.profile`).

    Args:
        model: A built ``keras.Model``.

    Returns:
        The model's :class:`ModelProfile`.
    """
    context = _Context(trainable_ids={id(v) for v in model.trainable_weights})
    rows = _rows(model, context)
    notes = []
    if model_kind(model) == "subclassed":
        notes.append(
            "Subclassed model: each layer is counted as called once, in the order "
            "of model.layers."
        )
    return ModelProfile(
        name=model.name,
        type=type(model).__name__,
        input_shapes=_shapes_or_empty(model, "inputs"),
        output_shapes=_shapes_or_empty(model, "outputs"),
        layers=tuple(rows),
        totals=_totals(rows),
        notes=tuple(notes),
    )


def check_built(model: Any) -> None:
    """Raises unless ``model`` is a built ``keras.Model`` with built layers.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if the model or one of its layers is not built.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected a keras.Model (Sequential, functional or subclassed). "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    how = (
        "Build it first: call it on a batch of inputs (model(x)), call "
        "model.build(input_shape), or start it with keras.Input(shape)."
    )
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so its weights and shapes are "
            f"unknown. {how}"
        )
    _finish_build(model)
    for layer in model.layers:
        if not layer.built:
            raise ValueError(
                f"Layer '{layer.name}' of model '{model.name}' is not built, so its "
                f"weights are unknown. {how}"
            )


def _finish_build(model: Any) -> None:
    """Builds the layers of a subclassed model that ``model.build(shape)`` left
    unbuilt.

    Keras 3's ``Model.build(input_shape)`` marks a subclassed model without its
    own ``build()`` as built without running ``call`` (tf-keras ran it on a
    placeholder), so its layers have no weights. The model recorded the shape
    (``get_build_config()``); one call on a batch of zeros of that shape builds
    the layers, as an eager call would. Their output shapes stay unrecorded
    (an eager call records none), so they count as in an eagerly called model.
    """
    if all(layer.built for layer in model.layers):
        return
    shape = (model.get_build_config() or {}).get("input_shape")
    if not isinstance(shape, list | tuple) or not all(
        d is None or isinstance(d, int) for d in shape
    ):
        return  # several inputs or no recorded shape: the caller reports it
    batch = [1 if d is None else d for d in shape]
    model(keras.ops.zeros(batch, dtype=model.input_dtype))


def profile_layer(layer: Any) -> LayerProfile:
    """The profile row of one layer (or model) on its own.

    Counted as called once, with the shapes Keras recorded for its first call
    (none for layers only called eagerly). Its weights are all counted.

    Args:
        layer: A built Keras layer or model.

    Returns:
        Its :class:`LayerProfile` (a nested model's has its layers' rows).
    """
    context = _Context(trainable_ids={id(v) for v in layer.trainable_weights})
    calls = (recorded_call(layer),)
    sources: dict[str | None, int] = {None: DEFAULT_BITS}
    if isinstance(layer, keras.Model):
        return _nested_row(layer, calls, context, sources)
    return _layer_row(layer, calls, context, sources)
