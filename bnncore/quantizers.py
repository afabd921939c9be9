"""Quantizers: forward rules that map values to a small set, with pseudo-gradients.

A quantizer is used wherever a layer takes one (``input_quantizer``,
``kernel_quantizer``, ``depthwise_quantizer``, ``pointwise_quantizer``), as an
activation (``activation="ste_sign"`` or ``keras.layers.Activation("ste_sign")``)
or on its own (``SteSign(clip_value=1.0)(x)``).

Every quantizer exists in three forms:

* a function, e.g. :func:`ste_sign` (``ste_sign(x, clip_value=1.0)``);
* a Keras-serializable class carrying ``precision``, e.g. :class:`SteSign`;
* a snake_case alias accepted by :func:`get`, e.g. ``"ste_sign"``.

Any callable with a custom gradient is a valid quantizer too. Declare its bit
width with :func:`set_precision`; a quantizer without a declared precision is
treated as 32-bit by the analysis tools and never raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, Union

import keras
from keras import ops

from bnncore import math as bmath

__all__ = [
    "ApproxSign",
    "DoReFa",
    "DoReFaQuantizer",
    "MagnitudeAwareSign",
    "NoOp",
    "NoOpQuantizer",
    "Quantizer",
    "QuantizerLike",
    "SteHeaviside",
    "SteSign",
    "SteTern",
    "SwishSign",
    "approx_sign",
    "deserialize",
    "dorefa_quantizer",
    "get",
    "get_kernel_quantizer",
    "get_precision",
    "magnitude_aware_sign",
    "names",
    "precision_of",
    "registry",
    "serialize",
    "set_precision",
    "ste_heaviside",
    "ste_sign",
    "ste_tern",
    "swish_sign",
]

QuantizerLike = Union["Quantizer", str, dict, Callable[..., Any], None]

F = TypeVar("F", bound=Callable[..., Any])

_PACKAGE = "bnncore"


def set_precision(bits: int) -> Callable[[F], F]:
    """Decorator declaring the bit width of a custom quantizer function.

    Args:
        bits: Number of bits of the quantizer's output (1 for binary).

    Returns:
        A decorator that sets ``fn.precision = bits`` and returns ``fn``.

    Example:
        >>> @set_precision(1)
        ... def my_sign(x):
        ...     return bnncore.math.sign(x)
    """
    _check_positive_int("bits", bits)

    def decorator(fn: F) -> F:
        fn.precision = bits  # type: ignore[attr-defined]
        return fn

    return decorator


def get_precision(quantizer: Any) -> int | None:
    """The declared bit width of a quantizer, or ``None`` when undeclared."""
    if quantizer is None:
        return None
    precision = getattr(quantizer, "precision", None)
    if isinstance(precision, bool) or not isinstance(precision, int):
        return None
    return precision


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _check_positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected a positive integer. Received: {field}={value!r}")


def _check_positive_number(field: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        allowed = "a positive number or None" if allow_none else "a positive number"
        raise ValueError(f"Expected {allowed}. Received: {field}={value!r}")


# --------------------------------------------------------------------------
# Pseudo-gradient plumbing
# --------------------------------------------------------------------------


def _with_pseudo_gradient(
    x: Any,
    forward: Callable[[Any], Any],
    gradient: Callable[[Any, Any], Any],
) -> Any:
    """Applies ``forward`` to ``x`` with ``gradient(x, dy)`` as its backward pass."""

    @ops.custom_gradient
    def _quantize(inputs):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return gradient(inputs, upstream)

        return forward(inputs), grad

    return _quantize(as_tensor(x))


def as_tensor(x: Any) -> Any:
    """``x`` as a tensor; a variable is read into a tensor rather than passed on.

    With TensorFlow, ``keras.ops.convert_to_tensor`` returns a variable as is, and
    a custom-gradient function that receives a variable must then also return
    gradients for it; reading it first keeps quantizers plain functions.
    """
    if isinstance(x, keras.Variable):
        return ops.copy(x)
    return ops.convert_to_tensor(x)


def _clipped(dy: Any, x: Any, clip_value: float | None) -> Any:
    """``dy * 1[|x| <= clip_value]``; ``dy`` unchanged when ``clip_value`` is None."""
    if clip_value is None:
        return dy
    inside = ops.less_equal(ops.abs(x), ops.cast(clip_value, x.dtype))
    return ops.where(inside, dy, ops.zeros_like(dy))


def _register_function(fn: F) -> F:
    return keras.saving.register_keras_serializable(package=_PACKAGE)(fn)


# --------------------------------------------------------------------------
# Function forms
# --------------------------------------------------------------------------


@_register_function
@set_precision(1)
def ste_sign(x: Any, clip_value: float | None = 1.0) -> Any:
    r"""Sign binarization with the straight-through estimator.

    Forward: :math:`q(x) = -1` if :math:`x < 0` else :math:`+1` (so ``q(0) = +1``).
    Pseudo-gradient: :math:`dy \cdot 1[|x| \le \text{clip\_value}]`; no clipping
    when ``clip_value`` is None.

    Reference: Courbariaux et al., *Binarized Neural Networks* (2016),
    arXiv:1602.02830.

    Args:
        x: Input tensor.
        clip_value: Gradient is zero where ``|x| > clip_value``.

    Returns:
        Tensor of ``x``'s dtype with values in ``{-1, +1}``.
    """
    return _with_pseudo_gradient(
        x, bmath.sign, lambda x, dy: _clipped(dy, x, clip_value)
    )


@_register_function
@set_precision(1)
def approx_sign(x: Any) -> Any:
    r"""Sign binarization with the ApproxSign pseudo-gradient of Bi-Real Net.

    Forward: sign (``q(0) = +1``). Pseudo-gradient:
    :math:`dy \cdot (2 - 2|x|) \cdot 1[|x| \le 1]`.

    Reference: Liu et al., *Bi-Real Net* (2018), arXiv:1808.00278.
    """

    def gradient(x, dy):
        weight = ops.cast(2.0, x.dtype) - ops.cast(2.0, x.dtype) * ops.abs(x)
        return _clipped(dy * weight, x, 1.0)

    return _with_pseudo_gradient(x, bmath.sign, gradient)


@_register_function
@set_precision(1)
def swish_sign(x: Any, beta: float = 5.0) -> Any:
    r"""Sign binarization with the SignSwish pseudo-gradient of BNN+.

    Forward: sign (``q(0) = +1``). Pseudo-gradient:
    :math:`dy \cdot \beta (2 - \beta x \tanh(\beta x / 2)) / (1 + \cosh(\beta x))`.

    Reference: Darabi et al., *BNN+: Improved Binary Network Training* (2018),
    arXiv:1812.11800.
    """

    def gradient(x, dy):
        b = ops.cast(beta, x.dtype)
        bx = b * x
        return dy * b * (2.0 - bx * ops.tanh(bx * 0.5)) / (1.0 + ops.cosh(bx))

    return _with_pseudo_gradient(x, bmath.sign, gradient)


@_register_function
@set_precision(1)
def ste_heaviside(x: Any, clip_value: float | None = 1.0) -> Any:
    r"""Binarization to ``{0, 1}`` with the straight-through estimator.

    Forward: :math:`q(x) = 1` if :math:`x > 0` else :math:`0` (so ``q(0) = 0``).
    Pseudo-gradient: :math:`dy \cdot 1[|x| \le \text{clip\_value}]`.
    """
    return _with_pseudo_gradient(
        x, bmath.heaviside, lambda x, dy: _clipped(dy, x, clip_value)
    )


@_register_function
@set_precision(1)
def magnitude_aware_sign(x: Any, clip_value: float | None = 1.0) -> Any:
    r"""Scaled sign of Bi-Real Net: :math:`s \cdot \text{sign}(x)`.

    :math:`s` is the mean of :math:`|x|` over every axis but the last (one
    scale per output channel of a kernel; on a rank-1 tensor no axis is
    reduced, so :math:`s = |x|`). No gradient flows through :math:`s`; the
    sign has the straight-through pseudo-gradient
    :math:`dy \cdot 1[|x| \le \text{clip\_value}]`, multiplied by :math:`s`.

    Reference: Liu et al., *Bi-Real Net* (2018), arXiv:1808.00278.
    """
    x = ops.convert_to_tensor(x)
    axes = tuple(range(len(x.shape) - 1))
    if axes:
        # The mean is taken in float64 and rounded once, so a tensor of equal
        # magnitudes s (a kernel reloaded as sign · s) gives back exactly s.
        wide = ops.mean(ops.cast(ops.abs(x), "float64"), axis=axes)
        scale = ops.cast(wide, x.dtype)
    else:
        scale = ops.abs(x)
    return ops.stop_gradient(scale) * ste_sign(x, clip_value=clip_value)


@_register_function
@set_precision(2)
def ste_tern(
    x: Any,
    threshold_value: float = 0.05,
    ternary_weight_networks: bool = False,
    clip_value: float | None = 1.0,
) -> Any:
    r"""Ternarization to ``{-1, 0, +1}`` with the straight-through estimator.

    Forward: :math:`+1` if :math:`x \ge \Delta`, :math:`-1` if
    :math:`x \le -\Delta`, else :math:`0` (so ``q(0) = 0``). :math:`\Delta` is
    ``threshold_value``, or :math:`0.7 \cdot \text{mean}|x|` over the whole
    tensor when ``ternary_weight_networks`` is true (no gradient through it).
    Pseudo-gradient: :math:`dy \cdot 1[|x| \le \text{clip\_value}]`.

    Reference: Li et al., *Ternary Weight Networks* (2016), arXiv:1605.04711.
    """
    x = ops.convert_to_tensor(x)
    if ternary_weight_networks:
        threshold = ops.stop_gradient(0.7 * ops.mean(ops.abs(x)))
    else:
        threshold = ops.cast(threshold_value, x.dtype)

    def forward(x):
        one = ops.ones_like(x)
        zero = ops.zeros_like(x)
        return ops.where(
            ops.greater_equal(x, threshold),
            one,
            ops.where(ops.less_equal(x, -threshold), -one, zero),
        )

    # With a threshold of 0 the rule above would send 0 to +1; ste_tern(0) is 0.
    def forward_zero_safe(x):
        return ops.where(ops.equal(x, 0), ops.zeros_like(x), forward(x))

    return _with_pseudo_gradient(
        x, forward_zero_safe, lambda x, dy: _clipped(dy, x, clip_value)
    )


def _round_with_identity_gradient(x: Any, levels: int) -> Any:
    n = float(levels)
    return _with_pseudo_gradient(x, lambda x: ops.round(x * n) / n, lambda x, dy: dy)


@_register_function
def dorefa_quantizer(x: Any, k_bit: int = 2, mode: str = "activations") -> Any:
    r"""k-bit quantizer of DoReFa-Net.

    With :math:`n = 2^k - 1`:

    * ``mode="activations"``: clip to :math:`[0, 1]`, then
      :math:`\text{round}(x n) / n` (round half to even). Pseudo-gradient:
      :math:`dy \cdot 1[0 \le x \le 1]`.
    * ``mode="weights"``: :math:`t = \tanh(x)`, rescale to :math:`[0, 1]` by
      :math:`t / (2 \max|t|) + 1/2` (no gradient through the max), quantize as
      above, then map to :math:`[-1, 1]` by :math:`2q - 1`. The gradient is
      the identity through the rounding and the exact gradient elsewhere.

    Reference: Zhou et al., *DoReFa-Net* (2016), arXiv:1606.06160.
    """
    _check_positive_int("k_bit", k_bit)
    if mode not in ("activations", "weights"):
        raise ValueError(
            f"Expected mode to be 'activations' or 'weights'. Received: mode={mode!r}"
        )
    levels = 2**k_bit - 1
    x = ops.convert_to_tensor(x)
    if mode == "activations":

        def gradient(x, dy):
            inside = ops.logical_and(ops.greater_equal(x, 0), ops.less_equal(x, 1))
            return ops.where(inside, dy, ops.zeros_like(dy))

        clipped = _with_pseudo_gradient(x, lambda x: ops.clip(x, 0.0, 1.0), gradient)
        return _round_with_identity_gradient(clipped, levels)

    limited = ops.tanh(x)
    divisor = ops.stop_gradient(ops.max(ops.abs(limited)))
    tiny = ops.cast(keras.config.epsilon(), limited.dtype)
    normed = limited / (2.0 * ops.maximum(divisor, tiny)) + 0.5
    return 2.0 * _round_with_identity_gradient(normed, levels) - 1.0


# --------------------------------------------------------------------------
# Class forms
# --------------------------------------------------------------------------

_QUANTIZERS: dict[str, type[Quantizer]] = {}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ste_sign": ste_sign,
    "approx_sign": approx_sign,
    "swish_sign": swish_sign,
    "ste_heaviside": ste_heaviside,
    "magnitude_aware_sign": magnitude_aware_sign,
    "ste_tern": ste_tern,
    "dorefa_quantizer": dorefa_quantizer,
}


def _register(*aliases: str) -> Callable[[type[Quantizer]], type[Quantizer]]:
    def decorator(cls: type[Quantizer]) -> type[Quantizer]:
        cls = keras.saving.register_keras_serializable(package=_PACKAGE)(cls)
        for name in (cls.__name__, *aliases):
            _QUANTIZERS[name] = cls
        return cls

    return decorator


class Quantizer(keras.layers.Layer):
    """Base class of the quantizers: a stateless Keras layer with a ``precision``.

    Subclasses implement :meth:`call`. A quantizer keeps the dtype of its input
    (it never autocasts) and works as a layer, as an activation and as a layer's
    ``*_quantizer`` argument.

    Args:
        metrics: Names of metrics to track on the quantized values when the
            quantizer is applied to a kernel (``["flip_ratio"]``).
        **kwargs: Base ``keras.layers.Layer`` arguments (``name``, ``dtype``).
    """

    precision: int | None = None
    precision_argument: str | None = None
    """The constructor argument that sets ``precision`` (``"k_bit"`` of
    :class:`DoReFa`), or ``None`` when the class fixes it."""

    def __init__(self, metrics: list[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if metrics is not None and (
            not isinstance(metrics, list | tuple)
            or not all(isinstance(m, str) for m in metrics)
        ):
            raise ValueError(
                f"Expected metrics to be a list of metric names. Received: "
                f"metrics={metrics!r}"
            )
        self.quantizer_metrics = list(metrics or [])
        self.supports_masking = True
        self.built = True

    @property
    def _custom_metrics(self) -> list[str]:
        """Larq's (private) name of :attr:`quantizer_metrics`, read-only: Larq
        code and tests read ``quantizer._custom_metrics``."""
        return list(self.quantizer_metrics)

    def call(self, inputs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        # Only the quantizer's own arguments: a quantizer is stateless, so the
        # base layer's name, dtype and trainable flag carry no information.
        config: dict[str, Any] = {}
        if self.quantizer_metrics:
            config["metrics"] = list(self.quantizer_metrics)
        return config


class _ClippedQuantizer(Quantizer):
    """A 1-bit quantizer whose only argument is the gradient's ``clip_value``."""

    precision = 1
    _function: Callable[..., Any]

    def __init__(self, clip_value: float | None = 1.0, **kwargs: Any) -> None:
        _check_positive_number("clip_value", clip_value, allow_none=True)
        super().__init__(**kwargs)
        self.clip_value = clip_value

    def call(self, inputs: Any) -> Any:
        return self._function(inputs, clip_value=self.clip_value)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "clip_value": self.clip_value}


