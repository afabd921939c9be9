"""The planner's front end for an export: layers read from their class name,
config and decoded weights (no Keras).

Each supported class's config is checked here (types, ranges,
``channels_last``, the inputs' rank); its output shape and the shapes its
weights must have come from the table of layer rules
(:mod:`bnncore_runtime.layer_rules`), applied to the checked arguments.
:class:`ExportFrontend` then answers the planner's questions
(:class:`bnncore_runtime.planner.Frontend`) with the same native
implementations and the same binary-layer construction the Keras front end
uses, so the plan is the one ``bnncore.engine.compile`` makes for the model.
A layer the core cannot run raises :class:`UnsupportedLayerError` naming it:
the runtime never falls back.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from bnncore_runtime import kernels as K
from bnncore_runtime import natives
from bnncore_runtime.codec import SignBits
from bnncore_runtime.container import _short
from bnncore_runtime.definition import DefinitionError, LayerSpec
from bnncore_runtime.graph import Graph, Node, TensorRef, ValueId
from bnncore_runtime.layer_rules import LayerRule, RuleError, rule_for
from bnncore_runtime.layer_rules.base import same_shape
from bnncore_runtime.natives import Native, NativeConv
from bnncore_runtime.planner import BinaryLayer, binary_layer
from bnncore_runtime.steps import BinaryKernel, FloatStep

__all__ = [
    "SUPPORTED_LAYERS",
    "ExportFrontend",
    "Spec",
    "UnsupportedLayerError",
    "batchnorm_axis",
    "infer_shapes",
    "weight_shapes",
]

Shape = tuple[int | None, ...]


class UnsupportedLayerError(ValueError):
    """A layer the compiled core cannot run (the runtime has no fallback)."""


class Spec:
    """A value's shape (batch axis ``None``) and dtype, as the planner reads them."""

    __slots__ = ("dtype", "shape")

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.dtype = "float32"


_CONV = ("Conv2D", "QuantConv2D")
_CONV1D = ("QuantConv1D",)  # binary only: the core has no float 1D convolution
_DEPTHWISE = ("DepthwiseConv2D",)
_DENSE = ("Dense", "QuantDense")
_IDENTITIES = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
)
_POOLS = ("MaxPooling2D", "MaxPool2D")
_SAME_SHAPE = ("BatchNormalization", "Activation", "ReLU", "Softmax", *_IDENTITIES)
SUPPORTED_LAYERS = (
    *_CONV,
    *_CONV1D,
    *_DEPTHWISE,
    *_DENSE,
    *_SAME_SHAPE,
    *_POOLS,
    "GlobalAveragePooling2D",
    "Flatten",
    "Add",
    "Concatenate",
)
"""Layer classes the runtime reads (each still has to be one the core runs)."""

_SIGNS = {"ste_sign", "approx_sign", "swish_sign", "sign"}
_SIGN_CLASSES = {"SteSign", "ApproxSign", "SwishSign"}


def _where(layer: LayerSpec, key: str = "") -> str:
    return f"layer {layer.name!r} ({layer.class_name})" + (f".{key}" if key else "")


def _bad(layer: LayerSpec, key: str, value: Any, allowed: str) -> DefinitionError:
    return DefinitionError(
        f"{_where(layer, key)}: received {_short(value)}, allowed: {allowed}"
    )


def _get(layer: LayerSpec, key: str, default: Any = None) -> Any:
    return layer.config.get(key, default)


def _int(layer: LayerSpec, key: str, default: Any = None, low: int = 1) -> int:
    value = _get(layer, key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= 2**31
    ):
        raise _bad(layer, key, value, f"an integer from {low} to 2**31")
    return value


def _pair(layer: LayerSpec, key: str, default: Any = None) -> tuple[int, int]:
    value = _get(layer, key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**16
            for v in value
        )
    ):
        raise _bad(layer, key, value, "two integers from 1 to 65536")
    return int(value[0]), int(value[1])


def _single(layer: LayerSpec, key: str, default: Any = None) -> int:
    value = _get(layer, key, default)
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**16:
        raise _bad(layer, key, _get(layer, key, default), "one integer from 1 to 65536")
    return value


def _bool(layer: LayerSpec, key: str, default: bool) -> bool:
    value = _get(layer, key, default)
    if not isinstance(value, bool):
        raise _bad(layer, key, value, "true or false")
    return value


