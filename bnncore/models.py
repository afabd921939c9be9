"""Model-level tools: Larq's ``summary`` and ``ModelProfile``, and bnncore's profile.

Two views of the same counts:

* :func:`summary` and :class:`ModelProfile` are Larq's: the text Larq prints
  and the objects it prints from, with Larq's rules (BatchNorm's beta/gamma
  folded out of the totals, memory / float-32 as the "compression ratio").
  A Larq user's snapshot of ``lq.models.summary(model)`` still matches.
* :func:`profile` is bnncore's richer report: Keras's parameter counts,
  inference parameters, the compression factor, BOPs, activation memory,
  shared layers, as frozen data that :func:`bnncore.analysis.render` prints
  as text, JSON, CSV, Markdown or HTML.

Example:
    >>> import bnncore as lq
    >>> lq.models.summary(model)                  # Larq's text
    >>> lq.models.ModelProfile(model).op_count("mac", 1)
    >>> report = lq.models.profile(model)         # bnncore's numbers, as data
    >>> report.totals.memory_bytes
    >>> lq.analysis.render(report, format="markdown")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from bnncore.analysis import records
from bnncore.analysis.counting import check_built, profile_model
from bnncore.analysis.larq_profile import (
    LayerProfile,
    ModelProfile,
    OperationProfile,
    WeightProfile,
)
from bnncore.analysis.larq_text import (
    bitsize_as_str,
    number_as_readable_str,
    summary_tables,
)

__all__ = [
    "LayerProfile",
    "ModelProfile",
    "OperationProfile",
    "WeightProfile",
    "profile",
    "summary",
]

# Larq's private helpers, under Larq's names (Larq's own tests call them).
_bitsize_as_str = bitsize_as_str
_number_as_readable_str = number_as_readable_str


def profile(model: keras.Model) -> records.ModelProfile:
    """Profiles a model: per-layer bit widths, parameters, memory and MACs.

    bnncore's report (not Larq's :class:`ModelProfile`). See
    ``docs/profile.md`` for the counting rules and the JSON schema of
    ``profile(model).to_dict()``.

    Args:
        model: A built ``keras.Model`` (Sequential, functional, nested or
            subclassed).

    Returns:
        A frozen :class:`bnncore.analysis.ModelProfile`.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if the model or one of its layers is not built.
    """
    check_built(model)
    return profile_model(model)


def summary(
    model: keras.Model,
    print_fn: Callable[[str], Any] | None = None,
    include_macs: bool = True,
) -> None:
    """Prints Larq's summary of a model: its layer table, then its totals.

    The text is Larq's, character for character: per layer the input
    precision, output shape, weights by bit width, memory in kB (8·1024 bits)
    and MACs by precision; then total, trainable and non-trainable weights,
    model size (also with float weights at 8 bits), float-32 equivalent, the
    ratio of memory to float-32 memory, the number of MACs and the ratios of
    binarized and ternarized MACs. BatchNormalization's beta and gamma are
    left out, as Larq folds them. For bnncore's richer report, use
    :func:`profile` and :func:`bnncore.analysis.render`.

    Args:
        model: A built ``keras.Model``.
        print_fn: Called once per table (default: ``print``).
        include_macs: Whether the totals show the MAC lines (the layer table
            always has the MAC columns, as in Larq).

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if the model or one of its layers is not built.
    """
    printer = print_fn or print
    for table in summary_tables(ModelProfile(model), include_macs=include_macs):
        printer(table)