@_register("ste_sign")
class SteSign(_ClippedQuantizer):
    r"""Sign binarization with the straight-through estimator; see :func:`ste_sign`.

    Forward: ``-1`` if ``x < 0`` else ``+1``. Pseudo-gradient:
    :math:`dy \cdot 1[|x| \le \text{clip\_value}]` (no clipping when None).
    Reference: arXiv:1602.02830.

    Args:
        clip_value: Gradient threshold, a positive number or None.
    """

    _function = staticmethod(ste_sign)


@_register("approx_sign")
class ApproxSign(Quantizer):
    r"""Sign with the ApproxSign pseudo-gradient; see :func:`approx_sign`.

    Forward: sign. Pseudo-gradient: :math:`dy (2 - 2|x|) 1[|x| \le 1]`.
    Reference: arXiv:1808.00278.
    """

    precision = 1

    def call(self, inputs: Any) -> Any:
        return approx_sign(inputs)


@_register("swish_sign")
class SwishSign(Quantizer):
    r"""Sign with the SignSwish pseudo-gradient; see :func:`swish_sign`.

    Forward: sign. Pseudo-gradient:
    :math:`dy \beta (2 - \beta x \tanh(\beta x/2)) / (1 + \cosh(\beta x))`.
    Reference: arXiv:1812.11800.

    Args:
        beta: Sharpness of the pseudo-gradient, a positive number.
    """

    precision = 1

    def __init__(self, beta: float = 5.0, **kwargs: Any) -> None:
        _check_positive_number("beta", beta)
        super().__init__(**kwargs)
        self.beta = beta

    def call(self, inputs: Any) -> Any:
        return swish_sign(inputs, beta=self.beta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta": self.beta}


@_register("ste_heaviside")
class SteHeaviside(_ClippedQuantizer):
    r"""Binarization to ``{0, 1}``; see :func:`ste_heaviside`.

    Forward: ``1`` if ``x > 0`` else ``0``. Pseudo-gradient:
    :math:`dy \cdot 1[|x| \le \text{clip\_value}]`.

    Args:
        clip_value: Gradient threshold, a positive number or None.
    """

    _function = staticmethod(ste_heaviside)


@_register("magnitude_aware_sign")
class MagnitudeAwareSign(_ClippedQuantizer):
    r"""Scaled sign of Bi-Real Net; see :func:`magnitude_aware_sign`.

    Forward: :math:`s \cdot \text{sign}(x)`, :math:`s` the mean of :math:`|x|`
    over all axes but the last (no gradient through :math:`s`).
    Pseudo-gradient: :math:`dy \cdot 1[|x| \le \text{clip\_value}]`.
    Reference: arXiv:1808.00278.

    Args:
        clip_value: Gradient threshold, a positive number or None.
    """

    _function = staticmethod(magnitude_aware_sign)


@_register("ste_tern")
class SteTern(Quantizer):
    r"""Ternarization to ``{-1, 0, +1}``; see :func:`ste_tern`.

    Forward: ``±1`` where ``|x| >= Δ``, else ``0``; Δ is ``threshold_value`` or
    ``0.7·mean|x|`` with ``ternary_weight_networks``. Pseudo-gradient:
    :math:`dy \cdot 1[|x| \le \text{clip\_value}]`. Reference: arXiv:1605.04711.

    Args:
        threshold_value: Threshold Δ, a non-negative number.
        ternary_weight_networks: Compute Δ from the tensor as in the paper.
        clip_value: Gradient threshold, a positive number or None.
    """

    precision = 2

    def __init__(
        self,
        threshold_value: float = 0.05,
        ternary_weight_networks: bool = False,
        clip_value: float | None = 1.0,
        **kwargs: Any,
    ) -> None:
        if (
            isinstance(threshold_value, bool)
            or not isinstance(threshold_value, int | float)
            or threshold_value < 0
        ):
            raise ValueError(
                "Expected a non-negative number. Received: "
                f"threshold_value={threshold_value!r}"
            )
        if not isinstance(ternary_weight_networks, bool):
            raise ValueError(
                "Expected a boolean. Received: "
                f"ternary_weight_networks={ternary_weight_networks!r}"
            )
        _check_positive_number("clip_value", clip_value, allow_none=True)
        super().__init__(**kwargs)
        self.threshold_value = threshold_value
        self.ternary_weight_networks = ternary_weight_networks
        self.clip_value = clip_value

    def call(self, inputs: Any) -> Any:
        return ste_tern(
            inputs,
            threshold_value=self.threshold_value,
            ternary_weight_networks=self.ternary_weight_networks,
            clip_value=self.clip_value,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "threshold_value": self.threshold_value,
            "ternary_weight_networks": self.ternary_weight_networks,
            "clip_value": self.clip_value,
        }


@_register("dorefa_quantizer", "dorefa", "DoReFaQuantizer")
class DoReFa(Quantizer):
    r"""k-bit quantizer of DoReFa-Net; see :func:`dorefa_quantizer`.

    ``mode="activations"``: clip to [0, 1], ``round(x·n)/n`` with
    ``n = 2**k_bit - 1``; gradient ``dy·1[0 <= x <= 1]``. ``mode="weights"``:
    tanh, rescale to [0, 1] by ``2·max|tanh|``, quantize, map to [-1, 1];
    identity gradient through the rounding. Reference: arXiv:1606.06160.

    Args:
        k_bit: Bit width, a positive integer (this is the ``precision``).
        mode: ``"activations"`` or ``"weights"``.
    """

    precision_argument = "k_bit"

    def __init__(
        self, k_bit: int = 2, mode: str = "activations", **kwargs: Any
    ) -> None:
        _check_positive_int("k_bit", k_bit)
        if mode not in ("activations", "weights"):
            raise ValueError(
                "Expected mode to be 'activations' or 'weights'. "
                f"Received: mode={mode!r}"
            )
        super().__init__(**kwargs)
        self.k_bit = k_bit
        self.mode = mode
        self.precision = k_bit

    def call(self, inputs: Any) -> Any:
        return dorefa_quantizer(inputs, k_bit=self.k_bit, mode=self.mode)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "k_bit": self.k_bit, "mode": self.mode}


