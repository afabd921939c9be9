"""Training metrics for quantized networks.

These metrics watch a layer's kernels rather than ``(y_true, y_pred)``, so they
are not passed to ``model.compile``: a kernel quantizer asks for them with
``metrics=["flip_ratio"]``, or every kernel quantizer of the layers constructed
inside :func:`bnncore.context.metrics_scope` gets them. The layer then owns one
metric per kernel, named as in Larq ``flip_ratio/<quantizer name>`` (a quantizer
is a Keras layer named after its class: ``ste_sign``, ``ste_sign_1``, ...), and
``model.fit`` logs it; ``layer.metrics`` lists the ones of a layer.

Example:
    >>> with bnncore.context.metrics_scope(["flip_ratio"]):
    ...     model = keras.Sequential([
    ...         keras.Input((16,)),
    ...         bnncore.layers.QuantDense(4, kernel_quantizer="ste_sign"),
    ...     ])
    >>> model.compile("adam", "mse")
    >>> history = model.fit(x, y, epochs=3)
    >>> history.history["flip_ratio/ste_sign"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["FlipRatio"]


@keras.saving.register_keras_serializable(package="bnncore")
class FlipRatio(keras.metrics.Metric):
    """The mean fraction of values that changed between consecutive updates.

    Larq's definition: each ``update_state(values)`` compares ``values`` with
    the previous call's and adds the fraction that differ, except the first
    update after construction or ``reset_state()``, which only records the
    values. ``count`` is the number of updates since the last reset (the first
    included); the result is ``total / (count - 1)``, the mean over the
    compared pairs, 0 before two updates. Keras resets metrics at the start of
    each epoch, so in ``fit`` the first step of an epoch is not compared with
    the last step of the one before. Values are compared after a cast to
    ``values_dtype``.

    Example:
        >>> m = FlipRatio()
        >>> m.update_state([1, 1])  # nothing to compare with yet
        >>> m.update_state([2, 2])  # 2 of 2 changed
        >>> m.update_state([1, 2])  # 1 of 2 changed
        >>> float(m.result()), float(m.count)  # (1 + 0.5) / 2, three updates
        (0.75, 3.0)

    Args:
        values_shape: Shape of the tracked tensor. ``None`` creates the state
            on :meth:`build` or on the first (eager) ``update_state``.
        values_dtype: Dtype the values are stored and compared in; ``"int8"``
            suits signs, use the tensor's dtype for k-bit values.
        name: Name of the metric (the key in ``fit``'s logs).
        dtype: Dtype of the result.
    """

    def __init__(
        self,
        values_shape: Sequence[int] | None = None,
        values_dtype: str = "int8",
        name: str = "flip_ratio",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self.values_dtype = keras.backend.standardize_dtype(values_dtype)
        self.values_shape: tuple[int, ...] | None = None
        # Every replica sees the same (mirrored) kernel: keep one copy of the state.
        self.total = self._state_variable((), self.dtype, "total")
        self.count = self._state_variable((), self.dtype, "count")
        self.has_previous = self._state_variable((), self.dtype, "has_previous")
        if values_shape is not None:
            self.build(values_shape)

    def build(self, values_shape: Sequence[int]) -> None:
        """Creates the state for values of ``values_shape`` (as Larq's ``build``).

        Args:
            values_shape: A fully defined shape.

        Raises:
            ValueError: if the shape has unknown or non-integer dimensions, or
                the state already exists with another shape.
        """
        if self.values_shape is not None:
            if tuple(values_shape) != self.values_shape:
                raise ValueError(
                    f"{self.name} is built for values of shape {self.values_shape}. "
                    f"Received: values_shape={tuple(values_shape)!r}"
                )
            return
        shape = tuple(values_shape)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise ValueError(
                "Expected a fully defined shape of integers. Received: "
                f"values_shape={values_shape!r}"
            )
        self.values_shape = shape
        self.previous_values = self._state_variable(
            shape, self.values_dtype, "previous_values"
        )

    def _state_variable(self, shape: tuple[int, ...], dtype: str, name: str) -> Any:
        return self.add_variable(
            shape=shape,
            initializer="zeros",
            dtype=dtype,
            aggregation="only_first_replica",
            name=name,
        )

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        """Adds the fraction of ``values`` that differ from the previous call's.

        Args:
            values: Tensor of ``values_shape``.
            sample_weight: Not supported; must be ``None``.

        Raises:
            ValueError: if ``sample_weight`` is given or the shape is wrong.
        """
        if sample_weight is not None:
            raise ValueError(
                "FlipRatio does not support sample weights. Received: "
                f"sample_weight={sample_weight!r}"
            )
        values = ops.cast(values, self.values_dtype)
        if self.values_shape is None:
            self.build(values.shape)
        if tuple(values.shape) != self.values_shape:
            raise ValueError(
                f"{self.name}: expected values of shape {self.values_shape}. "
                f"Received: values.shape={tuple(values.shape)}"
            )
        changed = ops.mean(
            ops.cast(ops.not_equal(values, self.previous_values), self.dtype)
        )
        counted = ops.cast(self.has_previous, self.dtype)
        self.total.assign_add(changed * counted)
        self.count.assign_add(ops.ones_like(self.count))
        self.previous_values.assign(values)
        self.has_previous.assign(ops.ones_like(self.has_previous))

    @property
    def _previous_values(self) -> Any:
        # Larq's name of the previous values (its tests read it).
        return self.previous_values

    def result(self) -> Any:
        """The mean flip fraction since the last reset (0 before two updates)."""
        compared = ops.maximum(self.count - self.has_previous, 0.0)
        return ops.divide_no_nan(self.total, compared)

    def reset_state(self) -> None:
        """Clears the running mean; the next update only records its values."""
        for variable in (self.total, self.count, self.has_previous):
            variable.assign(ops.zeros_like(variable))

    def get_config(self) -> dict[str, Any]:
        return {
            "values_shape": self.values_shape,
            "values_dtype": self.values_dtype,
            "name": self.name,
            "dtype": self.dtype,
        }
