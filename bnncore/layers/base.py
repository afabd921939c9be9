"""The mixin that turns a Keras layer into a quantized layer.

A quantized layer computes ``activation(f(q_kernel(w), q_input(x)) + b)`` where
``f`` is its Keras parent's operation. With every quantizer ``None`` it is
exactly its parent. The latent float weights are what trains; the quantized
view of each kernel is available as :attr:`QuantizerBase.quantized_weights`.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import keras

from bnncore import activations, constraints, context, quantizers
from bnncore.quantized_variable import quantize_in_place

__all__ = ["QuantizerBase"]

log = logging.getLogger("bnncore")

ForwardFn = Callable[[Any, Any, dict[str, Any]], Any]


def _check_pad_values(pad_values: Any) -> float:
    if (
        isinstance(pad_values, bool)
        or not isinstance(pad_values, int | float)
        or not math.isfinite(pad_values)
    ):
        raise ValueError(
            "Expected a finite number (0.0 pads with zeros, 1.0 gives 'same-one' "
            f"padding). Received: pad_values={pad_values!r}"
        )
    return float(pad_values)


def _shapes(tensors: Any) -> Any:
    """Shape tuples of one tensor, or a list of them for a list of tensors."""
    if isinstance(tensors, list | tuple):
        if len(tensors) == 1:
            return tuple(tensors[0].shape)
        return [tuple(tensor.shape) for tensor in tensors]
    return tuple(tensors.shape)


def _get_quantizer(field: str, identifier: Any) -> Any:
    """``quantizers.get`` with the argument's name added to any error."""
    try:
        return quantizers.get(identifier)
    except ValueError as error:
        raise ValueError(f"Invalid {field}={identifier!r}: {error}") from None


