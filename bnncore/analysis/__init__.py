"""Model analysis: the profile of a Keras model (bit widths, memory, MACs).

Use :func:`bnncore.models.profile` to build a :class:`ModelProfile` and
:func:`render` to format it as text, JSON, CSV, Markdown or HTML.
:func:`compare` compares two models (total and per-layer deltas).

Larq's view of the same records, behind ``bnncore.models.summary`` and
``bnncore.models.ModelProfile``, is in :mod:`bnncore.analysis.larq_profile`
(Larq's counting rules) and :mod:`bnncore.analysis.larq_text` (Larq's tables).
"""

from bnncore.analysis.compare import Comparison, compare, render_comparison
from bnncore.analysis.counting import profile_model
from bnncore.analysis.records import (
    SCHEMA_VERSION,
    LayerProfile,
    ModelProfile,
    Totals,
    WeightProfile,
)
from bnncore.analysis.render import (
    FORMATS,
    render,
    to_csv,
    to_html,
    to_json,
    to_markdown,
    to_text,
)

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "Comparison",
    "LayerProfile",
    "ModelProfile",
    "Totals",
    "WeightProfile",
    "compare",
    "profile_model",
    "render",
    "render_comparison",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
    "to_text",
]
