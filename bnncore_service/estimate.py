"""Size before substance: the analytic estimate of a definition, and the limits.

:func:`estimate` walks a validated graph definition with plain Python
integers — output shapes, weights (with their bit widths), parameters, memory,
MACs and activation elements per layer — without building or allocating
anything, and refuses it as soon as a configured limit is passed. Each
layer's output shape, weights, MAC terms and folding come from the table of
layer rules (:mod:`bnncore_runtime.layer_rules`), which
``bnncore.models.profile`` applies to the built model too, so the estimate of
a definition equals the profile of the model built from it by construction.
What stays here is the service's own: the limits, and the totals and report
in the shape of the profile's.

:func:`estimate_with_peak` also returns the peak memory of running the model
(:mod:`bnncore_service.peak`): the per-row bytes and the batch-independent bytes that
bound what one inference request may allocate. A model whose single row does
not fit ``BNN_MAX_REQUEST_BYTES`` is refused here, at registration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

from bnncore_runtime.layer_rules import (
    LayerRule,
    RuleError,
    WeightsRule,
    dtype_bits,
    rule_for,
)
from bnncore_service.config import Settings
from bnncore_service.peak import (
    JSON_BYTES_PER_VALUE,
    LayerPeak,
    Peak,
    RequestCost,
    layer_peak,
    model_peak,
)
from bnncore_service.schemas import layers as L
from bnncore_service.schemas.components import quantizer_bits
from bnncore_service.schemas.definitions import Graph
from bnncore_service.schemas.reports import (
    REPORT_SCHEMA_VERSION,
    Estimate,
    EstimateMemory,
    EstimateReport,
    EstimateReportLayer,
    EstimateReportModel,
    EstimateReportTotals,
    EstimateReportWeight,
    EstimateTotals,
    LayerEstimate,
    Weight,
)

__all__ = [
    "DefinitionError",
    "LimitError",
    "estimate",
    "estimate_layer",
    "estimate_report",
    "estimate_with_peak",
    "request_cost",
]

Shape = tuple[int, ...]


class DefinitionError(ValueError):
    """A definition that is well-formed but cannot be a model (→ 422)."""


class LimitError(ValueError):
    """A definition larger than a configured limit (→ 413)."""


def _limit(where: str, what: str, value: int, limit: int, setting: str) -> None:
    if value > limit:
        raise LimitError(
            f"{where}: {what} {value:,} exceeds the limit {limit:,} "
            f"(BNN_{setting.upper()})"
        )


def _definition_error(where: str, error: RuleError) -> DefinitionError:
    """A layer rule's refusal, placed in the definition (``where.field``)."""
    place = f"{where}.{error.field}" if error.field else where
    return DefinitionError(f"{place}: {error.message}")


def _weights_and_macs(
    rule: LayerRule, layer: Any, shapes: list[Shape], out: Shape
) -> tuple[list[Weight], list[tuple[Weight, int]]]:
    """The layer's weights (name, shape, bits) and its MAC terms, by its rule.

    A MAC term is a kernel and how many times each of its weights is used in
    one call at batch 1.
    """
    weights = []
    for weight in cast(WeightsRule, rule.weights)(layer, shapes, out):
        argument = rule.quantizer_of(weight.name)
        quantizer = getattr(layer, argument, None) if argument else None
        weights.append(
            Weight(
                name=weight.name,
                shape=list(weight.shape),
                bits=quantizer_bits(quantizer) or dtype_bits(weight.dtype),
                trainable=layer.trainable and weight.trainable,
            )
        )
    by_name = {weight.name: weight for weight in weights}
    terms = [
        (by_name[term.weight], cast(int, term.positions))
        for term in (rule.macs(layer, shapes, out) if rule.macs else ())
    ]
    return weights, terms


def _check_sizes(where: str, layer: Any, settings: Settings) -> None:
    for field in ("kernel_size", "strides", "dilation_rate", "pool_size"):
        for value in getattr(layer, field, None) or ():
            _limit(
                f"{where}.{field}",
                field,
                value,
                settings.max_kernel_size,
                "max_kernel_size",
            )
    if hasattr(layer, "units"):  # Dense and QuantDense
        _limit(f"{where}.units", "units", layer.units, settings.max_units, "max_units")
    if hasattr(layer, "filters"):
        _limit(
            f"{where}.filters",
            "filters",
            layer.filters,
            settings.max_filters,
            "max_filters",
        )


