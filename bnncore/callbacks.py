"""Keras callbacks for training quantized networks."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

__all__ = ["HyperparameterScheduler"]

_UPDATE_FREQS = ("epoch", "step")


def _arity(schedule: Callable[..., Any]) -> int:
    """How many positional arguments ``schedule`` takes (1 or 2)."""
    try:
        params = inspect.signature(schedule).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return 1
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) >= 2:
        return 2
    return 1


class HyperparameterScheduler(keras.callbacks.Callback):
    """Sets an optimizer hyperparameter from a schedule, every epoch or step.

    Before each epoch (``update_freq="epoch"``, index = epoch number from 0) or
    each training step (``update_freq="step"``, index = the model optimizer's
    ``iterations``, which counts steps across ``fit`` calls), the
    hyperparameter is set to ``schedule(index)`` or
    ``schedule(index, current_value)``. Its value at the end of each epoch is
    added to the logs under ``log_name`` (default: ``hyperparameter``).

    Only hyperparameters held in a variable can change during training, since
    plain Python numbers are frozen into the compiled training step:
    ``learning_rate`` of any Keras optimizer, ``gamma`` and ``threshold`` of
    :class:`bnncore.optimizers.Bop`. Others are refused with an error.

    Example:
        >>> bop = bnncore.optimizers.Bop(threshold=1e-6, gamma=1e-3)
        >>> decay = HyperparameterScheduler(
        ...     lambda epoch: 1e-3 * 0.5**epoch, "gamma", optimizer=bop)

    Args:
        schedule: Function of the index (and optionally the current value)
            returning the new value.
        hyperparameter: Name of the optimizer attribute to set.
        optimizer: The optimizer to change; ``None`` means the model's.
        update_freq: ``"epoch"`` or ``"step"``.
        verbose: ``0`` quiet, ``1`` prints each change.
        log_name: Key of the value in the logs (and so in ``history`` and
            TensorBoard); ``None`` means ``hyperparameter``. Use it to tell
            apart two schedules of the same hyperparameter on different
            optimizers (Larq's argument).
    """

    def __init__(
        self,
        schedule: Callable[..., Any],
        hyperparameter: str,
        optimizer: keras.optimizers.Optimizer | None = None,
        update_freq: str = "epoch",
        verbose: int = 0,
        log_name: str | None = None,
    ) -> None:
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"Expected a callable. Received: schedule={schedule!r}")
        if not isinstance(hyperparameter, str) or not hyperparameter:
            raise ValueError(
                "Expected a non-empty attribute name. Received: "
                f"hyperparameter={hyperparameter!r}"
            )
        if optimizer is not None and not isinstance(
            optimizer, keras.optimizers.Optimizer
        ):
            raise ValueError(
                "Expected a keras.optimizers.Optimizer or None. Received: "
                f"optimizer={optimizer!r}"
            )
        if update_freq not in _UPDATE_FREQS:
            raise ValueError(
                f"Expected update_freq to be one of {_UPDATE_FREQS}. Received: "
                f"update_freq={update_freq!r}"
            )
        if verbose not in (0, 1):
            raise ValueError(f"Expected verbose to be 0 or 1. Received: {verbose!r}")
        if log_name is not None and (not isinstance(log_name, str) or not log_name):
            raise ValueError(
                f"Expected a non-empty string or None. Received: log_name={log_name!r}"
            )
        self.schedule = schedule
        self.hyperparameter = hyperparameter
        self.optimizer = optimizer
        self.update_freq = update_freq
        self.verbose = verbose
        self.log_name = log_name or hyperparameter
        self._arity = _arity(schedule)

    def _target(self) -> keras.optimizers.Optimizer:
        return self.optimizer if self.optimizer is not None else self.model.optimizer

    def _variable(self) -> Any:
        optimizer = self._target()
        try:
            value = getattr(optimizer, self.hyperparameter)
        except AttributeError as error:
            raise ValueError(
                f"Optimizer {optimizer.name!r} ({type(optimizer).__name__}) has no "
                f"hyperparameter {self.hyperparameter!r} ({error}). For a "
                "CaseOptimizer, pass one of its `optimizers` as `optimizer`."
            ) from None
        if not isinstance(value, keras.Variable):
            raise ValueError(
                f"Hyperparameter {self.hyperparameter!r} of optimizer "
                f"{optimizer.name!r} is {value!r}, not a variable (a number frozen "
                "into the compiled step, or a schedule), so it cannot be scheduled. "
                "Schedulable: `learning_rate`, and Bop's `gamma` and `threshold`."
            )
        return value

    def _update(self, index: int) -> None:
        variable = self._variable()
        current = float(ops.convert_to_numpy(variable))
        if self._arity == 2:
            value = self.schedule(index, current)
        else:
            value = self.schedule(index)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"The schedule must return a number. Received: {value!r} for "
                f"{self.update_freq} {index}"
            ) from None
        variable.assign(value)
        if self.verbose and value != current:
            print(
                f"{self.update_freq.capitalize()} {index}: {self.log_name} "
                f"changed from {current:.6g} to {value:.6g}."
            )

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._variable()  # fail before the first step, with a clear message

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.update_freq == "epoch":
            self._update(epoch)

    def on_train_batch_begin(
        self, batch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if self.update_freq == "step":
            step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
            self._update(step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs[self.log_name] = float(ops.convert_to_numpy(self._variable()))
