"""Compare two model profiles: total deltas and per-layer deltas by layer name.

``compare(a, b)`` reads two :class:`ModelProfile` s (or builds them from two
Keras models) and returns a frozen :class:`Comparison`. Layers are matched by
their path in :meth:`ModelProfile.walk` (``tower/quant_dense`` for a nested
layer); layers present in only one model are listed apart. Every delta is
``b - a``. As with the profile, nothing is recounted: the numbers are the two
profiles' own.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bnncore.analysis.records import LayerProfile, ModelProfile, Totals

__all__ = ["COMPARE_FORMATS", "Change", "Comparison", "LayerComparison", "compare"]

COMPARE_SCHEMA_VERSION = 1

_TOTAL_KEYS = (
    "memory_bytes",
    "memory_bits",
    "float32_equivalent_bytes",
    "compression",
    "params",
    "inference_params",
    "macs",
    "binary_mac_ratio",
    "bops",
    "peak_activation_bytes",
)
_LAYER_KEYS = ("params", "inference_params", "memory_bits", "macs", "bops")


@dataclass(frozen=True)
class Change:
    """One number in model ``a`` and in model ``b``.

    Attributes:
        key: What it is (``"memory_bytes"``, ``"macs_by_bits.1"``).
        a: Its value in ``a`` (``None`` when undefined, e.g. no MACs).
        b: Its value in ``b``.
    """

    key: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        """``b - a``, or ``None`` when either is undefined."""
        if self.a is None or self.b is None:
            return None
        return self.b - self.a

    def to_dict(self) -> dict[str, Any]:
        """``{"a": ..., "b": ..., "delta": ...}``."""
        return {"a": self.a, "b": self.b, "delta": self.delta}


@dataclass(frozen=True)
class LayerComparison:
    """A layer present in both models (matched by path)."""

    path: str
    type_a: str
    type_b: str
    changes: tuple[Change, ...]

    def to_dict(self) -> dict[str, Any]:
        """The layer's entry in the JSON document."""
        return {
            "path": self.path,
            "type_a": self.type_a,
            "type_b": self.type_b,
            "changes": {c.key: c.to_dict() for c in self.changes},
        }


