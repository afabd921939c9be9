"""Scopes that change how quantized layers behave, and the hooks they use.

Two switches, both thread-local and restored when their ``with`` block ends
(also when it ends with an exception):

* :func:`quantized_scope` — inside ``quantized_scope(True)``, every read of a
  quantized kernel (a :class:`bnncore.quantized_variable.QuantizedVariable`):
  ``get_weights()``, ``kernel.numpy()``, every weight save (``model.save``,
  ``model.save_weights``) sees the *quantized* kernel (e.g. exactly ±1);
  outside, reads see the latent float kernels that training updates.
* :func:`metrics_scope` — quantized layers *constructed* inside
  ``metrics_scope(["flip_ratio"])`` track the flip ratio of every kernel
  quantizer (see :class:`bnncore.metrics.FlipRatio`).

The functions below the scopes are the hooks :class:`bnncore.layers.QuantizerBase`
calls; they are public so that custom quantized layers can call them too.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import numpy as np
from keras import ops

from bnncore import quantizers
from bnncore.metrics import FlipRatio

__all__ = [
    "AVAILABLE_METRICS",
    "attach_kernel_aids",
    "flip_ratio_names",
    "get_training_metrics",
    "kernel_quantizer",
    "metrics_scope",
    "quantized_scope",
    "restore_flip_ratio_names",
    "scoped_store",
    "scoped_weights",
    "should_quantize",
    "track_kernels",
    "with_scope_metrics",
]

AVAILABLE_METRICS: frozenset[str] = frozenset({"flip_ratio"})
"""Names accepted by :func:`metrics_scope` and by a quantizer's ``metrics``."""

_QUANTIZER_TAG = "_bnncore_kernel_quantizer"
_FLIP_RATIOS = "_bnncore_flip_ratios"
_FLIP_RATIO_USERS = "_bnncore_flip_ratio_users"
_RESTORED_NAMES = "_bnncore_restored_flip_ratio_names"


class _State(threading.local):
    def __init__(self) -> None:
        self.quantize = False
        self.metrics: set[str] = set()


_state = _State()


# --------------------------------------------------------------------------
# quantized_scope
# --------------------------------------------------------------------------


@contextlib.contextmanager
def quantized_scope(quantize: bool) -> Iterator[bool]:
    """Chooses whether weight reads and saves see quantized or latent kernels.

    Example:
        >>> model.save("latent.keras")             # latent float kernels
        >>> with bnncore.context.quantized_scope(True):
        ...     model.save("binary.keras")          # kernels are exactly ±1
        ...     kernel = model.layers[1].get_weights()[0]

    Only reads change: the forward pass, training and ``set_weights`` work on
    the latent kernels in both states. A quantized layer's kernels are
    :class:`bnncore.quantized_variable.QuantizedVariable` objects, so
    ``model.get_weights()``, ``layer.kernel.numpy()`` and arithmetic on the
    kernel are quantized too; ``layer.kernel.latent_variable`` always reads
    the latent values. Train outside the scope: inside it, Keras optimizers
    would read the quantized kernel.

    Args:
        quantize: ``True`` for quantized kernels, ``False`` for latent ones.

    Yields:
        ``quantize``.

    Raises:
        ValueError: if ``quantize`` is not a boolean.
    """
    if not isinstance(quantize, bool):
        raise ValueError(f"Expected a boolean. Received: quantize={quantize!r}")
    previous = _state.quantize
    _state.quantize = quantize
    try:
        yield quantize
    finally:
        _state.quantize = previous


def should_quantize() -> bool:
    """Whether the current thread is inside ``quantized_scope(True)``."""
    return _state.quantize


# --------------------------------------------------------------------------
# metrics_scope
# --------------------------------------------------------------------------


def _check_metric_names(field: str, names: Any) -> frozenset[str]:
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ValueError(
            f"Expected a list of metric names. Received: {field}={names!r}"
        )
    names = list(names)
    unknown = [name for name in names if name not in AVAILABLE_METRICS]
    if unknown:
        raise ValueError(
            f"Unknown training metric(s) {unknown} in {field}={names!r}. "
            f"Available: {sorted(AVAILABLE_METRICS)}."
        )
    return frozenset(names)


@contextlib.contextmanager
def metrics_scope(metrics: Iterable[str] = ()) -> Iterator[set[str]]:
    """Turns training metrics on for the kernel quantizers of layers built inside.

    The scope acts when a quantized layer is *constructed*: each of its kernel
    quantizers (a :class:`bnncore.quantizers.Quantizer`) gets the scope's metrics
    added to its ``metrics``, so they are part of the layer's config and come
    back when the model is loaded. Scopes nest; an inner scope adds to the outer.

    Example:
        >>> with bnncore.context.metrics_scope(["flip_ratio"]):
        ...     layer = bnncore.layers.QuantDense(8, kernel_quantizer="ste_sign")

    Args:
        metrics: Metric names; only ``"flip_ratio"`` exists.

    Yields:
        The live set of metric names active inside the scope (the one
        :func:`get_training_metrics` returns).

    Raises:
        ValueError: for a name that is not an available metric.
    """
    names = _check_metric_names("metrics", metrics)
    active = _state.metrics
    previous = set(active)
    active.update(names)
    try:
        yield active
    finally:
        active.clear()
        active.update(previous)