def estimate_layer(
    where: str, layer: Any, shapes: list[Shape], settings: Settings
) -> tuple[LayerEstimate, Shape]:
    """The estimate of one layer given its input shapes (batch excluded)."""
    _check_sizes(where, layer, settings)
    if hasattr(layer, "depth_multiplier"):  # depthwise and separable
        # input channels × depth_multiplier is a channel count: the output of
        # a depthwise layer, the intermediate of a separable one.
        _limit(
            f"{where}.depth_multiplier",
            f"channels (input channels {shapes[0][-1]:,} × depth_multiplier "
            f"{layer.depth_multiplier:,})",
            shapes[0][-1] * layer.depth_multiplier,
            settings.max_filters,
            "max_filters",
        )
    # No limit on an output's extents: a layer's width is bounded above
    # (units, filters, channels), every tensor's size by the activation
    # elements (a Flatten of a large feature map is not a wide layer).
    rule = rule_for(layer.type)
    if rule.output_shape is None or not rule.estimable:
        raise DefinitionError(f"{where}: {layer.type} layers cannot be estimated")
    try:
        out = rule.output_shape(layer, shapes)
        weights, terms = _weights_and_macs(rule, layer, shapes, out)
    except RuleError as error:
        raise _definition_error(where, error) from None
    input_bits = quantizer_bits(getattr(layer, "input_quantizer", None))
    macs = bops = 0
    macs_by_bits: dict[str, int] = {}
    for kernel, positions in terms:
        count = math.prod(kernel.shape) * positions
        key = str(max(input_bits or 32, kernel.bits))
        macs += count
        macs_by_bits[key] = macs_by_bits.get(key, 0) + count
        bops += count * (input_bits or 32) * kernel.bits
    params = sum(math.prod(w.shape) for w in weights)
    trainable = sum(math.prod(w.shape) for w in weights if w.trainable)
    by_bits: dict[str, int] = {}
    memory_bits = 0
    for weight in weights:
        count = math.prod(weight.shape)
        by_bits[str(weight.bits)] = by_bits.get(str(weight.bits), 0) + count
        memory_bits += count * weight.bits
    inference_params = params
    if rule.fold is not None:  # one scale and one offset per channel
        channels = next(w for w in weights if w.name == rule.fold.channels)
        inference_params = rule.fold.params(math.prod(channels.shape))
        memory_bits = inference_params * channels.bits
    return (
        LayerEstimate(
            name=layer.name,
            type=layer.type,
            input_precision=input_bits,
            output_shape=[None, *out],
            params=params,
            trainable_params=trainable,
            non_trainable_params=params - trainable,
            inference_params=inference_params,
            params_by_bits=_sorted_bits(by_bits),
            memory_bits=memory_bits,
            macs=macs,
            macs_by_bits=_sorted_bits(macs_by_bits),
            bops=bops,
            activation_elements=math.prod(out),
            weights=weights,
        ),
        out,
    )


def estimate(graph: Graph, settings: Settings, offset: int = 0) -> Estimate:
    """The analytic estimate of a graph definition, checked against the limits.

    Args:
        graph: A validated graph definition.
        settings: Limits to enforce.
        offset: Subtracted from layer indices in messages (1 for a Sequential
            definition, whose generated ``Input`` is not one of its layers).

    Raises:
        LimitError: a configured limit is exceeded (checked as the walk goes,
            so a huge definition is refused after the first offending layer),
            including a model whose one row would not fit
            ``BNN_MAX_REQUEST_BYTES``.
        DefinitionError: shapes that do not fit (rank, sizes, merges).
    """
    return estimate_with_peak(graph, settings, offset)[0]