DoReFaQuantizer = DoReFa
"""Larq's earlier name for :class:`DoReFa`."""


@_register("noop", "NoOpQuantizer")
class NoOp(Quantizer):
    """Identity with a declared precision (forward and gradient are the identity).

    Useful to mark values that are already quantized, e.g. inputs that are
    known to be ±1, so that the analysis counts them at ``precision`` bits.

    Args:
        precision: Bit width to report, a positive integer (required).
    """

    precision_argument = "precision"

    def __init__(self, precision: int, **kwargs: Any) -> None:
        _check_positive_int("precision", precision)
        super().__init__(**kwargs)
        self.precision = precision

    def call(self, inputs: Any) -> Any:
        return ops.convert_to_tensor(inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "precision": self.precision}


NoOpQuantizer = NoOp
"""Larq's earlier name for :class:`NoOp`."""


# --------------------------------------------------------------------------
# Identifier lookup
# --------------------------------------------------------------------------


def names() -> list[str]:
    """All names :func:`get` accepts: class names and snake_case aliases."""
    return sorted(_QUANTIZERS)


def registry() -> dict[str, type[Quantizer]]:
    """Every name :func:`get` accepts, mapped to its class.

    The class names (``"SteSign"``), their snake_case aliases (``"ste_sign"``)
    and Larq's earlier names (``"DoReFaQuantizer"``), in registration order:
    the one list of quantizer names, which the service's definition language
    reads too.
    """
    return dict(_QUANTIZERS)