class QuantizerBase:
    """Mixin applying ``input_quantizer`` and the kernel quantizers of a layer.

    A concrete quantized layer lists the quantizer arguments it takes in
    ``_kernel_quantizers`` (argument name → weight attribute), says whether it
    takes ``pad_values``, and names the function computing its operation from
    the (already quantized) inputs and kernels. Its signature is its Keras
    parent's with the quantizer arguments inserted where Larq has them, so
    positional calls bind as in Larq: ``pad_values`` after ``padding``, then
    ``input_quantizer`` and the kernel quantizers after ``use_bias``; Keras's
    own parameters keep their order.

    Args:
        input_quantizer: Quantizer applied to the layer's input.
        kernel_quantizer (or ``depthwise_quantizer`` / ``pointwise_quantizer``):
            Quantizer applied to the kernel in the forward pass.
        pad_values: Constant used for implicit padding (``padding="same"``);
            ``1.0`` gives "same-one" padding. ``padding="causal"`` pads with
            zeros only: other values are refused, as in Larq.
    """

    _kernel_quantizers: ClassVar[dict[str, str]] = {"kernel_quantizer": "kernel"}
    _takes_pad_values: ClassVar[bool] = False
    _forward: ClassVar[ForwardFn]
    _parent: ClassVar[type]

    if TYPE_CHECKING:  # set by the Keras layer this mixin is combined with
        name: str
        activation: Callable[..., Any]
        output: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        parent = next(
            (
                base
                for base in cls.__mro__[1:]
                if issubclass(base, keras.layers.Layer)
                and not issubclass(base, QuantizerBase)
            ),
            None,
        )
        if parent is None:  # an intermediate mixin, not a concrete layer
            return
        cls._parent = parent
        cls.__signature__ = _quantized_signature(parent, cls)  # type: ignore[attr-defined]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = self.__signature__.bind(*args, **kwargs)  # type: ignore[attr-defined]
        arguments = dict(bound.arguments)
        extra = arguments.pop("kwargs", {})
        input_quantizer = arguments.pop("input_quantizer", None)
        kernel_quantizers = {
            name: arguments.pop(name, None) for name in self._kernel_quantizers
        }
        pad_values = (
            arguments.pop("pad_values", 0.0) if self._takes_pad_values else None
        )
        if "activation" in arguments:
            arguments["activation"] = activations.get(arguments["activation"])
        for name, value in arguments.items():
            if name.endswith("_constraint") and value is not None:
                arguments[name] = constraints.get(value)

        super().__init__(**arguments, **extra)

        # Kernel quantizers first, as Larq creates them: a quantizer's automatic
        # name (ste_sign, ste_sign_1, ...) names its flip-ratio metric.
        for name, value in kernel_quantizers.items():
            setattr(self, name, context.with_scope_metrics(_get_quantizer(name, value)))
        self.input_quantizer = _get_quantizer("input_quantizer", input_quantizer)
        if self._takes_pad_values:
            self.pad_values = _check_pad_values(pad_values)
            if getattr(self, "padding", None) == "causal" and self.pad_values != 0.0:
                raise ValueError(
                    "Causal padding with `pad_values != 0` is not supported (as in "
                    "Larq): padding='causal' pads with zeros. Received: "
                    f"padding='causal', pad_values={pad_values!r}"
                )
        self._warn_about_starved_weights()

    def _warn_about_starved_weights(self) -> None:
        for name in self._kernel_quantizers:
            quantizer = getattr(self, name)
            constraint_name = name.replace("_quantizer", "_constraint")
            has_constraint = getattr(self, constraint_name, None) is not None
            if quantizers.get_precision(quantizer) == 1 and not has_constraint:
                log.warning(
                    "%s: `%s` is binary but `%s` is not set; latent weights that "
                    "leave the gradient's clip range may starve (their gradient "
                    "stays zero). Consider %s='weight_clip'.",
                    self.name,
                    name,
                    constraint_name,
                    constraint_name,
                )

    # ------------------------------------------------------------------
    # Quantized views
    # ------------------------------------------------------------------

    @property
    def kernel_quantizers(self) -> dict[str, Any]:
        """Weight attribute name → quantizer applied to it (``None`` if none)."""
        return {
            attribute: getattr(self, name)
            for name, attribute in self._kernel_quantizers.items()
        }

    @property
    def quantizers(self) -> list[Any]:
        """The kernel quantizers that are set (as in Larq)."""
        return [q for q in self.kernel_quantizers.values() if q is not None]

    @property
    def quantized_weights(self) -> dict[str, Any]:
        """Weight attribute name → the kernel as used in the forward pass.

        The quantizer is applied to the latent kernel (with its
        pseudo-gradient) in both states of ``quantized_scope``.
        """
        views = {}
        for attribute, quantizer in self.kernel_quantizers.items():
            with context.quantized_scope(False):  # the latent kernel
                latent = quantizers.as_tensor(getattr(self, attribute))
            views[attribute] = latent if quantizer is None else quantizer(latent)
        return views

    @property
    def output_shape(self) -> Any:
        """The output shape of the layer's symbolic calls, as Keras 2 (and Larq)
        gave it; Keras 3 removed ``Layer.output_shape``.

        After ``layer(keras.Input(...))`` it is ``tuple(layer.output.shape)``
        (``None`` for the batch and any unknown size).

        Raises:
            AttributeError: the layer was never called on a symbolic input (an
                eager call records nothing), or its symbolic calls gave different
                output shapes, as in Keras 2. Like any ``AttributeError`` from a
                property, ``hasattr(layer, "output_shape")`` is then ``False``,
                which is what Keras 3's own summary checks for.
        """
        # `layer.output` is the first call's; the other calls are read from
        # Keras's node list (no public accessor) only to refuse an ambiguous
        # shape. Without that list the first call's shape is returned.
        nodes = getattr(self, "_inbound_nodes", None)
        if nodes is not None and not nodes:
            raise AttributeError(
                f"The layer {self.name!r} has never been called on a symbolic input "
                "(keras.Input), so it has no output shape. Call it on one, or use "
                "layer.compute_output_shape(input_shape)."
            )
        shapes = {
            repr(_shapes(node.output_tensors))
            for node in nodes or []
            if hasattr(node, "output_tensors")
        }
        if len(shapes) > 1:
            raise AttributeError(
                f"The layer {self.name!r} has been called on inputs giving different "
                f"output shapes ({', '.join(sorted(shapes))}), so its output shape "
                "is ambiguous. Read the output of the call you mean instead "
                "(output.shape)."
            )
        return _shapes(self.output)

    # ------------------------------------------------------------------
    # Keras protocol
    # ------------------------------------------------------------------

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)  # type: ignore[misc]
        # Quantized kernels become QuantizedVariables (same objects, as in Larq:
        # layer.kernel.precision, quantized reads inside quantized_scope(True)).
        for attribute, quantizer in self.kernel_quantizers.items():
            variable = getattr(self, attribute)
            if quantizer is not None and isinstance(variable, keras.Variable):
                quantize_in_place(variable, quantizer)
        context.attach_kernel_aids(self)  # kernel tags for Bop, flip-ratio metrics

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        kernels = self.quantized_weights
        if training:
            context.track_kernels(self, kernels)  # flip-ratio metrics
        outputs = type(self)._forward(self, inputs, kernels)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_weights(self) -> list[Any]:
        # Quantized kernels inside bnncore.context.quantized_scope(True).
        return context.scoped_weights(self, super().get_weights())  # type: ignore[misc]

    def save_own_variables(self, store: Any) -> None:
        # Quantized kernels inside bnncore.context.quantized_scope(True).
        context.scoped_store(self, store, super().save_own_variables)  # type: ignore[misc]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()  # type: ignore[misc]
        config["input_quantizer"] = quantizers.serialize(self.input_quantizer)
        for name in self._kernel_quantizers:
            config[name] = quantizers.serialize(getattr(self, name))
        if self._takes_pad_values:
            config["pad_values"] = self.pad_values
        # Only with flip-ratio metrics: their keys, which a reload keeps.
        flip_ratio_names = context.flip_ratio_names(self)
        if flip_ratio_names:
            config["flip_ratio_names"] = flip_ratio_names
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        config = dict(config)
        flip_ratio_names = config.pop("flip_ratio_names", None)
        layer = super().from_config(config)  # type: ignore[misc]
        if flip_ratio_names is not None:
            context.restore_flip_ratio_names(layer, flip_ratio_names)
        return layer


