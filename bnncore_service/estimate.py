"""Size before substance: the analytic estimate of a definition, and the limits.

:func:`estimate` walks a validated graph definition with plain Python
integers — output shapes, weights (with their bit widths), parameters, memory,
MACs and activation elements per layer — without building or allocating
anything, and refuses it as soon as a configured limit is passed. The
numbers follow the counting rules of ``bnncore.models.profile`` so that the
estimate of a definition equals the profile of the model built from it.

:func:`estimate_with_peak` also returns the peak memory of running the model
(:mod:`bnncore_service.peak`): the per-row bytes and the batch-independent bytes that
bound what one inference request may allocate. A model whose single row does
not fit ``BNN_MAX_REQUEST_BYTES`` is refused here, at registration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

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
from bnncore_service.schemas.common import size_tuple
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


def _rank(where: str, layer: Any, shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        raise DefinitionError(
            f"{where}: {layer.type} expects inputs of rank {rank} (without the "
            f"batch dimension), received shape {list(shape)}"
        )


def _conv_length(where: str, n: int, k: int, s: int, d: int, padding: str) -> int:
    if padding == "valid":
        extent = (k - 1) * d + 1
        if n < extent:
            raise DefinitionError(
                f"{where}: input size {n} is smaller than the kernel/pool extent "
                f"{extent} with padding='valid'"
            )
        return (n - extent) // s + 1
    return -(-n // s)


def _transpose_length(n: int, k: int, s: int, d: int, padding: str) -> int:
    extent = (k - 1) * d + 1
    return n * s + max(extent - s, 0) if padding == "valid" else n * s


MacTerm = tuple[Weight, int]


def _weights_and_macs(
    where: str, layer: Any, shape: Shape, out: Shape
) -> tuple[list[Weight], list[MacTerm]]:
    """The layer's weights (name, shape, bits) and its MAC terms.

    A MAC term is a kernel and how many times each of its weights is used in
    one call at batch 1.
    """
    channels = shape[-1] if shape else 0
    trainable = layer.trainable

    def w(name: str, wshape: Sequence[int], quantizer: Any = None, train=True):
        bits = quantizer_bits(quantizer) or 32
        return Weight(
            name=name, shape=list(wshape), bits=bits, trainable=trainable and train
        )

    bias = getattr(layer, "use_bias", False)
    if isinstance(layer, L._Dense):
        kernel = w(
            "kernel", (channels, layer.units), getattr(layer, "kernel_quantizer", None)
        )
        weights = [kernel] + ([w("bias", (layer.units,))] if bias else [])
        return weights, [(kernel, math.prod(out[:-1]))]
    if isinstance(layer, L._Conv):
        if channels % layer.groups:
            raise DefinitionError(
                f"{where}: input channels {channels} are not a multiple of "
                f"groups={layer.groups}"
            )
        kernel_size = size_tuple(layer.kernel_size)
        kshape = (*kernel_size, channels // layer.groups, layer.filters)
        weights = [w("kernel", kshape, getattr(layer, "kernel_quantizer", None))]
        weights += [w("bias", (layer.filters,))] if bias else []
        return weights, [(weights[0], math.prod(out[:-1]))]
    if isinstance(layer, L._Transpose):
        kshape = (*size_tuple(layer.kernel_size), layer.filters, channels)
        weights = [w("kernel", kshape, getattr(layer, "kernel_quantizer", None))]
        weights += [w("bias", (layer.filters,))] if bias else []
        return weights, [(weights[0], math.prod(shape[:-1]))]
    if isinstance(layer, L._Separable):
        dshape = (*size_tuple(layer.kernel_size), channels, layer.depth_multiplier)
        pshape = (*(1,) * layer._rank, channels * layer.depth_multiplier, layer.filters)
        weights = [
            w("depthwise_kernel", dshape, getattr(layer, "depthwise_quantizer", None)),
            w("pointwise_kernel", pshape, getattr(layer, "pointwise_quantizer", None)),
        ]
        weights += [w("bias", (layer.filters,))] if bias else []
        positions = math.prod(out[:-1])
        return weights, [(weights[0], positions), (weights[1], positions)]
    if isinstance(layer, L._Depthwise):
        kshape = (*size_tuple(layer.kernel_size), channels, layer.depth_multiplier)
        weights = [w("kernel", kshape, getattr(layer, "depthwise_quantizer", None))]
        weights += [w("bias", (channels * layer.depth_multiplier,))] if bias else []
        return weights, [(weights[0], math.prod(out[:-1]))]
    if isinstance(layer, L._Local):
        positions = math.prod(out[:-1])
        kernel_size = size_tuple(layer.kernel_size)
        kshape = (positions, math.prod(kernel_size) * channels, layer.filters)
        weights = [w("kernel", kshape, getattr(layer, "kernel_quantizer", None))]
        weights += [w("bias", (*out[:-1], layer.filters))] if bias else []
        return weights, [(weights[0], 1)]
    if isinstance(layer, L.BatchNormalization):
        weights = [w("gamma", (channels,))] if layer.scale else []
        weights += [w("beta", (channels,))] if layer.center else []
        weights += [
            w("moving_mean", (channels,), train=False),
            w("moving_variance", (channels,), train=False),
        ]
        return weights, []
    if isinstance(layer, L.Normalization):
        if layer.mean is not None:  # constants of the definition, not weights
            return [], []
        return [
            w("mean", (channels,), train=False),
            w("variance", (channels,), train=False),
            Weight(name="count", shape=[], bits=64, trainable=False),
        ], []
    if isinstance(layer, L.LayerNormalization):
        weights = [w("gamma", (channels,))] if layer.scale else []
        weights += [w("beta", (channels,))] if layer.center else []
        return weights, []
    if isinstance(layer, L.LayerScale):
        if layer.projection_dim != channels:
            raise DefinitionError(
                f"{where}.projection_dim: {layer.projection_dim} but the input "
                f"has {channels} channels (allowed: the input's channels)"
            )
        return [w("gamma", (channels,))], []
    if isinstance(layer, L.PReLU):
        alpha = list(shape)
        for axis in layer.shared_axes or []:
            if axis > len(shape):
                raise DefinitionError(
                    f"{where}.shared_axes: axis {axis} is out of range for inputs "
                    f"of rank {len(shape)}"
                )
            alpha[axis - 1] = 1
        return [w("alpha", alpha)], []
    return [], []


def _output_shape(where: str, layer: Any, shapes: list[Shape]) -> Shape:
    """Output shape (batch excluded) of ``layer`` applied to ``shapes``."""
    shape = shapes[0]
    if isinstance(layer, L._Dense):
        return (*shape[:-1], layer.units)
    if isinstance(layer, L._Spatial | L._Local):
        _rank(where, layer, shape, layer._rank + 1)
        kernel_size, strides = size_tuple(layer.kernel_size), size_tuple(layer.strides)
        dilation = getattr(layer, "dilation_rate", (1,) * layer._rank)
        if isinstance(layer, L._Transpose):
            spatial = [
                _transpose_length(n, k, s, d, layer.padding)
                for n, k, s, d in zip(
                    shape[:-1], kernel_size, strides, dilation, strict=True
                )
            ]
        else:
            spatial = [
                _conv_length(where, n, k, s, d, layer.padding)
                for n, k, s, d in zip(
                    shape[:-1], kernel_size, strides, dilation, strict=True
                )
            ]
        if isinstance(layer, L._Separable | L._Conv | L._Transpose | L._Local):
            channels = layer.filters
        else:  # the one kind of _Spatial left: a depthwise convolution
            channels = shape[-1] * cast(L._Depthwise, layer).depth_multiplier
        return (*spatial, channels)
    if isinstance(layer, L._Pool):
        _rank(where, layer, shape, layer._rank + 1)
        pool_size = size_tuple(layer.pool_size)
        strides = size_tuple(layer.strides or layer.pool_size)
        spatial = [
            _conv_length(where, n, p, s, 1, layer.padding)
            for n, p, s in zip(shape[:-1], pool_size, strides, strict=True)
        ]
        return (*spatial, shape[-1])
    if isinstance(layer, L._GlobalPool):
        _rank(where, layer, shape, layer._rank + 1)
        return (*(1,) * layer._rank, shape[-1]) if layer.keepdims else (shape[-1],)
    if isinstance(layer, L.Flatten):
        return (math.prod(shape),)
    if isinstance(layer, L.Reshape):
        target = list(layer.target_shape)
        total = math.prod(shape)
        known = math.prod(v for v in target if v != -1)
        if -1 in target:
            if total % known:
                raise DefinitionError(
                    f"{where}.target_shape: {target} cannot hold {total} elements"
                )
            target[target.index(-1)] = total // known
        if math.prod(target) != total:
            raise DefinitionError(
                f"{where}.target_shape: {target} has {math.prod(target)} elements, "
                f"the input {list(shape)} has {total}"
            )
        return tuple(target)
    if isinstance(layer, L.Permute):
        _rank(where, layer, shape, len(layer.dims))
        return tuple(shape[d - 1] for d in layer.dims)
    if isinstance(layer, L.ZeroPadding1D | L._ZeroPaddingND):
        rank = 1 if isinstance(layer, L.ZeroPadding1D) else layer._rank
        # Validated into one (before, after) pair per spatial axis.
        pads = cast(
            tuple[tuple[int, int], ...],
            (layer.padding,) if rank == 1 else layer.padding,
        )
        _rank(where, layer, shape, rank + 1)
        return (*(n + a + b for n, (a, b) in zip(shape, pads, strict=False)), shape[-1])
    if isinstance(layer, L.Cropping1D | L._CroppingND):
        rank = 1 if isinstance(layer, L.Cropping1D) else layer._rank
        crops = cast(
            tuple[tuple[int, int], ...],
            (layer.cropping,) if rank == 1 else layer.cropping,
        )
        _rank(where, layer, shape, rank + 1)
        spatial = []
        for n, (a, b) in zip(shape, crops, strict=False):
            if a + b >= n:
                raise DefinitionError(
                    f"{where}.cropping: {[list(c) for c in crops]} leaves nothing "
                    f"of the input {list(shape)}"
                )
            spatial.append(n - a - b)
        return (*spatial, shape[-1])
    if isinstance(layer, L.UpSampling1D):
        _rank(where, layer, shape, 2)
        return (shape[0] * layer.size, shape[1])
    if isinstance(layer, L.UpSampling2D):
        _rank(where, layer, shape, 3)
        size = size_tuple(layer.size)
        return (shape[0] * size[0], shape[1] * size[1], shape[2])
    if isinstance(layer, L.Concatenate):
        rank = len(shape)
        axis = layer.axis
        if not (-rank <= axis <= rank) or axis in (0, -rank - 1):
            raise DefinitionError(
                f"{where}.axis: {axis} is not a feature axis of inputs of rank {rank}"
            )
        index = axis - 1 if axis > 0 else rank + axis
        for other in shapes[1:]:
            if len(other) != rank or any(
                a != b
                for i, (a, b) in enumerate(zip(shape, other, strict=True))
                if i != index
            ):
                raise DefinitionError(
                    f"{where}: inputs {[list(s) for s in shapes]} differ outside the "
                    f"concatenation axis {axis}"
                )
        return tuple(
            sum(s[i] for s in shapes) if i == index else shape[i] for i in range(rank)
        )
    if isinstance(layer, L._Merge):
        # Keras broadcasts: inputs of one rank whose sizes agree or are 1
        # (a squeeze-and-excitation scale [1, 1, C] times a [H, W, C] map).
        if any(len(other) != len(shape) for other in shapes[1:]) or any(
            len({n for n in sizes if n != 1}) > 1 for sizes in zip(*shapes, strict=True)
        ):
            raise DefinitionError(
                f"{where}: {layer.type} needs inputs of one rank whose sizes are "
                f"equal or 1 on each axis, received {[list(s) for s in shapes]}"
            )
        return tuple(max(sizes) for sizes in zip(*shapes, strict=True))
    if isinstance(layer, L.BatchNormalization | L.Normalization | L.LayerNormalization):
        _last_axis(where, layer, shape)
    if isinstance(layer, L.Normalization) and layer.mean is not None:
        for field in ("mean", "variance"):
            value = getattr(layer, field)
            if isinstance(value, list) and len(value) not in (1, shape[-1]):
                raise DefinitionError(
                    f"{where}.{field}: {len(value)} values for {shape[-1]} "
                    "channels (allowed: one number, or one value per channel)"
                )
    if isinstance(layer, L.Dropout) and layer.noise_shape is not None:
        full = (None, *shape)
        if len(layer.noise_shape) != len(full) or any(
            n not in (None, 1, m) for n, m in zip(layer.noise_shape, full, strict=False)
        ):
            raise DefinitionError(
                f"{where}.noise_shape: {layer.noise_shape} does not fit inputs of "
                f"shape {list(full)} (allowed: one entry per axis, batch first, "
                "each null, 1 or the input's size)"
            )
    if isinstance(layer, L.Softmax) and not -len(shape) <= layer.axis <= len(shape):
        raise DefinitionError(f"{where}.axis: out of range for rank {len(shape)}")
    return shape


def _last_axis(where: str, layer: Any, shape: Shape) -> None:
    """Normalization layers work on the last axis only: ``-1``, or
    ``len(shape)`` (the input's rank - 1, counting the batch axis)."""
    axis = L.last_axis(layer.axis)
    if axis not in (-1, len(shape)):
        raise DefinitionError(
            f"{where}.axis: {layer.axis!r} is not the last axis of inputs of "
            f"shape {[None, *shape]} (allowed: -1 or {len(shape)}; only the "
            "last axis is supported)"
        )


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
    if isinstance(layer, L._Dense):
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
    if isinstance(layer, L._Depthwise):
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
    out = _output_shape(where, layer, shapes)
    weights, terms = _weights_and_macs(where, layer, shapes[0], out)
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
    if isinstance(layer, L.BatchNormalization):
        inference_params = 2 * shapes[0][-1]
        memory_bits = inference_params * 32
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
            folded=isinstance(by_name[row.name], L.BatchNormalization),
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