def _choice(layer: LayerSpec, key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _get(layer, key, default)
    if value is None:
        value = default
    if value not in allowed:
        raise _bad(layer, key, value, ", ".join(repr(a) for a in allowed))
    return str(value)


def _channels_last(layer: LayerSpec) -> None:
    _choice(layer, "data_format", "channels_last", ("channels_last",))


_PACKAGE = "bnncore>"
"""The prefix of bnncore's registered names: Keras 3 writes a registered
function as ``"bnncore>ste_sign"``. Another package's prefix stays (its
``relu`` is not Keras's)."""


def _unprefixed(name: str) -> str:
    return name[len(_PACKAGE) :] if name.startswith(_PACKAGE) else name


def _function_name(value: Any) -> str | None:
    """The name of a serialized function or quantizer (None for null), without
    bnncore's registration prefix."""
    if value is None:
        return None
    if isinstance(value, str):
        return _unprefixed(value)
    if isinstance(value, dict):
        if value.get("class_name") == "function":
            config = value.get("config")
            return _unprefixed(config) if isinstance(config, str) else "?"
        name = value.get("class_name")
        return name if isinstance(name, str) else "?"
    return "?"


def _activation_ops(name: str | None) -> list[tuple[Any, ...]] | None:
    """Epilogue ops of an activation by name (as the engine's
    ``recognize.activation_ops``), None if it does not fold."""
    if name in (None, "linear"):
        return []
    if name == "relu":
        return [(K.OP_RELU,)]
    if name == "relu6":
        return [(K.OP_CLIP, 0.0, 6.0)]
    if name == "hard_tanh":
        return [(K.OP_CLIP, -1.0, 1.0)]
    if name in _SIGNS or name in _SIGN_CLASSES:
        return [(K.OP_SIGN,)]
    return None


def _is_sign(value: Any) -> bool:
    name = _function_name(value)
    return name in _SIGNS or name in _SIGN_CLASSES


def batchnorm_axis(layer: LayerSpec, rank: int) -> int:
    """The one axis a BatchNormalization normalizes (``axis``, non-negative)."""
    axis = _get(layer, "axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    if len(axes) != 1 or not all(
        isinstance(a, int) and not isinstance(a, bool) and -rank < a < rank
        for a in axes
    ):
        raise _bad(layer, "axis", axis, f"one axis of the rank-{rank} input")
    return axes[0] % rank


def _last_axis(layer: LayerSpec, rank: int) -> bool:
    return batchnorm_axis(layer, rank) == rank - 1


_TABLE_NAMES = {
    "MaxPool2D": "MaxPooling2D",
    "SpatialDropout1D": "Dropout",
    "SpatialDropout2D": "Dropout",
    "SpatialDropout3D": "Dropout",
}
"""Runtime classes the table knows under another name (Keras's alias, the
Dropout subclasses)."""


def _rule(layer: LayerSpec) -> LayerRule:
    return rule_for(_TABLE_NAMES.get(layer.class_name, layer.class_name))


def _conv_args(layer: LayerSpec) -> SimpleNamespace:
    """A convolution's arguments, checked: the table's rules read them."""
    _channels_last(layer)
    if layer.class_name in _CONV1D:
        return SimpleNamespace(
            kernel_size=(_single(layer, "kernel_size"),),
            strides=(_single(layer, "strides", [1]),),
            dilation_rate=(_single(layer, "dilation_rate", [1]),),
            padding=_choice(layer, "padding", "valid", ("valid", "same", "causal")),
            filters=_int(layer, "filters"),
            groups=1,
            use_bias=False,
        )
    args = SimpleNamespace(
        kernel_size=_pair(layer, "kernel_size"),
        strides=_pair(layer, "strides", [1, 1]),
        dilation_rate=_pair(layer, "dilation_rate", [1, 1]),
        padding=_choice(layer, "padding", "valid", ("valid", "same")),
        use_bias=False,
    )
    if layer.class_name in _DEPTHWISE:
        args.depth_multiplier = _int(layer, "depth_multiplier", 1)
    else:
        args.filters, args.groups = _int(layer, "filters"), 1
    return args


def _args(layer: LayerSpec) -> SimpleNamespace:
    """The arguments the table's output rule reads, checked by the runtime
    (its refusals, its messages)."""
    cls = layer.class_name
    if cls in (*_CONV, *_CONV1D, *_DEPTHWISE):
        return _conv_args(layer)
    if cls in _DENSE:
        return SimpleNamespace(units=_int(layer, "units"))
    if cls in _POOLS:
        _channels_last(layer)
        pool = _pair(layer, "pool_size", [2, 2])
        strides = _pair(layer, "strides", list(pool))
        padding = _choice(layer, "padding", "valid", ("valid", "same"))
        return SimpleNamespace(pool_size=pool, strides=strides, padding=padding)
    if cls == "GlobalAveragePooling2D":
        _channels_last(layer)
        return SimpleNamespace(keepdims=_bool(layer, "keepdims", False))
    if cls == "Flatten":
        _channels_last(layer)
    # Concatenate's axis is checked by the caller; identities read nothing
    # (a dropout's noise_shape does not apply at inference).
    return SimpleNamespace(axis=_get(layer, "axis", -1), noise_shape=None)


def _table_out(layer: LayerSpec, shapes: list[Shape]) -> Shape:
    """The table's output shape (batch axis kept) for checked arguments; the
    inputs' rank and sizes were checked by the runtime, so a refusal left is
    a window the input is smaller than."""
    rule = _rule(layer)
    assert rule.output_shape is not None
    inner = [tuple(int(d or 0) for d in s[1:]) for s in shapes]
    args = _args(layer)
    try:
        out = rule.output_shape(args, inner)
    except RuleError as error:
        shape = shapes[0]
        if layer.class_name not in (*_CONV, *_CONV1D, *_DEPTHWISE, *_POOLS):
            raise DefinitionError(f"{_where(layer)}: {error}") from None
        if layer.class_name in _CONV1D:
            raise DefinitionError(
                f"{_where(layer)}: input of {shape[1]} steps is shorter than the "
                f"window {_single(layer, 'kernel_size')} with "
                f"padding={args.padding!r}"
            ) from None
        if layer.class_name in _POOLS:
            raise DefinitionError(
                f"{_where(layer)}: input smaller than the pool"
            ) from None
        raise DefinitionError(
            f"{_where(layer)}: input {list(shape[1:3])} is smaller than the "
            f"window {list(_pair(layer, 'kernel_size'))} with "
            f"padding={args.padding!r}"
        ) from None
    return (shapes[0][0], *out)


def _rank(layer: LayerSpec, shape: Shape, rank: int, axes: str) -> None:
    if len(shape) != rank:
        raise DefinitionError(
            f"{_where(layer)}: expected an input of rank {rank}{axes}, "
            f"received shape {list(shape)}"
        )


def _output_shape(layer: LayerSpec, shapes: list[Shape]) -> Shape:
    """The layer's output shape for its input shapes (checks its config): the
    runtime's refusals, then the table's rule."""
    cls = layer.class_name
    if cls not in SUPPORTED_LAYERS:
        raise UnsupportedLayerError(
            f"{_where(layer)}: the runtime does not run this layer class; "
            f"supported: {', '.join(SUPPORTED_LAYERS)} (run the model with "
            "bnncore.engine, which falls back to Keras)"
        )
    if cls in ("Add", "Concatenate"):
        if len(shapes) < 2:
            raise DefinitionError(f"{_where(layer)}: expected at least 2 inputs")
        if cls == "Add":
            if any(s != shapes[0] for s in shapes):
                raise DefinitionError(
                    f"{_where(layer)}: inputs of different shapes "
                    f"{[list(s) for s in shapes]}"
                )
            return _table_out(layer, shapes)
        rank = len(shapes[0])
        axis = _get(layer, "axis", -1)
        if (
            not isinstance(axis, int)
            or isinstance(axis, bool)
            or not -rank < axis < rank
        ):
            raise _bad(layer, "axis", axis, f"an axis of rank {rank}")
        axis = axis % rank
        if axis == 0 or any(
            len(s) != rank
            or s[:axis] + s[axis + 1 :] != shapes[0][:axis] + shapes[0][axis + 1 :]
            for s in shapes
        ):
            raise DefinitionError(
                f"{_where(layer)}: inputs {[list(s) for s in shapes]} cannot be "
                f"concatenated on axis {axis}"
            )
        return _table_out(layer, shapes)
    if len(shapes) != 1:
        raise DefinitionError(
            f"{_where(layer)}: expected 1 input, received {len(shapes)}"
        )
    (shape,) = shapes
    if any(d is None for d in shape[1:]):
        raise DefinitionError(
            f"{_where(layer)}: input shape {list(shape)} is not fully known"
        )
    if cls in ("BatchNormalization", "Softmax"):
        # The table refuses other axes for the service; the runtime reads
        # them and refuses them when planning (naming the core's limit).
        return (shape[0], *same_shape(layer, [tuple(int(d or 0) for d in shape[1:])]))
    if cls in (*_CONV, *_DEPTHWISE):
        # The channel count first, as the runtime always has.
        _int(layer, "filters") if cls in _CONV else _int(layer, "depth_multiplier", 1)
        _rank(layer, shape, 4, " (batch, height, width, channels)")
    elif cls in _CONV1D:
        _rank(layer, shape, 3, " (batch, steps, channels)")
    elif cls in (*_POOLS, "GlobalAveragePooling2D"):
        _rank(layer, shape, 4, "")
    return _table_out(layer, shapes)


def weight_shapes(layer: LayerSpec, shape: Shape) -> dict[str, tuple[int, ...]]:
    """The variables a layer must have in the file (its kernel and bias), and
    their shapes, for an input of ``shape``: the table's rule."""
    cls = layer.class_name
    if cls not in (*_CONV, *_CONV1D, *_DEPTHWISE, *_DENSE):
        return {}
    channels = int(shape[-1] or 0)
    args = (
        SimpleNamespace(units=_int(layer, "units"))
        if cls in _DENSE
        else _conv_args(layer)
    )
    if cls in (*_CONV, *_CONV1D):
        groups = _int(layer, "groups", 1)
        if channels % groups or args.filters % groups:
            raise _bad(
                layer, "groups", groups, f"a divisor of {channels} and {args.filters}"
            )
        args.groups = groups
    args.use_bias = _bool(layer, "use_bias", True)
    rule = _rule(layer)
    assert rule.weights is not None
    inner = tuple(int(d or 0) for d in shape[1:])
    # The kernel and bias rules of these types do not read the output shape.
    weights = rule.weights(args, [inner], ())
    return {w.name: w.shape for w in weights}


def infer_shapes(graph: Graph) -> dict[ValueId, Spec]:
    """Every value's shape, computed from the layers' configs (the shapes a
    definition states are not trusted)."""
    specs: dict[ValueId, Spec] = {
        value: Spec(shape)
        for value, shape in zip(graph.inputs, graph.input_shapes, strict=True)
    }
    for node in graph.nodes:
        shapes = []
        for value in node.inputs:
            if value not in specs:
                raise DefinitionError(
                    f"{_where(node.op)}: reads {value[0]!r}, whose output is unknown"
                )
            shapes.append(specs[value].shape)
        if not shapes:
            raise DefinitionError(f"{_where(node.op)}: a call without tensor inputs")
        out = _output_shape(node.op, shapes)
        if len(node.outputs) != 1:
            raise DefinitionError(f"{_where(node.op)}: more than one output is read")
        specs[node.outputs[0]] = Spec(out)
    return specs


def _forward_kernel(layer: LayerSpec) -> np.ndarray | None:
    """The kernel as the forward pass uses it, when the file says."""
    kernel = layer.weights.get("kernel")
    if kernel is None:
        return None
    quantized = _get(layer, "kernel_quantizer") is not None
    if quantized and layer.encodings.get("kernel") == "float32":
        return None  # a latent kernel whose quantizer would need Python code
    return kernel.values() if isinstance(kernel, SignBits) else kernel


def _packed_kernel(
    layer: LayerSpec, kind: str, pixels: int, groups: int
) -> BinaryKernel | None:
    """A ``sign_bits`` kernel packed for the core, straight from its bits."""
    kernel = layer.weights["kernel"]
    if not isinstance(kernel, SignBits):
        return natives.binary_kernel(kernel, kind, pixels, groups)
    return natives.binary_kernel_from_signs(
        kernel.negative(), kernel.scale, kind, pixels, groups
    )


class ExportFrontend:
    """Answers the planner's questions for :class:`LayerSpec` operations."""

    def is_layer(self, op: Any) -> bool:
        return isinstance(op, LayerSpec)

    def is_add(self, node: Node) -> bool:
        return node.op.class_name == "Add"

    def is_flatten(self, op: Any) -> bool:
        return op.class_name == "Flatten"

    def max_pool_window(
        self, op: Any
    ) -> tuple[tuple[int, int], tuple[int, int], str] | None:
        if op.class_name not in _POOLS:
            return None
        pool = _pair(op, "pool_size", [2, 2])
        strides = _pair(op, "strides", list(pool))
        return pool, strides, _choice(op, "padding", "valid", ("valid", "same"))

    def binary(self, op: Any, rank: int) -> BinaryLayer | None:
        layer: LayerSpec = op
        cls = layer.class_name
        if cls not in ("QuantConv2D", "QuantConv1D", "QuantDense"):
            return None
        if not _is_sign(_get(layer, "input_quantizer")):
            return None
        if layer.encodings.get("kernel") != "sign_bits":
            return None  # not a 1-bit ±s kernel
        act = _activation_ops(_function_name(_get(layer, "activation")))
        bias = layer.weights.get("bias")
        if cls == "QuantDense":
            kernel = _packed_kernel(layer, "dense", 1, 1)
            return binary_layer("dense", kernel, bias=bias, act=act)
        pad = _get(layer, "pad_values", 0.0)
        if isinstance(pad, bool) or not isinstance(pad, int | float):
            raise _bad(layer, "pad_values", pad, "a number")
        conv_rank = 2 if cls == "QuantConv2D" else 1
        if rank != conv_rank + 2 or float(pad) not in (0.0, 1.0):
            return None
        groups = _int(layer, "groups", 1)
        kernel = _packed_kernel(layer, "conv", 1, groups)
        size: tuple[int, ...]
        strides: tuple[int, ...]
        dilation: tuple[int, ...]
        if conv_rank == 2:
            size = _pair(layer, "kernel_size")
            strides = _pair(layer, "strides", [1, 1])
            dilation = _pair(layer, "dilation_rate", [1, 1])
            padding = _choice(layer, "padding", "valid", ("valid", "same"))
        else:
            size = (_single(layer, "kernel_size"),)
            strides = (_single(layer, "strides", [1]),)
            dilation = (_single(layer, "dilation_rate", [1]),)
            padding = _choice(layer, "padding", "valid", ("valid", "same", "causal"))
        return binary_layer(
            "conv", kernel, conv_rank=conv_rank, kernel_size=size, strides=strides,
            dilation=dilation, padding=padding, pad_value=float(pad), bias=bias,
            act=act, groups=groups,
        )  # fmt: skip

    def binary_kernel(self, op: Any, pixels: int) -> BinaryKernel | None:
        return _packed_kernel(op, "dense", pixels, 1)

    def elementwise_ops(
        self, op: Any, rank: int | None
    ) -> list[tuple[Any, ...]] | None:
        layer: LayerSpec = op
        cls = layer.class_name
        if cls in _IDENTITIES:
            return []
        if cls == "BatchNormalization":
            if rank is None or layer.batchnorm is None or not _last_axis(layer, rank):
                return None
            return [(K.OP_MULADD, *layer.batchnorm)]
        if cls == "Activation":
            return _activation_ops(_function_name(_get(layer, "activation")))
        if cls == "ReLU":
            slope = _get(layer, "negative_slope", 0.0)
            threshold = _get(layer, "threshold", 0.0)
            if slope == 0 and threshold == 0 and _get(layer, "max_value") is None:
                return [(K.OP_RELU,)]
        return None

    def float_conv(self, op: Any, shape: tuple | None) -> NativeConv | None:
        layer: LayerSpec = op
        cls = layer.class_name
        if cls not in (*_CONV, *_DEPTHWISE) or shape is None or len(shape) != 4:
            return None
        if cls == "QuantConv2D" and _get(layer, "input_quantizer") is not None:
            return None
        if cls in _CONV and _int(layer, "groups", 1) != 1:
            return None
        kernel = _forward_kernel(layer)
        act = _activation_ops(_function_name(_get(layer, "activation")))
        if kernel is None or act is None:
            return None
        ops: list[tuple[Any, ...]] = []
        bias = layer.weights.get("bias")
        if bias is not None:
            ops.append((K.OP_BIAS, np.ascontiguousarray(bias, dtype=np.float32)))
        ops.extend(act)
        pad = _get(layer, "pad_values", 0.0) if cls == "QuantConv2D" else 0.0
        if (
            isinstance(pad, bool)
            or not isinstance(pad, int | float)
            or not math.isfinite(pad)
        ):
            raise _bad(layer, "pad_values", pad, "a finite number")
        return natives.conv(
            kernel, cls in _DEPTHWISE, float(pad), ops, _pair(layer, "kernel_size"),
            _pair(layer, "strides", [1, 1]), _pair(layer, "dilation_rate", [1, 1]),
            _choice(layer, "padding", "valid", ("valid", "same")),
        )  # fmt: skip

    def float_step(
        self, node: Node, specs: dict[ValueId, Any], mode: str, sensitive: bool
    ) -> FloatStep:
        found = self._native(node, specs, sensitive)
        if found is None:
            layer: LayerSpec = node.op
            terminal = layer.class_name in (
                *_DENSE,
                "Softmax",
                "GlobalAveragePooling2D",
            )
            terminal |= _function_name(_get(layer, "activation")) == "softmax"
            why = (
                "its result reaches a binarization, where the core's summation "
                "order could decide a sign differently from Keras"
                if sensitive and terminal
                else _detail(layer)
            )
            raise UnsupportedLayerError(
                f"{_where(layer)} cannot run in the compiled core: {why}; run the "
                "model with bnncore.engine, which falls back to Keras"
            )
        return FloatStep(node, native=found)

    def _native(
        self, node: Node, specs: dict[ValueId, Any], sensitive: bool
    ) -> Native | None:
        layer: LayerSpec = node.op
        cls = layer.class_name
        shapes = [specs[v].shape for v in node.inputs]
        plain = len(node.args) == 1 and isinstance(node.args[0], TensorRef)
        if cls == "Add":
            return natives.add()
        if cls == "Concatenate":
            return natives.concat(_get(layer, "axis", -1))
        if not plain:
            return None
        shape = shapes[0]
        if cls == "Flatten":
            return natives.flatten()
        if cls in _IDENTITIES:
            return natives.alias()
        window_ = self.max_pool_window(layer)
        if window_ is not None:
            return natives.max_pool(*window_)
        if not sensitive:
            found = self._terminal(layer, shape)
            if found is not None:
                return found
        ops = self.elementwise_ops(layer, len(shape))
        if ops is None:
            return None
        return natives.elementwise_native(ops)

    def _terminal(self, layer: LayerSpec, shape: Shape) -> Native | None:
        cls = layer.class_name
        if cls == "GlobalAveragePooling2D":
            return natives.global_avg_pool(
                tuple(int(d or 0) for d in shape), _bool(layer, "keepdims", False)
            )
        softmax = _function_name(_get(layer, "activation")) == "softmax"
        if (cls == "Softmax" and _get(layer, "axis", -1) in (-1, len(shape) - 1)) or (
            cls == "Activation" and softmax
        ):
            return natives.softmax()
        if cls not in _DENSE:
            return None
        if cls == "QuantDense" and _get(layer, "input_quantizer") is not None:
            return None
        kernel = _forward_kernel(layer)
        if kernel is None:
            return None
        ops = (
            None
            if softmax
            else _activation_ops(_function_name(_get(layer, "activation")))
        )
        return natives.dense(kernel, layer.weights.get("bias"), ops, softmax)


def _detail(layer: LayerSpec) -> str:
    cls = layer.class_name
    if cls in _CONV1D and _get(layer, "input_quantizer") is None:
        return "a float 1D convolution (the core runs binary ones only)"
    if cls in (*_CONV, *_CONV1D, *_DENSE) and _get(layer, "input_quantizer"):
        return (
            f"input_quantizer {_short(_function_name(_get(layer, 'input_quantizer')))} "
            "with a kernel that is not stored as 1-bit signs"
        )
    if cls in (*_CONV, *_DEPTHWISE, *_DENSE) and _forward_kernel(layer) is None:
        return "a kernel quantizer whose values the file does not store"
    if cls == "BatchNormalization" and layer.batchnorm is None:
        return "not stored folded (renorm, or not float32)"
    if cls == "BatchNormalization":
        axis = _get(layer, "axis")
        return f"it normalizes axis {_short(axis)}; the core normalizes the last axis"
    if cls in ("Activation", *_CONV, *_DEPTHWISE, *_DENSE):
        return f"activation {_short(_get(layer, 'activation'))}"
    return "an option the core does not implement"
