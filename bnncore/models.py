"""Model-level tools: the profile of a model and its printed summary.

Example:
    >>> import bnncore as lq
    >>> lq.models.summary(model)                  # Larq's entry point
    >>> report = lq.models.profile(model)         # the numbers, as data
    >>> report.totals.memory_bytes
    >>> lq.analysis.render(report, format="markdown")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from bnncore.analysis.counting import profile_model
from bnncore.analysis.records import ModelProfile
from bnncore.analysis.render import to_text

__all__ = ["profile", "summary"]


def _check_built(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected a keras.Model (Sequential, functional or subclassed). "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    how = (
        "Build it first: call it on a batch of inputs (model(x)), call "
        "model.build(input_shape), or start it with keras.Input(shape)."
    )
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so its weights and shapes are "
            f"unknown. {how}"
        )
    for layer in model.layers:
        if not layer.built:
            raise ValueError(
                f"Layer '{layer.name}' of model '{model.name}' is not built, so its "
                f"weights are unknown. {how}"
            )


def profile(model: keras.Model) -> ModelProfile:
    """Profiles a model: per-layer bit widths, parameters, memory and MACs.

    See ``docs/profile.md`` for the counting rules and the JSON schema of
    ``profile(model).to_dict()``.

    Args:
        model: A built ``keras.Model`` (Sequential, functional, nested or
            subclassed).

    Returns:
        A frozen :class:`~bnncore.analysis.ModelProfile`.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if the model or one of its layers is not built.
    """
    _check_built(model)
    return profile_model(model)


def summary(
    model: keras.Model,
    print_fn: Callable[[str], Any] | None = None,
    include_macs: bool = True,
) -> None:
    """Prints the text report of :func:`profile` (Larq's ``summary`` signature).

    The report has one row per layer (nested layers indented): input precision,
    output shape, parameters by bit width, memory in KiB and MACs by precision;
    then the totals: parameter counts, model size, float-32 equivalent,
    compression, MACs, binarized MAC ratio, BOPs and peak activation memory.

    Args:
        model: A built ``keras.Model``.
        print_fn: Called once with the whole report (default: ``print``).
        include_macs: Whether to show MAC counts.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if the model is not built.
    """
    text = to_text(profile(model), include_macs=include_macs)
    (print_fn or print)(text.rstrip("\n"))
