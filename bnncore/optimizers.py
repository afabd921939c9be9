"""Optimizers for binarized networks, on Keras 3's optimizer API.

A BNN has binary kernels and higher-precision variables (BatchNorm, the first
and last layers). :class:`CaseOptimizer` trains each variable with the first of
several optimizers whose predicate accepts it; :class:`Bop` is the latent-free
optimizer for the binary kernels.

Example:
    >>> optimizer = bnncore.optimizers.CaseOptimizer(
    ...     (bnncore.optimizers.Bop.is_binary_variable,
    ...      bnncore.optimizers.Bop(threshold=1e-6, gamma=1e-3)),
    ...     default_optimizer=keras.optimizers.Adam(0.01),
    ... )
    >>> model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from bnncore import math as bmath
from bnncore import quantizers
from bnncore.context import kernel_quantizer

__all__ = ["Bop", "CaseOptimizer", "OptimizerTypeError", "is_binary_variable"]

log = logging.getLogger("bnncore")

_register = keras.saving.register_keras_serializable(package="bnncore")


class OptimizerTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError`` as in Larq, and a
    ``ValueError`` as bnncore raised before (so either ``except`` catches it)."""


Predicate = Callable[[Any], bool]


@_register
def is_binary_variable(variable: Any) -> bool:
    """Whether ``variable`` is a kernel whose quantizer has ``precision == 1``.

    Kernels learn their quantizer when their quantized layer is built (see
    :func:`bnncore.context.kernel_quantizer`). A variable carrying its own
    ``precision`` attribute (Larq's convention) is also accepted.

    Args:
        variable: A model variable.

    Returns:
        ``True`` for binary kernels, ``False`` for everything else.
    """
    quantizer = kernel_quantizer(variable)
    if quantizer is not None:
        return quantizers.get_precision(quantizer) == 1
    return getattr(variable, "precision", None) == 1


def _is_schedule(value: Any) -> bool:
    return isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or (
        callable(value) and not isinstance(value, keras.Variable)
    )


def _check_number(field: str, value: Any, low: float, high: float | None) -> float:
    allowed = f"a number >= {low}" if high is None else f"a number in ({low}, {high}]"
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok:
        ok = value >= low if high is None else low < value <= high
    if not ok:
        raise ValueError(
            f"Expected {allowed} or a LearningRateSchedule. Received: {field}={value!r}"
        )
    return float(value)


def _deserialize_hyper(value: Any, custom_objects: Any) -> Any:
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(
            value, custom_objects=custom_objects
        )
    return value