@dataclass(frozen=True)
class Comparison:
    """Model ``b`` against model ``a``: totals, matched layers, unmatched layers."""

    a_name: str
    b_name: str
    totals: tuple[Change, ...]
    layers: tuple[LayerComparison, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]

    def total(self, key: str) -> Change:
        """The total ``key`` (``"memory_bytes"``, ``"params_by_bits.1"``).

        Raises:
            KeyError: no such total.
        """
        for change in self.totals:
            if change.key == key:
                return change
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``schema_version`` 1)."""
        return {
            "schema_version": COMPARE_SCHEMA_VERSION,
            "a": {"name": self.a_name},
            "b": {"name": self.b_name},
            "totals": {c.key: c.to_dict() for c in self.totals},
            "layers": [layer.to_dict() for layer in self.layers],
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
        }


def _by_bits(prefix: str, a: Mapping[int, int], b: Mapping[int, int]) -> list[Change]:
    return [
        Change(f"{prefix}.{bits}", a.get(bits, 0), b.get(bits, 0))
        for bits in sorted(set(a) | set(b))
    ]


def _totals(a: Totals, b: Totals) -> tuple[Change, ...]:
    changes = [Change(k, getattr(a, k), getattr(b, k)) for k in _TOTAL_KEYS]
    changes += _by_bits("params_by_bits", a.params_by_bits, b.params_by_bits)
    changes += _by_bits(
        "inference_params_by_bits",
        a.inference_params_by_bits,
        b.inference_params_by_bits,
    )
    changes += _by_bits("macs_by_bits", a.macs_by_bits, b.macs_by_bits)
    return tuple(changes)


def _layer(path: str, a: LayerProfile, b: LayerProfile) -> LayerComparison:
    changes = [Change(k, getattr(a, k), getattr(b, k)) for k in _LAYER_KEYS]
    changes += _by_bits("params_by_bits", a.params_by_bits, b.params_by_bits)
    changes += _by_bits("macs_by_bits", a.macs_by_bits, b.macs_by_bits)
    return LayerComparison(path, a.type, b.type, tuple(changes))


def _as_profile(value: Any, argument: str) -> ModelProfile:
    if isinstance(value, ModelProfile):
        return value
    import keras

    if isinstance(value, keras.Model):
        from bnncore.analysis.counting import profile_model

        return profile_model(value)
    raise TypeError(
        f"Expected a ModelProfile or a keras.Model. Received: {argument} of type "
        f"{type(value).__name__}"
    )


def compare(a: Any, b: Any) -> Comparison:
    """Compares model ``b`` with model ``a`` (deltas are ``b - a``).

    Args:
        a: A :class:`ModelProfile` or a built ``keras.Model``.
        b: The same, for the other model.

    Returns:
        A :class:`Comparison`.

    Raises:
        TypeError: an argument is neither a profile nor a Keras model.

    Example:
        >>> c = lq.analysis.compare(lq.zoo.QuickNetSmall(), lq.zoo.QuickNet())
        >>> c.total("memory_bytes").delta
    """
    pa, pb = _as_profile(a, "a"), _as_profile(b, "b")
    rows_a: dict[str, LayerProfile] = {}
    for _, path, row in pa.walk():
        rows_a.setdefault(path, row)
    rows_b: dict[str, LayerProfile] = {}
    for _, path, row in pb.walk():
        rows_b.setdefault(path, row)
    matched = [_layer(p, rows_a[p], rows_b[p]) for p in rows_a if p in rows_b]
    return Comparison(
        a_name=pa.name,
        b_name=pb.name,
        totals=_totals(pa.totals, pb.totals),
        layers=tuple(matched),
        only_in_a=tuple(p for p in rows_a if p not in rows_b),
        only_in_b=tuple(p for p in rows_b if p not in rows_a),
    )


# ----------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4f}"
    return f"{int(value):,}"


def _signed(value: float | None) -> str:
    if value is None:
        return "n/a"
    text = _fmt(abs(value))
    return f"+{text}" if value > 0 else (f"-{text}" if value < 0 else "0")


def to_text(comparison: Comparison) -> str:
    """Aligned text: totals, changed layers, unmatched layers."""
    c = comparison
    lines = [f"Compare: a = {c.a_name}, b = {c.b_name} (delta = b - a)", ""]
    width = max(len(t.key) for t in c.totals)
    for t in c.totals:
        lines.append(
            f"  {t.key.ljust(width)}  {_fmt(t.a):>16}  {_fmt(t.b):>16}  "
            f"{_signed(t.delta):>16}"
        )
    changed = [
        layer
        for layer in c.layers
        if any(ch.delta for ch in layer.changes) or layer.type_a != layer.type_b
    ]
    lines += ["", f"Changed layers ({len(changed)} of {len(c.layers)} matched):"]
    for layer in changed:
        parts = [f"{ch.key} {_signed(ch.delta)}" for ch in layer.changes if ch.delta]
        kind = (
            layer.type_a
            if layer.type_a == layer.type_b
            else f"{layer.type_a} -> {layer.type_b}"
        )
        lines.append(f"  {layer.path} ({kind}): {', '.join(parts) or 'type only'}")
    lines += ["", f"Only in a: {', '.join(c.only_in_a) or '-'}"]
    lines += [f"Only in b: {', '.join(c.only_in_b) or '-'}"]
    return "\n".join(lines) + "\n"


def to_json(comparison: Comparison) -> str:
    """The JSON document, indented."""
    return json.dumps(comparison.to_dict(), indent=2) + "\n"


def to_html(comparison: Comparison) -> str:
    """A self-contained page: totals and per-layer tables (values escaped)."""
    from bnncore.analysis.html_report import CSS

    c = comparison
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(c.a_name)} vs {esc(c.b_name)}: bnncore comparison</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{esc(c.b_name)} compared with {esc(c.a_name)}</h1>",
        "<p>delta = b − a</p><h2>Totals</h2>",
        '<table class="totals"><thead><tr><th>Metric</th>'
        f"<th>a: {esc(c.a_name)}</th><th>b: {esc(c.b_name)}</th><th>Delta</th>"
        "</tr></thead><tbody>",
    ]
    out += [
        f'<tr data-key="{esc(t.key)}"><td>{esc(t.key)}</td><td>{_fmt(t.a)}</td>'
        f"<td>{_fmt(t.b)}</td><td>{_signed(t.delta)}</td></tr>"
        for t in c.totals
    ]
    out.append("</tbody></table><h2>Layers in both models</h2>")
    out.append(
        '<div class="scroll"><table class="layers"><thead><tr><th>Layer</th>'
        "<th>Type</th>"
        + "".join(f"<th>Δ {esc(k)}</th>" for k in _LAYER_KEYS)
        + "</tr></thead><tbody>"
    )
    for layer in c.layers:
        kind = (
            layer.type_a
            if layer.type_a == layer.type_b
            else f"{layer.type_a} → {layer.type_b}"
        )
        deltas = {ch.key: ch.delta for ch in layer.changes}
        out.append(
            f'<tr data-path="{esc(layer.path)}"><td>{esc(layer.path)}</td>'
            f"<td>{esc(kind)}</td>"
            + "".join(f"<td>{_signed(deltas[k])}</td>" for k in _LAYER_KEYS)
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    for label, names in (("Only in a", c.only_in_a), ("Only in b", c.only_in_b)):
        items = "".join(f"<li>{esc(n)}</li>" for n in names) or "<li>none</li>"
        out.append(f"<h2>{label}</h2><ul>{items}</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


COMPARE_FORMATS = {"text": to_text, "json": to_json, "html": to_html}
"""Format name → renderer of a :class:`Comparison`."""


def render_comparison(comparison: Comparison, format: str = "text") -> str:
    """Formats a comparison as ``"text"``, ``"json"`` or ``"html"``.

    Raises:
        ValueError: unknown format.
    """
    renderer = COMPARE_FORMATS.get(format)
    if renderer is None:
        raise ValueError(
            f"Unknown comparison format. Received: format={format!r}; allowed: "
            f"{', '.join(repr(f) for f in COMPARE_FORMATS)}."
        )
    return renderer(comparison)