def estimate_with_peak(
    graph: Graph, settings: Settings, offset: int = 0
) -> tuple[Estimate, Peak]:
    """:func:`estimate` and the model's peak memory
    (:class:`bnncore_service.peak.Peak`).

    Raises:
        LimitError / DefinitionError: as :func:`estimate`.
    """
    layers = [layer for layer in graph.layers if not isinstance(layer, L.Input)]
    _limit(
        "definition.layers",
        "layer count",
        len(layers),
        settings.max_layers,
        "max_layers",
    )
    shapes: dict[str, Shape] = {}
    rows: list[LayerEstimate] = []
    peaks: dict[str, LayerPeak] = {}
    params = elements = 0
    for index, layer in enumerate(graph.layers):
        where = f"definition.layers[{index - offset}]"
        if isinstance(layer, L.Input):
            shape = tuple(layer.shape)
            for n in shape:
                _limit(
                    f"{where}.shape",
                    f"dimension of Input layer {layer.name!r}",
                    n,
                    settings.max_dimension,
                    "max_dimension",
                )
            shapes[layer.name] = shape  # type: ignore[index]
            elements += math.prod(shape)
            continue
        inputs = [shapes[name] for name in layer.inputs or []]
        try:
            row, out = estimate_layer(where, layer, inputs, settings)
            params += row.params
            elements += row.activation_elements
            _limit(where, "total params", params, settings.max_params, "max_params")
            _limit(
                where,
                "total activation elements",
                elements,
                settings.max_activation_elements,
                "max_activation_elements",
            )
            working = layer_peak(layer, inputs, out, row.weights)
            _limit(
                where,
                f"working memory of one row ({layer.type}: inputs, intermediates and "
                "output, bytes)",
                working.working_bytes + working.fixed_bytes,
                settings.max_request_bytes,
                "max_request_bytes",
            )
        except (LimitError, DefinitionError) as error:
            # Every refusal names the layer as the client wrote it.
            raise type(error)(
                f"{error} (layer {layer.name!r}, type {layer.type})"
            ) from None
        peaks[layer.name] = working
        shapes[layer.name] = out
        rows.append(row)
    result = Estimate(
        name=graph.name,
        inputs=[[None, *shapes[i.name]] for i in graph.inputs()],  # type: ignore[index]
        outputs=[[None, *shapes[name]] for name in graph.outputs],
        layers=rows,
        totals=_totals(rows),
    )
    peak = model_peak(
        graph.layers,
        peaks,
        {name: math.prod(shape) for name, shape in shapes.items()},
        [i.name for i in graph.inputs()],  # type: ignore[misc]
        graph.outputs,
    )
    cost = request_cost(peak, result)
    every = range(len(graph.outputs))
    one_row = cost.request_bytes(1, every, JSON_BYTES_PER_VALUE)
    result.memory = EstimateMemory(
        row_bytes=peak.row_bytes,
        fixed_bytes=peak.fixed_bytes,
        peak_layer=peak.peak_layer,
        response_row_bytes=cost.response_row_bytes(every, JSON_BYTES_PER_VALUE),
        max_batch=cost.max_rows(
            settings.max_request_bytes, every, JSON_BYTES_PER_VALUE
        ),
    )
    _limit(
        "definition",
        "memory of a one-row request (peak of the model at batch 1 plus its "
        "JSON response, bytes)",
        one_row,
        settings.max_request_bytes,
        "max_request_bytes",
    )
    return result, peak


def request_cost(peak: Peak, result: Estimate) -> RequestCost:
    """The :class:`RequestCost` of a model from its peak and its estimate."""
    return RequestCost(
        row_bytes=peak.row_bytes,
        fixed_bytes=peak.fixed_bytes,
        output_elements=tuple(
            math.prod(int(n) for n in shape[1:] if n is not None)
            for shape in result.outputs
        ),
    )


def _sorted_bits(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(counts.items(), key=lambda kv: int(kv[0])) if v}