@_register
class Bop(keras.optimizers.Optimizer):
    r"""Binary optimizer (Bop): flips binary weights when a gradient trend is strong.

    For each binary variable :math:`w \in \{-1, +1\}` Bop keeps an exponential
    moving average of its gradient and flips :math:`w` when the average is
    stronger than ``threshold`` and points the same way as :math:`w`:

    .. math::

        m &\leftarrow m + \gamma (g - m) \\
        w &\leftarrow \text{sign}(-\text{sign}(w m - \tau)\, w)

    with ``sign(0) = +1`` for the outer sign. The result is always exactly ±1,
    so a kernel that starts real-valued (e.g. Glorot-initialised) becomes
    ``sign(w)``, flipped where :math:`w m > \tau`, at the first step, and stays
    binary afterwards — Larq's behaviour. Use Bop only for binary kernels (see
    :class:`CaseOptimizer` and :meth:`is_binary_variable`).

    ``gamma`` plays the part of a learning rate: it *is* this optimizer's
    ``learning_rate`` variable, so Keras learning-rate schedules and callbacks
    act on it, and ``bop.gamma`` / ``bop.learning_rate`` are the same value.

    Reference: Helwegen et al., *Latent Weights Do Not Exist: Rethinking
    Binarized Neural Network Optimization* (NeurIPS 2019), arXiv:1906.02107.

    Args:
        threshold: :math:`\tau \ge 0`, the average gradient magnitude needed to
            flip a weight; a number or a schedule of the iteration.
        gamma: :math:`\gamma \in (0, 1]`, the adaptivity rate of the average;
            a number or a schedule of the iteration.
        name: Name of the optimizer.
        **kwargs: Base optimizer arguments (``clipnorm``, ``clipvalue``,
            ``global_clipnorm``, ``use_ema``, ...). ``weight_decay`` is refused:
            it would move weights off ±1.
    """

    is_binary_variable = staticmethod(is_binary_variable)

    def __init__(
        self,
        threshold: float | Any = 1e-8,
        gamma: float | Any = 1e-4,
        name: str = "bop",
        **kwargs: Any,
    ) -> None:
        if "learning_rate" in kwargs:
            raise ValueError(
                "Bop has no separate learning rate; its step size is `gamma`. "
                f"Received: learning_rate={kwargs['learning_rate']!r}"
            )
        if kwargs.get("weight_decay") is not None:
            raise ValueError(
                "Bop keeps weights at exactly ±1, so it cannot apply weight decay. "
                f"Received: weight_decay={kwargs['weight_decay']!r}"
            )
        if not _is_schedule(gamma):
            gamma = _check_number("gamma", gamma, 0.0, 1.0)
        if not _is_schedule(threshold):
            threshold = _check_number("threshold", threshold, 0.0, None)
        super().__init__(learning_rate=gamma, name=name, **kwargs)
        self._threshold: Any  # a schedule, or a keras.Variable holding τ
        if _is_schedule(threshold):
            self._threshold = threshold
        else:
            self._threshold = self.add_variable(
                shape=(),
                initializer=keras.initializers.Constant(threshold),
                aggregation="only_first_replica",
                name="threshold",
            )

    # -- hyperparameters ---------------------------------------------------

    @property
    def gamma(self) -> Any:
        """The adaptivity rate γ (the same value as ``learning_rate``)."""
        return self.learning_rate

    @gamma.setter
    def gamma(self, value: float) -> None:
        self.learning_rate = value

    @property
    def threshold(self) -> Any:
        """The flip threshold τ: a variable, or the schedule's current value."""
        if isinstance(self._threshold, keras.Variable):
            return self._threshold
        return self._threshold(self.iterations)

    @threshold.setter
    def threshold(self, value: float) -> None:
        if not isinstance(self._threshold, keras.Variable):
            raise TypeError(
                "This Bop's threshold is a schedule and cannot be set to a value. "
                f"Received: threshold={value!r}"
            )
        self._threshold.assign(_check_number("threshold", value, 0.0, None))

    # -- Keras optimizer protocol --------------------------------------------

    def build(self, variables: list[Any]) -> None:
        """Creates the gradient average ``m`` (zeros) of every variable."""
        if self.built:
            return
        super().build(variables)
        self._averages = self.add_optimizer_variables(variables, "m")
        not_binary = [v.path for v in variables if not is_binary_variable(v)]
        if not_binary:
            log.warning(
                "%s: Bop will binarize variables that are not binary kernels: %s. "
                "Route only binary kernels to Bop with CaseOptimizer and "
                "Bop.is_binary_variable.",
                self.name,
                not_binary,
            )

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """One Bop update of ``variable`` (see the class docstring)."""
        dtype = variable.dtype
        gamma = ops.cast(learning_rate, dtype)
        threshold = ops.cast(self.threshold, dtype)
        average = self._averages[self._get_variable_index(variable)]
        new_average = average + gamma * (ops.cast(gradient, dtype) - average)
        self.assign(average, new_average)
        flip = ops.sign(variable * new_average - threshold)
        self.assign(variable, bmath.sign(-flip * variable))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["gamma"] = config.pop("learning_rate")
        if isinstance(self._threshold, keras.Variable):
            config["threshold"] = float(ops.convert_to_numpy(self._threshold))
        else:
            config["threshold"] = keras.saving.serialize_keras_object(self._threshold)
        del config["weight_decay"]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Bop:
        config = dict(config)
        for key in ("gamma", "threshold"):
            if key in config:
                config[key] = _deserialize_hyper(config[key], custom_objects)
        return cls(**config)


# --------------------------------------------------------------------------
# CaseOptimizer
# --------------------------------------------------------------------------