def get_training_metrics() -> set[str]:
    """The live set of training metrics of the current thread, as in Larq.

    It is the set :func:`metrics_scope` fills and restores; changing it turns
    metrics on or off for quantized layers constructed afterwards (on this
    thread) until the enclosing scope ends, which restores the set it found.

    Example:
        >>> bnncore.context.get_training_metrics().add("flip_ratio")
        >>> bnncore.context.get_training_metrics().clear()
    """
    return _state.metrics


def with_scope_metrics(quantizer: Any) -> Any:
    """``quantizer`` with the current :func:`metrics_scope` metrics added.

    A :class:`bnncore.quantizers.Quantizer` missing some of the scope's metrics
    is copied (from its config) with them added; the caller's instance is not
    modified. ``None``, plain functions and quantizers that already have every
    metric are returned unchanged.
    """
    scope = get_training_metrics()
    if not scope or not isinstance(quantizer, quantizers.Quantizer):
        return quantizer
    current = list(quantizer.quantizer_metrics)
    missing = sorted(scope.difference(current))
    if not missing:
        return quantizer
    # The copy keeps the name: the flip-ratio metric is named after it.
    config = {
        **quantizer.get_config(),
        "metrics": current + missing,
        "name": quantizer.name,
    }
    return type(quantizer).from_config(config)


# --------------------------------------------------------------------------
# Hooks used by the quantized layers
# --------------------------------------------------------------------------


def kernel_quantizer(variable: Any) -> Any:
    """The quantizer a quantized layer applies to ``variable``, else ``None``.

    Set when the layer is built, for each kernel in ``layer.kernel_quantizers``
    (the quantizer may itself be ``None``). Other variables return ``None``.
    """
    return getattr(variable, _QUANTIZER_TAG, None)


def attach_kernel_aids(layer: Any) -> None:
    """Build-time hook: tags the kernels and creates their flip-ratio metrics.

    Each kernel variable learns its quantizer (read back by
    :func:`kernel_quantizer`, which :meth:`bnncore.optimizers.Bop.is_binary_variable`
    uses). Each kernel whose quantizer lists ``"flip_ratio"`` gets a
    :class:`bnncore.metrics.FlipRatio` named ``flip_ratio/<quantizer name>``
    as in Larq (e.g. ``flip_ratio/ste_sign_1``: a quantizer is a Keras layer
    named after its class), tracked by the layer so that it reaches
    ``model.metrics`` and ``fit``'s logs. ``layer.metrics`` lists a layer's own.
    A quantizer instance shared by several kernels names the first one's
    metric so and each further one's ``flip_ratio/<quantizer>/<layer>``
    (``.../<kernel>`` within one layer), so that no two share a log key.

    Args:
        layer: A built layer with a ``kernel_quantizers`` mapping.
    """
    kernels = layer.kernel_quantizers
    restored = dict(getattr(layer, _RESTORED_NAMES, ()))
    flip_ratios = {}
    for attribute, quantizer in kernels.items():
        variable = getattr(layer, attribute)
        setattr(variable, _QUANTIZER_TAG, quantizer)
        if "flip_ratio" not in getattr(quantizer, "quantizer_metrics", ()):
            continue
        name = _flip_ratio_name(quantizer, layer, attribute)
        name = restored.get(attribute, name)
        binary = quantizers.get_precision(quantizer) == 1
        flip_ratios[attribute] = FlipRatio(
            values_shape=tuple(variable.shape),
            values_dtype="int8" if binary else variable.dtype,
            name=name,
        )
    if flip_ratios:
        setattr(layer, _FLIP_RATIOS, flip_ratios)


def flip_ratio_names(layer: Any) -> dict[str, str]:
    """Kernel attribute → the key its flip-ratio metric logs under.

    A built layer answers from its metrics; a layer made from a config and not
    yet built, from the names :func:`restore_flip_ratio_names` gave it. Empty
    for a layer without flip-ratio metrics. The quantized layers save these
    names in their config, so that a reloaded model logs under the same keys
    (a quantizer's automatic name is not saved, and a reloaded one gets a
    fresh one).
    """
    metrics = getattr(layer, _FLIP_RATIOS, None)
    if metrics:
        return {attribute: metric.name for attribute, metric in metrics.items()}
    return dict(getattr(layer, _RESTORED_NAMES, ()))