def _sum_bits(rows: Sequence[Any], field: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for row in rows:
        for bits, count in getattr(row, field).items():
            total[bits] = total.get(bits, 0) + count
    return _sorted_bits(total)


def _totals(rows: list[LayerEstimate]) -> EstimateTotals:
    memory_bits = sum(r.memory_bits for r in rows)
    return EstimateTotals(
        params=sum(r.params for r in rows),
        trainable_params=sum(r.trainable_params for r in rows),
        non_trainable_params=sum(r.non_trainable_params for r in rows),
        inference_params=sum(r.inference_params for r in rows),
        params_by_bits=_sum_bits(rows, "params_by_bits"),
        memory_bits=memory_bits,
        memory_bytes=-(-memory_bits // 8),
        macs=sum(r.macs for r in rows),
        macs_by_bits=_sum_bits(rows, "macs_by_bits"),
        bops=sum(r.bops for r in rows),
        activation_elements=sum(r.activation_elements for r in rows),
    )


# ----------------------------------------------------------------------------
# The response: the estimate in the shape of the profile report
# ----------------------------------------------------------------------------

_BUILT_TYPE = "Functional"
"""The class of every model the builder makes from a graph (``keras.Model``)."""


def _shapes(shapes: list[list[int | None]]) -> Any:
    """As the report writes shapes: one as a list, several as a list of lists."""
    if not shapes:
        return None
    return shapes[0] if len(shapes) == 1 else shapes


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _report_layer(
    row: LayerEstimate, inputs: list[list[int | None]], folded: bool
) -> EstimateReportLayer:
    counted = [(w.bits, math.prod(w.shape)) for w in row.weights]
    if folded:  # BatchNormalization: one scale and one offset per channel
        inference_by_bits = {"32": row.inference_params} if row.inference_params else {}
        memory_8 = row.inference_params * 8
    else:
        inference_by_bits = dict(row.params_by_bits)
        memory_8 = sum(n * min(bits, 8) for bits, n in counted)
    return EstimateReportLayer(
        name=row.name,
        type=row.type,
        calls=1,
        input_precision=row.input_precision,
        output_precision=None,
        input_shape=_shapes(inputs),
        output_shape=row.output_shape,
        params=row.params,
        trainable_params=row.trainable_params,
        non_trainable_params=row.non_trainable_params,
        params_by_bits=row.params_by_bits,
        inference_params=row.inference_params,
        inference_params_by_bits=inference_by_bits,
        memory_bits=row.memory_bits,
        memory_bits_8bit_floats=memory_8,
        macs=row.macs,
        macs_by_bits=row.macs_by_bits,
        bops=row.bops,
        activation_elements=row.activation_elements,
        activation_bytes=None,
        peak_activation_bytes=None,
        weights=[
            EstimateReportWeight(
                name=w.name,
                shape=w.shape,
                # Every weight a definition makes is float32 but the
                # Normalization count, Keras's int64.
                dtype="int64" if w.bits == 64 else "float32",
                bits=w.bits,
                trainable=w.trainable,
                params=math.prod(w.shape),
                counted=True,
                path=None,
                quantizer=None,
            )
            for w in row.weights
        ],
        layers=[],
        notes=None,
    )


def estimate_report(result: Estimate, graph: Graph) -> EstimateReport:
    """The estimate of ``graph`` in the shape of its profile report.

    What the profile of the built model would say, computed from the estimate
    alone; the fields only the built model can tell (output precisions,
    activation bytes, weight paths, quantizer names, notes) are null. The
    estimate's own fields (``name``, ``inputs``, ``outputs``, ``memory``,
    ``totals.activation_elements``) are kept.

    Args:
        result: The estimate of ``graph`` (:func:`estimate`).
        graph: The definition's graph.
    """
    if result.memory is None:
        raise ValueError("estimate_report needs the estimate's memory")
    output_shapes: dict[str | None, list[int | None]] = {
        layer.name: shape
        for layer, shape in zip(graph.inputs(), result.inputs, strict=True)
    }
    output_shapes.update((row.name, row.output_shape) for row in result.layers)
    by_name = {layer.name: layer for layer in graph.layers}
    layers = [
        _report_layer(
            row,
            [output_shapes[name] for name in by_name[row.name].inputs or []],
            folded=rule_for(by_name[row.name].type).fold is not None,
        )
        for row in result.layers
    ]
    t = result.totals
    f32_bytes = t.inference_params * 4
    totals = EstimateReportTotals(
        params=t.params,
        trainable_params=t.trainable_params,
        non_trainable_params=t.non_trainable_params,
        inference_params=t.inference_params,
        params_by_bits=t.params_by_bits,
        inference_params_by_bits=_sum_bits(layers, "inference_params_by_bits"),
        binary_params=t.params_by_bits.get("1", 0),
        float_params=t.params_by_bits.get("32", 0),
        memory_bits=t.memory_bits,
        memory_bytes=t.memory_bytes,
        memory_bytes_8bit_floats=-(
            -sum(row.memory_bits_8bit_floats for row in layers) // 8
        ),
        float32_equivalent_bytes=f32_bytes,
        compression=_ratio(f32_bytes, t.memory_bytes),
        memory_saving=(1 - t.memory_bytes / f32_bytes) if f32_bytes else None,
        macs=t.macs,
        macs_by_bits=t.macs_by_bits,
        binary_mac_ratio=_ratio(t.macs_by_bits.get("1", 0), t.macs),
        ternary_mac_ratio=_ratio(t.macs_by_bits.get("2", 0), t.macs),
        bops=t.bops,
        peak_activation_bytes=None,
        activation_elements=t.activation_elements,
    )
    return EstimateReport(
        schema_version=REPORT_SCHEMA_VERSION,
        model=EstimateReportModel(
            name=result.name,
            type=_BUILT_TYPE,
            input_shape=_shapes(result.inputs),
            output_shape=_shapes(result.outputs),
            input_shapes=result.inputs,
            output_shapes=result.outputs,
            notes=None,
        ),
        layers=layers,
        totals=totals,
        name=result.name,
        inputs=result.inputs,
        outputs=result.outputs,
        memory=result.memory,
    )