class _UnrestoredPredicate:
    """Stands for a predicate that could not be serialized (e.g. a lambda)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, variable: Any) -> bool:
        raise ValueError(
            f"Predicate {self.index} of this CaseOptimizer was not restored from "
            "its config (only registered or importable functions are saved), and "
            f"the saved routes do not cover variable {variable.path!r}. Rebuild "
            "the CaseOptimizer with its predicates."
        )


def _serialize_predicate(predicate: Predicate) -> Any:
    if isinstance(predicate, _UnrestoredPredicate):
        return None
    qualname = getattr(predicate, "__qualname__", "")
    if "<lambda>" in qualname or "<locals>" in qualname:
        return None
    try:
        return keras.saving.serialize_keras_object(predicate)
    except Exception:  # anything Keras cannot serialize
        return None


def _deserialize_predicate(index: int, config: Any, custom_objects: Any) -> Predicate:
    if config is None:
        return _UnrestoredPredicate(index)
    try:
        predicate = keras.saving.deserialize_keras_object(
            config, custom_objects=custom_objects
        )
    except Exception as error:  # fall back to the saved routes
        log.warning("CaseOptimizer: predicate %d not restored (%s)", index, error)
        return _UnrestoredPredicate(index)
    return predicate if callable(predicate) else _UnrestoredPredicate(index)


_MISSING = object()


def _variable_key(variable: Any) -> str:
    return getattr(variable, "path", None) or variable.name


@_register
class CaseOptimizer(keras.optimizers.Optimizer):
    """Trains each variable with the first optimizer whose predicate accepts it.

    The routing is decided once, when the optimizer is built on the model's
    trainable variables: a variable goes to the optimizer of the one
    ``(predicate, optimizer)`` pair whose ``predicate(variable)`` is true, else
    to ``default_optimizer``; with no default it is not trained (a warning
    names it). As in Larq, it is an error for two predicates to claim one
    variable, or for a predicate to claim none. Each wrapped optimizer is
    built on, and updates, only its own variables, with its own
    hyperparameters, clipping and constraints; any Keras 3 optimizer works.

    The routes (variable path → optimizer) are part of the config, so a loaded
    model trains exactly as before even when a predicate (e.g. a lambda) cannot
    be saved. The wrapped optimizers' state is saved with the model.

    Args:
        *predicate_optimizer_pairs: ``(predicate, optimizer)`` tuples; the
            predicate takes a variable and returns a bool.
        default_optimizer: Optimizer for the variables no predicate accepts.
        name: Name of the optimizer.
        routes: Variable path → optimizer index (``len(pairs)`` is the default
            optimizer; ``None`` is untrained). Filled by building; given back by
            :meth:`from_config`.

    Raises:
        OptimizerTypeError: (a ``TypeError``, as in Larq) for a predicate that
            is not callable or an optimizer that is not a Keras optimizer.
        ValueError: for other bad arguments; when built, if two predicates
            claim one variable or a predicate claims none.
    """

    def __init__(
        self,
        *predicate_optimizer_pairs: tuple[Predicate, keras.optimizers.Optimizer],
        default_optimizer: keras.optimizers.Optimizer | None = None,
        name: str = "case_optimizer",
        routes: dict[str, int | None] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise ValueError(
                "CaseOptimizer takes no optimizer arguments of its own; set them on "
                f"the optimizers it wraps. Received: {sorted(kwargs)}"
            )
        predicates, optimizers = _check_pairs(predicate_optimizer_pairs)
        if default_optimizer is not None and not isinstance(
            default_optimizer, keras.optimizers.Optimizer
        ):
            raise OptimizerTypeError(
                "Expected a keras.optimizers.Optimizer or None. Received: "
                f"default_optimizer={default_optimizer!r}"
            )
        if default_optimizer is not None:
            optimizers.append(default_optimizer)
        if not optimizers:
            raise ValueError(
                "CaseOptimizer needs at least one (predicate, optimizer) pair or a "
                "default_optimizer. Received neither."
            )
        if len({id(o) for o in optimizers}) != len(optimizers):
            raise ValueError(
                "Each optimizer may appear only once in a CaseOptimizer; the same "
                "instance was passed twice."
            )
        super().__init__(learning_rate=0.0, name=name)
        self.predicates = predicates
        self.optimizers = optimizers
        self._has_default = default_optimizer is not None
        self._routes = dict(routes) if routes is not None else None
        self._route_by_id: dict[int, int | None] = {}

    @property
    def default_optimizer(self) -> keras.optimizers.Optimizer | None:
        """The optimizer of the variables no predicate accepts (or ``None``)."""
        return self.optimizers[-1] if self._has_default else None

    @property
    def routes(self) -> dict[str, int | None] | None:
        """Variable path → index in :attr:`optimizers` (``None``: untrained)."""
        return None if self._routes is None else dict(self._routes)

    @property
    def learning_rate(self) -> Any:
        raise AttributeError(
            "CaseOptimizer has no learning rate of its own; use the learning_rate "
            "of one of its `optimizers`."
        )

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        raise AttributeError(
            "CaseOptimizer has no learning rate of its own; set it on one of its "
            f"`optimizers`. Received: learning_rate={value!r}"
        )

    @property
    def variables(self) -> list[Any]:
        """This optimizer's iteration counter, then every wrapped optimizer's state."""
        found = list(super().variables)
        for optimizer in self.optimizers:
            found.extend(optimizer.variables)
        return found

    def optimizer_for(self, variable: Any) -> keras.optimizers.Optimizer | None:
        """The optimizer that trains ``variable`` (after building), or ``None``."""
        index = self._route_by_id.get(id(variable))
        return None if index is None else self.optimizers[index]

    def _saved_route(self, key: str) -> Any:
        """The saved route of the variable at path ``key``, else ``_MISSING``.

        A loaded model's paths may lack the prefix the saved model's had (or the
        reverse), so a saved path matching ``key`` up to such a prefix counts
        when it is the only one.
        """
        if self._routes is None:
            return _MISSING
        if key in self._routes:
            return self._routes[key]
        matches = [
            saved
            for saved in self._routes
            if saved.endswith("/" + key) or key.endswith("/" + saved)
        ]
        return self._routes[matches[0]] if len(matches) == 1 else _MISSING

    def _route(self, variable: Any) -> int | None:
        key = _variable_key(variable)
        saved = self._saved_route(key)
        if saved is not _MISSING:
            return saved
        claims = [i for i, p in enumerate(self.predicates) if p(variable)]
        if len(claims) > 1:
            names = [self.optimizers[i].name for i in claims]
            raise ValueError(
                f"{self.name}: variable {key!r} is claimed by several predicates "
                f"(pairs {claims}, optimizers {names}); each variable may be "
                "claimed by one predicate only."
            )
        if claims:
            return claims[0]
        if self._has_default:
            return len(self.optimizers) - 1
        warnings.warn(
            f"{self.name}: no optimizer trains variable {key!r} (no predicate "
            "claims it and there is no default_optimizer).",
            stacklevel=2,
        )
        return None

    def build(self, variables: list[Any]) -> None:
        """Routes ``variables`` and builds each wrapped optimizer on its share."""
        if self.built:
            return
        variables = list(variables)
        shares: list[list[Any]] = [[] for _ in self.optimizers]
        routes: dict[str, int | None] = {}
        by_id: dict[int, int | None] = {}
        for variable in variables:
            index = self._route(variable)
            routes[_variable_key(variable)] = index
            by_id[id(variable)] = index
            if index is not None:
                shares[index].append(variable)
        if self._routes is None:  # routes just decided by the predicates
            unclaimed = [
                f"{index} ({self.optimizers[index].name})"
                for index in range(len(self.predicates))
                if not shares[index]
            ]
            if unclaimed:
                raise ValueError(
                    f"{self.name}: the predicate of pair(s) {', '.join(unclaimed)} "
                    f"claimed none of the {len(variables)} variables; each "
                    "predicate must claim at least one."
                )
        for index, (optimizer, share) in enumerate(
            zip(self.optimizers, shares, strict=True)
        ):
            if share:
                optimizer.build(share)
            elif index < len(self.predicates):
                log.warning(
                    "%s: optimizer %d (%s) claimed no variables.",
                    self.name,
                    index,
                    optimizer.name,
                )
        self._routes = routes
        self._route_by_id = by_id
        super().build(variables)

    def apply(self, grads: list[Any], trainable_variables: list[Any] | None = None):
        """Hands each gradient to the optimizer of its variable."""
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "Pass `trainable_variables` or build the CaseOptimizer first."
                )
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            self.build(trainable_variables)
        shares: list[tuple[list[Any], list[Any]]] = [([], []) for _ in self.optimizers]
        for grad, variable in zip(grads, trainable_variables, strict=True):
            if id(variable) not in self._route_by_id:
                raise ValueError(
                    f"{self.name} was built without variable "
                    f"{_variable_key(variable)!r}; it cannot route it."
                )
            index = self._route_by_id[id(variable)]
            if index is not None:
                shares[index][0].append(grad)
                shares[index][1].append(variable)
        for optimizer, (share_grads, share_vars) in zip(
            self.optimizers, shares, strict=True
        ):
            if any(g is not None for g in share_grads):
                optimizer.apply(share_grads, share_vars)
        self.iterations.assign_add(1)

    def finalize_variable_values(self, var_list: list[Any]) -> None:
        for index, optimizer in enumerate(self.optimizers):
            share = [v for v in var_list if self._route_by_id.get(id(v)) == index]
            if share:
                optimizer.finalize_variable_values(share)

    def save_own_variables(self, store: Any) -> None:
        # Only the counter: Keras saves each wrapped optimizer on its own.
        for i, variable in enumerate(super().variables):
            store[str(i)] = ops.convert_to_numpy(variable)

    def load_own_variables(self, store: Any) -> None:
        own = super().variables
        if len(store.keys()) != len(own):
            raise ValueError(
                f"{self.name}: expected {len(own)} saved variables. Received: "
                f"{len(store.keys())}"
            )
        for i, variable in enumerate(own):
            variable.assign(store[str(i)])

    def get_config(self) -> dict[str, Any]:
        pairs = len(self.predicates)
        return {
            "name": self.name,
            "predicates": [_serialize_predicate(p) for p in self.predicates],
            "optimizers": [
                keras.optimizers.serialize(o) for o in self.optimizers[:pairs]
            ],
            "default_optimizer": (
                keras.optimizers.serialize(self.default_optimizer)
                if self._has_default
                else None
            ),
            "routes": self.routes,
        }

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: Any = None
    ) -> CaseOptimizer:
        config = copy.deepcopy(config)  # keras.optimizers.deserialize edits it
        optimizers = [
            keras.optimizers.deserialize(c, custom_objects=custom_objects)
            for c in config["optimizers"]
        ]
        predicates = [
            _deserialize_predicate(i, c, custom_objects)
            for i, c in enumerate(config["predicates"])
        ]
        default = config.get("default_optimizer")
        return cls(
            *zip(predicates, optimizers, strict=True),
            default_optimizer=(
                keras.optimizers.deserialize(default, custom_objects=custom_objects)
                if default is not None
                else None
            ),
            name=config.get("name", "case_optimizer"),
            routes=config.get("routes"),
        )


def _check_pairs(
    pairs: tuple[Any, ...],
) -> tuple[list[Predicate], list[keras.optimizers.Optimizer]]:
    predicates: list[Predicate] = []
    optimizers: list[keras.optimizers.Optimizer] = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            error = ValueError if isinstance(pair, tuple | list) else OptimizerTypeError
            raise error(
                "Expected a (predicate, optimizer) tuple. Received: "
                f"predicate_optimizer_pairs[{i}]={pair!r}"
            )
        predicate, optimizer = pair
        if not callable(predicate):
            raise OptimizerTypeError(
                "Expected a callable predicate. Received: "
                f"predicate_optimizer_pairs[{i}][0]={predicate!r}"
            )
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise OptimizerTypeError(
                "Expected a keras.optimizers.Optimizer. Received: "
                f"predicate_optimizer_pairs[{i}][1]={optimizer!r}"
            )
        predicates.append(predicate)
        optimizers.append(optimizer)
    return predicates, optimizers
