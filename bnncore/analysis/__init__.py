"""Model analysis: the profile of a Keras model (bit widths, memory, MACs).

Use :func:`bnncore.models.profile` to build a :class:`ModelProfile` and
:func:`render` to format it as text, JSON, CSV, Markdown or HTML.
"""

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
    "LayerProfile",
    "ModelProfile",
    "Totals",
    "WeightProfile",
    "profile_model",
    "render",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
    "to_text",
]