def restore_flip_ratio_names(layer: Any, names: Any) -> None:
    """Makes ``layer``'s flip-ratio metrics, created when it is built, log under
    ``names`` (kernel attribute → key, from :func:`flip_ratio_names` of the
    saved layer) instead of keys made from its quantizers' fresh names.

    Raises:
        ValueError: ``names`` does not map kernel attributes of the layer to
            non-empty strings.
    """
    attributes = layer.kernel_quantizers
    if not isinstance(names, dict) or not all(
        attribute in attributes and isinstance(name, str) and name
        for attribute, name in names.items()
    ):
        raise ValueError(
            "Expected flip_ratio_names to map kernel attributes "
            f"({', '.join(attributes)}) to metric names. Received: "
            f"flip_ratio_names={names!r}"
        )
    # A tuple of pairs: Keras does not track it as layer state.
    setattr(layer, _RESTORED_NAMES, tuple(sorted(names.items())))


def _flip_ratio_name(quantizer: Any, layer: Any, attribute: str) -> str:
    """``flip_ratio/<quantizer name>``, made unique among the live kernels that
    share the quantizer instance."""
    users = getattr(quantizer, _FLIP_RATIO_USERS, None)
    if users is None:
        users = weakref.WeakKeyDictionary()  # layer -> its kernel attributes
        setattr(quantizer, _FLIP_RATIO_USERS, users)
    name = f"flip_ratio/{quantizer.name}"
    own = users.setdefault(layer, set())
    if own - {attribute}:
        name = f"{name}/{layer.name}/{attribute}"
    elif any(other is not layer and kernels for other, kernels in users.items()):
        name = f"{name}/{layer.name}"
    own.add(attribute)
    return name


def track_kernels(layer: Any, quantized: dict[str, Any]) -> None:
    """Training-step hook: updates the layer's flip ratios with its kernels.

    Binary kernels are compared by sign, so a scaled sign (Bi-Real Net's
    magnitude-aware sign) counts only sign changes; other kernels are compared
    by value.

    Args:
        layer: The layer :func:`attach_kernel_aids` prepared.
        quantized: Weight attribute → quantized kernel of this step.
    """
    flip_ratios = getattr(layer, _FLIP_RATIOS, None)
    if not flip_ratios:
        return
    for attribute, metric in flip_ratios.items():
        values = quantized[attribute]
        if metric.values_dtype == "int8":
            values = ops.sign(values)
        metric.update_state(values)


def _quantized_values(layer: Any) -> dict[int, np.ndarray]:
    """``id(kernel variable)`` → quantized value, for kernels with a quantizer."""
    views = layer.quantized_weights
    return {
        id(getattr(layer, attribute)): ops.convert_to_numpy(views[attribute])
        for attribute, quantizer in layer.kernel_quantizers.items()
        if quantizer is not None
    }


def scoped_weights(layer: Any, latent: list[np.ndarray]) -> list[np.ndarray]:
    """``get_weights()`` hook: ``latent`` with quantized kernels when in scope.

    Args:
        layer: The quantized layer.
        latent: What the parent's ``get_weights()`` returned (``layer.weights``
            order).

    Returns:
        ``latent`` outside ``quantized_scope(True)``; inside, the same list with
        each quantized kernel replaced by its quantized value.
    """
    if not should_quantize():
        return latent
    replacements = _quantized_values(layer)
    return [
        replacements.get(id(variable), value)
        for variable, value in zip(layer.weights, latent, strict=True)
    ]


class _QuantizingStore(MutableMapping):
    """A weights store that writes quantized values for the layer's kernels."""

    def __init__(self, store: Any, replacements: dict[int, np.ndarray]) -> None:
        self._store = store
        self._replacements = replacements
        self.replaced: set[int] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        if id(value) in self._replacements:
            self.replaced.add(id(value))
            value = self._replacements[id(value)]
        self._store[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._store.keys())

    def __len__(self) -> int:
        return len(self._store.keys())

    def keys(self) -> Any:
        return self._store.keys()


def scoped_store(layer: Any, store: Any, save: Callable[[Any], None]) -> None:
    """``save_own_variables()`` hook: saves quantized kernels when in scope.

    Args:
        layer: The quantized layer.
        store: The weights store Keras passes to ``save_own_variables``.
        save: The parent's ``save_own_variables`` (bound to ``layer``).

    Raises:
        RuntimeError: in ``quantized_scope(True)``, if the parent wrote some
            quantized kernel as something other than its variable (so the
            quantized value could not be substituted).
    """
    if not should_quantize() or not layer.built:
        save(store)
        return
    replacements = _quantized_values(layer)
    proxy = _QuantizingStore(store, replacements)
    save(proxy)
    missing = set(replacements) - proxy.replaced
    if missing:
        names = [
            attribute
            for attribute in layer.kernel_quantizers
            if id(getattr(layer, attribute)) in missing
        ]
        raise RuntimeError(
            f"{layer.name}: could not save quantized values for {names} inside "
            "quantized_scope(True): the layer saves them in a form other than "
            "the variable itself (e.g. with LoRA enabled)."
        )