def _quantized_signature(
    parent: type[keras.layers.Layer], cls: type[QuantizerBase]
) -> inspect.Signature:
    """The parent's ``__init__`` signature with the quantizer arguments inserted.

    Larq's order: ``pad_values`` right after ``padding``; ``input_quantizer``
    and the kernel quantizers right after ``use_bias`` (at the end if the
    parent has no such parameter). Every parent parameter after them has a
    default, so the inserted ones (defaults ``0.0`` / ``None``) keep the
    signature valid.
    """
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = list(inspect.signature(parent.__init__).parameters.values())[1:]
    var_keyword = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    params = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    quantizer_params = [
        inspect.Parameter(name, positional, default=None)
        for name in ["input_quantizer", *cls._kernel_quantizers]
    ]
    insertions: dict[str, list[inspect.Parameter]] = {"use_bias": quantizer_params}
    if cls._takes_pad_values:
        insertions["padding"] = [
            inspect.Parameter("pad_values", positional, default=0.0)
        ]
    merged: list[inspect.Parameter] = []
    for param in params:
        merged.append(param)
        merged.extend(insertions.pop(param.name, []))
    # Parameters without an anchor go last, before any keyword-only ones.
    leftovers = [p for group in insertions.values() for p in group]
    first_kw_only = next(
        (i for i, p in enumerate(merged) if p.kind is inspect.Parameter.KEYWORD_ONLY),
        len(merged),
    )
    merged[first_kw_only:first_kw_only] = leftovers
    if not var_keyword:
        var_keyword = [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    return inspect.Signature([*merged, *var_keyword])
