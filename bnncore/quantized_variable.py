"""``QuantizedVariable``: a variable read as its quantized value in a quantized scope.

A quantized layer's kernels are :class:`QuantizedVariable` objects, as in Larq:
``layer.kernel.quantizer``, ``layer.kernel.precision`` and
``layer.kernel.latent_variable`` are there, and inside
``bnncore.context.quantized_scope(True)`` every read of the kernel
(``numpy()``, ``np.asarray``, arithmetic, ``keras.ops``, ``get_weights()``,
``model.save``) gives the quantized value. Outside the scope it reads as the
latent float variable that training updates.

Design (Keras 3): the kernel *is* the variable the layer created with
``add_weight``, turned into a ``QuantizedVariable`` in place when the layer is
built (:func:`quantize_in_place`). So it stays the one object that
``layer.weights``, the optimizer, the saved files and the analysis see, and
outside a quantized scope nothing reads differently. Only reads change; writes
(``assign``, optimizer updates, loading weights) always go to the latent value.
The layer's own forward pass reads the latent kernel and applies its quantizer
itself, with the pseudo-gradient, in both scopes.

:class:`QuantizedVariable` can also wrap an existing variable, as Larq's
``QuantizedVariable.from_variable(variable, quantizer)`` does; the two share
storage (TensorFlow backend).

Differences from Larq (Keras 3 removed what they rely on): ``value`` is a
property, not a method (Keras 3's ``Variable.value``); there is no graph mode,
``sparse_read``/``gather_nd``/``scatter_*``, ``op`` or distribution-strategy
subclass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from bnncore import context, quantizers

__all__ = ["QuantizedVariable", "quantize_in_place"]

_NO_WRAPPED: Any = None


def _quantizer_name(quantizer: Any) -> str:
    return getattr(quantizer, "__name__", None) or type(quantizer).__name__


def _check(quantizer: Any, precision: Any) -> None:
    if not (quantizer is None or callable(quantizer)):
        raise ValueError(
            "`quantizer` must be `callable` or `None`. Received: "
            f"quantizer={quantizer!r} of type {type(quantizer).__name__}"
        )
    if not (precision is None or type(precision) is int):
        raise ValueError(
            "`precision` must be of type `int` or `None`. Received: "
            f"precision={precision!r} of type {type(precision).__name__}"
        )


def _as_keras_variable(variable: Any) -> keras.Variable:
    """``variable`` as a ``keras.Variable``; a TensorFlow variable is wrapped
    (sharing its storage)."""
    if isinstance(variable, keras.Variable):
        return variable
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(variable, tf.Variable):
            name = variable.name.split(":")[0].replace("/", "_") or "variable"
            return keras.Variable(variable, trainable=variable.trainable, name=name)
    raise ValueError(
        "`variable` must be of type `keras.Variable` (or a TensorFlow variable). "
        f"Received: variable of type {type(variable).__name__}"
    )


def _storage(variable: keras.Variable) -> Any:
    """The backend value of ``variable``, never quantized (a ``tf.Variable``)."""
    return keras.Variable.value.fget(variable)


class QuantizedVariable(keras.Variable):
    """A ``keras.Variable`` that reads as ``quantizer(latent)`` in a quantized scope.

    Example:
        >>> layer = bnncore.layers.QuantDense(4, kernel_quantizer="ste_sign")
        >>> layer.build((None, 3))
        >>> layer.kernel.precision, type(layer.kernel.quantizer).__name__
        (1, 'SteSign')
        >>> with bnncore.context.quantized_scope(True):
        ...     binary = layer.kernel.numpy()           # exactly ±1
        >>> latent = layer.kernel.latent_variable.numpy()  # the float weights

    Args:
        variable: The latent variable to wrap: a ``keras.Variable`` (or, with
            the TensorFlow backend, a ``tf.Variable``). The new variable shares
            its storage: assignments to either are seen by both.
        quantizer: Callable applied to the latent value in a quantized scope;
            ``None`` reads the latent value everywhere.
        precision: Bit width; ``None`` takes ``quantizer.precision``.

    Raises:
        ValueError: if ``variable`` is not a variable, ``quantizer`` is not
            callable or ``precision`` is not an integer (Larq's messages).
    """

    quantizer: Callable[..., Any] | None
    precision: int | None

    def __init__(
        self,
        variable: Any,
        quantizer: Callable[..., Any] | None = None,
        precision: int | None = None,
    ) -> None:
        _check(quantizer, precision)
        latent = _as_keras_variable(variable)
        self._wrapped = latent
        self._latent_view = latent
        super().__init__(
            initializer=_storage(latent),
            trainable=latent.trainable,
            autocast=False,  # reads go through the latent variable, which autocasts
            aggregation=latent.aggregation,
            synchronization=latent.synchronization,
            name=latent.name,
        )
        self.quantizer = quantizer
        self.precision = precision or quantizers.get_precision(quantizer)

    @classmethod
    def from_variable(
        cls,
        variable: Any,
        quantizer: Callable[..., Any] | None = None,
        precision: int | None = None,
    ) -> QuantizedVariable:
        """A ``QuantizedVariable`` wrapping ``variable`` (Larq's constructor)."""
        return cls(variable, quantizer, precision)

    # -- the latent value ---------------------------------------------------

    @property
    def latent_variable(self) -> keras.Variable:
        """A plain ``keras.Variable`` sharing this variable's (latent) storage.

        Its reads are never quantized; assigning to it changes this variable.
        """
        return self._latent_view

    def _read_latent(self) -> Any:
        if self._wrapped is not _NO_WRAPPED:
            return self._wrapped.value
        return super().value

    # -- reads: quantized inside quantized_scope(True) ------------------------

    @property
    def value(self) -> Any:
        """The quantized value inside ``quantized_scope(True)``, else the latent."""
        latent = self._read_latent()
        if self.quantizer is None or not context.should_quantize():
            return latent
        return self.quantizer(ops.copy(latent))

    def read_value(self) -> Any:
        """Same as :attr:`value` (TensorFlow's and Larq's name)."""
        return self.value

    # -- writes: always to the latent value ------------------------------------

    def assign(self, value: Any, read_value: bool = True) -> Any:
        """Sets the latent value.

        Returns:
            This variable (as Larq and ``tf.Variable`` do, so calls chain and
            reading the result is quantized inside the scope), or ``None``
            with ``read_value=False``.
        """
        if self._wrapped is not _NO_WRAPPED:
            self._wrapped.assign(value)
        else:
            super().assign(value)
        return self if read_value else None

    def assign_add(self, value: Any, read_value: bool = True) -> Any:
        """Adds ``value`` to the latent value; returns as :meth:`assign`."""
        return self.assign(self._read_latent() + value, read_value=read_value)

    def assign_sub(self, value: Any, read_value: bool = True) -> Any:
        """Subtracts ``value`` from the latent value; returns as :meth:`assign`."""
        return self.assign(self._read_latent() - value, read_value=read_value)

    @property
    def initializer(self) -> Any:
        """The backend variable's initializer (``None``: Keras 3 variables are
        initialized when created). Larq code evaluates it before reading."""
        return getattr(self._read_latent(), "initializer", None)

    # -- attributes of the wrapped variable ------------------------------------

    @property
    def path(self) -> str:
        if self._wrapped is not _NO_WRAPPED:
            return self._wrapped.path
        return super().path

    @property
    def trainable(self) -> bool:
        if self._wrapped is not _NO_WRAPPED:
            return self._wrapped.trainable
        return super().trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if self._wrapped is not _NO_WRAPPED:
            self._wrapped.trainable = value
        else:
            keras.Variable.trainable.fset(self, value)

    def __repr__(self) -> str:
        # Larq's layout (tf.Variable's, with the TensorFlow name ``<path>:0``),
        # so that Larq users' snapshot tests of it still match.
        text = f"<QuantizedVariable '{self.path}:0' shape={tuple(self.shape)}"
        text += f" dtype={self.dtype}"
        if self.quantizer is not None:
            text += f" quantizer={_quantizer_name(self.quantizer)}"
        if self.precision is not None:
            text += f" precision={self.precision}"
        try:
            value = ops.convert_to_numpy(self.value)
        except Exception:  # e.g. a symbolic value: no numbers
            return f"{text}>"
        shown = str(value) if value.ndim == 0 else repr(value)
        if "\n" in shown:  # a multi-line array starts on its own line
            shown = "\n" + shown
        return f"{text} numpy={shown}>"


def _latent_reads(function: Callable[..., Any]) -> Callable[..., Any]:
    def latent(self: QuantizedVariable, *args: Any, **kwargs: Any) -> Any:
        with context.quantized_scope(False):
            return function(self, *args, **kwargs)

    latent.__name__ = function.__name__
    latent.__doc__ = function.__doc__
    return latent


# The backend's variable reads ``self.value`` to give TensorFlow its resource
# (``handle``: gradient tapes and functions identify the variable by it) and to
# checkpoint or export it. These always see the latent variable, so that
# checkpoints and SavedModels hold latent values in either scope, as in Larq,
# and are identical to those of a plain variable.
for _name in (
    "handle",
    "_shared_name",
    "_serialize_to_tensors",
    "_restore_from_tensors",
    "_copy_trackable_to_cpu",
    "_export_to_saved_model_graph",
    "_write_object_proto",
):
    _attribute = getattr(keras.Variable, _name, None)
    if isinstance(_attribute, property) and _attribute.fget is not None:
        setattr(QuantizedVariable, _name, property(_latent_reads(_attribute.fget)))
    elif callable(_attribute):
        setattr(QuantizedVariable, _name, _latent_reads(_attribute))


_CLASSES: dict[type, type[QuantizedVariable]] = {}


def _quantized_class(cls: type) -> type[QuantizedVariable]:
    if issubclass(cls, QuantizedVariable):
        return cls
    if cls is keras.Variable:
        return QuantizedVariable
    if cls not in _CLASSES:  # a subclass of keras.Variable: keep isinstance true
        _CLASSES[cls] = type(f"Quantized{cls.__name__}", (QuantizedVariable, cls), {})
    return _CLASSES[cls]


def quantize_in_place(
    variable: keras.Variable,
    quantizer: Callable[..., Any] | None,
    precision: int | None = None,
) -> QuantizedVariable:
    """Makes ``variable`` a :class:`QuantizedVariable`, keeping the same object.

    What a quantized layer does to its kernels when it is built: the variable
    ``add_weight`` created stays the one the layer tracks, trains and saves
    (its class changes, not its identity or storage).

    Args:
        variable: A ``keras.Variable`` (TensorFlow backend).
        quantizer: Callable applied to the latent value in a quantized scope.
        precision: Bit width; ``None`` takes ``quantizer.precision``.

    Returns:
        ``variable`` itself, now a :class:`QuantizedVariable`.

    Raises:
        ValueError: for an argument of the wrong type, or a backend other
            than TensorFlow (where the latent view cannot share storage).
    """
    if not isinstance(variable, keras.Variable):
        raise ValueError(
            "`variable` must be of type `keras.Variable`. Received: variable of "
            f"type {type(variable).__name__}"
        )
    _check(quantizer, precision)
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "Quantized kernels need the TensorFlow backend. Received: "
            f"backend={keras.backend.backend()!r}"
        )
    if not isinstance(variable, QuantizedVariable):
        storage = _storage(variable)
        view = keras.Variable(
            storage,
            trainable=variable.trainable,
            aggregation=variable.aggregation,
            synchronization=variable.synchronization,
            name=variable.name,
        )
        if _storage(view) is not storage:  # e.g. built inside an autocast scope
            raise RuntimeError(
                f"Could not share the storage of {variable.path!r} with its latent "
                "view; build the layer outside any autocast scope."
            )
        variable.__class__ = _quantized_class(type(variable))
        assert isinstance(variable, QuantizedVariable)
        variable._wrapped = _NO_WRAPPED
        variable._latent_view = view
    variable.quantizer = quantizer
    variable.precision = precision or quantizers.get_precision(quantizer)
    return variable