def precision_of(cls: type[Quantizer], arguments: Mapping[str, Any]) -> int | None:
    """The ``precision`` of ``cls(**arguments)``, without constructing it.

    Args:
        cls: A :class:`Quantizer` class.
        arguments: Constructor arguments (missing ones take their defaults).

    Returns:
        The bit width, or ``None`` if the class declares none.

    Example:
        >>> precision_of(DoReFa, {"k_bit": 4}), precision_of(SteSign, {})
        (4, 1)
    """
    name = cls.precision_argument
    if name is None:
        return cls.precision
    value = arguments.get(name, inspect.signature(cls).parameters[name].default)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def serialize(quantizer: Any) -> Any:
    """Serializes a quantizer to a Keras config (``None`` stays ``None``)."""
    if quantizer is None:
        return None
    return keras.saving.serialize_keras_object(quantizer)


def deserialize(config: Any, custom_objects: dict[str, Any] | None = None) -> Any:
    """Builds a quantizer from :func:`serialize`'s output, a name or a ``{"class_name",
    "config"}`` dict."""
    if config is None:
        return None
    if isinstance(config, str):
        return get(config)
    if isinstance(config, dict):
        class_name = config.get("class_name")
        if class_name in _QUANTIZERS:
            return _QUANTIZERS[class_name].from_config(dict(config.get("config") or {}))
        if class_name is None:
            raise ValueError(
                "Could not interpret quantizer config: a dict needs a 'class_name'. "
                f"Received: {config!r}"
            )
        return keras.saving.deserialize_keras_object(
            config, custom_objects=custom_objects
        )
    raise ValueError(f"Could not interpret quantizer config: {config!r}")


