"""Plots every built-in quantizer: its forward function and its pseudo-gradient.

Run from the repository root::

    python scripts/plot_quantizers.py          # rewrite the SVGs, data and doc
    python scripts/plot_quantizers.py --check  # exit 1 if they are stale

The curves come from the code itself: each quantizer is called on a grid of
:data:`POINTS` values in [-2, 2] (a column, shape ``(POINTS, 1)``: a kernel with
one output channel, so quantizers that scale by ``mean|x|`` use the grid's
mean) and differentiated with ``tf.GradientTape`` with an upstream gradient of
ones. The sampled values go to ``docs/img/quantizers/data.json``; the pictures
are SVG polylines of the same values, written here without a plotting library.
``tests/bnncore/test_quantizer_plots.py`` regenerates the data and compares it
with the JSON and with the polylines read back from the SVG files.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMG_DIR = ROOT / "docs" / "img" / "quantizers"
DATA_FILE = IMG_DIR / "data.json"
DOC_FILE = ROOT / "docs" / "quantizers.md"

LOW, HIGH, POINTS = -2.0, 2.0, 161
DECIMALS = 6


@dataclass(frozen=True)
class Variant:
    """One curve: a quantizer's constructor arguments and the legend's label."""

    label: str
    config: dict[str, Any]


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "SteSign": (
        Variant("clip_value=1.0 (default)", {}),
        Variant("clip_value=0.5", {"clip_value": 0.5}),
    ),
    "ApproxSign": (Variant("no parameters", {}),),
    "SwishSign": (
        Variant("beta=5.0 (default)", {}),
        Variant("beta=2.0", {"beta": 2.0}),
    ),
    "SteHeaviside": (
        Variant("clip_value=1.0 (default)", {}),
        Variant("clip_value=0.5", {"clip_value": 0.5}),
    ),
    "MagnitudeAwareSign": (
        Variant("clip_value=1.0 (default)", {}),
        Variant("clip_value=0.5", {"clip_value": 0.5}),
    ),
    "SteTern": (
        Variant("threshold_value=0.05 (default)", {}),
        Variant("threshold_value=0.5", {"threshold_value": 0.5}),
        Variant("ternary_weight_networks=True", {"ternary_weight_networks": True}),
        Variant("clip_value=0.5", {"clip_value": 0.5}),
    ),
    "DoReFa": (
        Variant("k_bit=2, mode='activations' (default)", {}),
        Variant("k_bit=4", {"k_bit": 4}),
        Variant("k_bit=2, mode='weights'", {"mode": "weights"}),
    ),
    "NoOp": (Variant("precision=1 (required; any precision)", {"precision": 1}),),
}
"""Every built-in quantizer class with its defaults and other values."""

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def builtin_classes() -> list[str]:
    """Names of the quantizer classes registered in ``bnncore.quantizers``."""
    from bnncore import quantizers

    # Every registered name that is a class of the module (aliases included).
    classes = {
        getattr(quantizers, n)
        for n in quantizers.names()
        if isinstance(getattr(quantizers, n, None), type)
    }
    return sorted(c.__name__ for c in classes)


def grid() -> np.ndarray:
    """The sample points (float32)."""
    return np.linspace(LOW, HIGH, POINTS, dtype=np.float32)


def sample(name: str, config: dict[str, Any]) -> dict[str, list[float]]:
    """Forward values and pseudo-gradient of one quantizer on the grid."""
    import tensorflow as tf

    from bnncore import quantizers

    quantizer = getattr(quantizers, name)(**config)
    x = tf.constant(grid().reshape(-1, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = quantizer(x)
    dy = tape.gradient(y, x, output_gradients=tf.ones_like(y))
    return {
        "forward": [round(float(v), DECIMALS) for v in np.ravel(y)],
        "gradient": [round(float(v), DECIMALS) for v in np.ravel(dy)],
    }


def generate() -> dict[str, Any]:
    """The data of every plot (what ``data.json`` holds)."""
    return {
        "grid": {"low": LOW, "high": HIGH, "points": POINTS},
        "x": [round(float(v), DECIMALS) for v in grid()],
        "quantizers": {
            name: [
                {"label": v.label, "config": v.config, **sample(name, v.config)}
                for v in variants
            ]
            for name, variants in VARIANTS.items()
        },
    }


# ----------------------------------------------------------------------------
# SVG
# ----------------------------------------------------------------------------

PANEL_W, PANEL_H = 300, 180
MARGIN_L, MARGIN_T, GAP = 40, 28, 70
WIDTH = MARGIN_L + 2 * PANEL_W + GAP + 20


def _y_range(series: list[list[float]]) -> tuple[float, float]:
    low = min(min(s) for s in series)
    high = max(max(s) for s in series)
    low, high = min(low, 0.0), max(high, 0.0)
    pad = 0.1 * (high - low or 1.0)
    return round(low - pad, 3), round(high + pad, 3)


def _px(value: float, low: float, high: float, size: float) -> float:
    return size * (value - low) / (high - low)


def _panel(
    title: str, left: float, xs: list[float], series: list[list[float]]
) -> list[str]:
    ymin, ymax = _y_range(series)
    out = [
        f'<g class="panel" data-panel="{title}" data-left="{left}" '
        f'data-top="{MARGIN_T}" data-width="{PANEL_W}" data-height="{PANEL_H}" '
        f'data-xmin="{LOW}" data-xmax="{HIGH}" data-ymin="{ymin}" data-ymax="{ymax}">',
        f'<text x="{left + PANEL_W / 2}" y="{MARGIN_T - 10}" '
        f'text-anchor="middle" font-weight="bold">{title}</text>',
        f'<rect x="{left}" y="{MARGIN_T}" width="{PANEL_W}" height="{PANEL_H}" '
        'fill="none" stroke="#999"/>',
    ]

    def sx(v: float) -> float:
        return left + _px(v, LOW, HIGH, PANEL_W)

    def sy(v: float) -> float:
        return MARGIN_T + PANEL_H - _px(v, ymin, ymax, PANEL_H)

    zero_y = sy(0.0)
    out.append(
        f'<line x1="{left}" y1="{zero_y:.2f}" x2="{left + PANEL_W}" '
        f'y2="{zero_y:.2f}" stroke="#ccc"/>'
    )
    for tick in (-2, -1, 0, 1, 2):
        out.append(
            f'<line x1="{sx(tick):.2f}" y1="{MARGIN_T}" x2="{sx(tick):.2f}" '
            f'y2="{MARGIN_T + PANEL_H}" stroke="#eee"/>'
            f'<text x="{sx(tick):.2f}" y="{MARGIN_T + PANEL_H + 14}" '
            f'text-anchor="middle">{tick}</text>'
        )
    for value in (ymin, 0.0, ymax):
        out.append(
            f'<text x="{left - 4}" y="{sy(value) + 4:.2f}" '
            f'text-anchor="end">{value:g}</text>'
        )
    for i, ys in enumerate(series):
        points = " ".join(
            f"{sx(x):.2f},{sy(y):.2f}" for x, y in zip(xs, ys, strict=True)
        )
        out.append(
            f'<polyline class="series" data-series="{i}" fill="none" '
            f'stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.6" '
            f'stroke-dasharray="{"" if i == 0 else f"{2 + 2 * i},{i + 1}"}" '
            f'points="{points}"/>'
        )
    out.append("</g>")
    return out


def svg(name: str, data: dict[str, Any]) -> str:
    """The picture of one quantizer: forward (left), pseudo-gradient (right)."""
    variants = data["quantizers"][name]
    xs = data["x"]
    legend_top = MARGIN_T + PANEL_H + 30
    height = legend_top + 18 * len(variants) + 6
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11" '
        f'role="img" aria-label="{name}: forward function and pseudo-gradient">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        *_panel("forward", MARGIN_L, xs, [v["forward"] for v in variants]),
        *_panel(
            "pseudo-gradient",
            MARGIN_L + PANEL_W + GAP,
            xs,
            [v["gradient"] for v in variants],
        ),
    ]
    for i, variant in enumerate(variants):
        y = legend_top + 18 * i
        dash = "" if i == 0 else f"{2 + 2 * i},{i + 1}"
        out.append(
            f'<line x1="{MARGIN_L}" y1="{y}" x2="{MARGIN_L + 30}" y2="{y}" '
            f'stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/><text x="{MARGIN_L + 36}" y="{y + 4}">'
            f"{html.escape(name)}({html.escape(variant['label'])})</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------

INTRO = """# Quantizers: forward functions and pseudo-gradients