def get(identifier: QuantizerLike) -> Any:
    """Resolves a quantizer identifier.

    Args:
        identifier: ``None``; an alias or class name (``"ste_sign"``,
            ``"SteSign"``); a config dict from :func:`serialize`; a
            :class:`Quantizer` instance or class; or any callable.

    Returns:
        ``None``, a :class:`Quantizer` instance, or the callable itself.

    Raises:
        ValueError: if the identifier is not recognised; the message lists the
            known names.
    """
    if identifier is None:
        return None
    if isinstance(identifier, Quantizer):
        return identifier
    if isinstance(identifier, str):
        cls = _QUANTIZERS.get(identifier)
        if cls is None:
            raise ValueError(
                f"Could not interpret quantizer identifier: {identifier!r}. "
                f"Known quantizers: {', '.join(names())}."
            )
        try:
            return cls()
        except TypeError as error:
            raise ValueError(
                f"Quantizer {identifier!r} needs arguments and cannot be named by "
                f"string alone ({error}); pass a config dict or an instance."
            ) from None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Quantizer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret quantizer identifier: {identifier!r}. Expected None, "
        f"a name ({', '.join(names())}), a config dict, a Quantizer or a callable."
    )


def get_kernel_quantizer(identifier: QuantizerLike) -> Any:
    """:func:`get`, plus the metrics of the enclosing ``metrics_scope``.

    What a quantized layer does with its kernel quantizer arguments: a
    :class:`Quantizer` built inside ``bnncore.context.metrics_scope(["flip_ratio"])``
    gets ``"flip_ratio"`` added to its ``quantizer_metrics`` (on a copy; the
    caller's instance is not changed). Plain callables are returned as they are.

    Args:
        identifier: Anything :func:`get` accepts.

    Returns:
        ``None``, a :class:`Quantizer` instance, or the callable itself.

    Raises:
        ValueError: if the identifier is not recognised.
    """
    from bnncore import context  # context imports this module

    return context.with_scope_metrics(get(identifier))


def function_aliases() -> dict[str, Callable[..., Any]]:
    """The snake_case names of the quantizer functions (used as activation names)."""
    return dict(_FUNCTIONS)