Every built-in quantizer of `bnncore.quantizers`, drawn from the code: each is
called on {points} points in [{low:g}, {high:g}] (a column of shape `({points}, 1)`,
like a kernel with one output channel, so a quantizer that scales by `mean|x|`
uses the mean over the grid) and differentiated with `tf.GradientTape` with an
upstream gradient of ones. Left: the forward function; right: the
pseudo-gradient used in training. Each quantizer is drawn at its defaults and
at other values of its parameters (dashed).

The pictures and `img/quantizers/data.json` (the sampled values) are generated
by `python scripts/plot_quantizers.py`; a test regenerates the values and fails
when the code and the pictures disagree.

Discontinuities are drawn as steep segments between neighbouring samples
(the grid step is {step:g}).
"""


def _docstring(name: str) -> str:
    from bnncore import quantizers

    doc = getattr(quantizers, name).__doc__ or ""
    lines = doc.strip().splitlines()
    body = []
    for line in lines[1:]:
        if line.strip().startswith("Args:"):
            break
        body.append(line.strip())
    text = " ".join(part for part in body if part).strip()
    return "\n\n".join(_rst_to_markdown(t) for t in (lines[0].strip(), text) if t)


def _rst_to_markdown(text: str) -> str:
    text = re.sub(r":math:`([^`]*)`", r"$\1$", text)
    text = re.sub(r":(?:func|class|mod):`~?([^`]*)`", r"`\1`", text)
    return re.sub(r"``([^`]*)``", r"`\1`", text)


def markdown(data: dict[str, Any]) -> str:
    """``docs/quantizers.md``."""
    step = (HIGH - LOW) / (POINTS - 1)
    parts = [INTRO.format(points=POINTS, low=LOW, high=HIGH, step=step)]
    for name, variants in data["quantizers"].items():
        parts.append(f"## {name}\n")
        parts.append(_docstring(name) + "\n")
        parts.append("| curve | arguments |\n|---|---|")
        for variant in variants:
            args = ", ".join(f"{k}={v!r}" for k, v in variant["config"].items())
            parts.append(f"| {variant['label']} | `{name}({args})` |")
        parts.append(
            f"\n![{name}: forward function and pseudo-gradient]"
            f"(img/quantizers/{name}.svg)\n"
        )
    return "\n".join(parts)


def data_json(data: dict[str, Any]) -> str:
    """``data.json``: one line per curve, so that a diff shows which changed."""

    def dump(value: Any) -> str:
        return json.dumps(value, separators=(", ", ": "))

    lines = ["{", f' "grid": {dump(data["grid"])},', f' "x": {dump(data["x"])},']
    lines.append(' "quantizers": {')
    names = list(data["quantizers"])
    for i, name in enumerate(names):
        curves = data["quantizers"][name]
        lines.append(f"  {dump(name)}: [")
        lines += [
            f"   {dump(c)}{',' if j < len(curves) - 1 else ''}"
            for j, c in enumerate(curves)
        ]
        lines.append(f"  ]{',' if i < len(names) - 1 else ''}")
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def files(data: dict[str, Any]) -> dict[Path, str]:
    """Every generated file and its text."""
    out = {DATA_FILE: data_json(data), DOC_FILE: markdown(data)}
    for name in data["quantizers"]:
        out[IMG_DIR / f"{name}.svg"] = svg(name, data)
    return out


def main(argv: list[str] | None = None) -> int:
    """Writes (or with ``--check``, compares) the generated files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if stale")
    args = parser.parse_args(argv)
    missing = sorted(set(builtin_classes()) - set(VARIANTS))
    if missing:
        print(f"no plot variants for: {', '.join(missing)}", file=sys.stderr)
        return 1
    generated = files(generate())
    if args.check:
        stale = [
            p
            for p, text in generated.items()
            if not p.is_file() or p.read_text() != text
        ]
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in generated.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
