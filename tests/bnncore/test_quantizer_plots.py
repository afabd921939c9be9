"""docs/quantizers.md and its pictures agree with the quantizers' code.

The sampled values are regenerated from the code (``tf.GradientTape``) and
compared with ``docs/img/quantizers/data.json``; the SVG polylines are read
back and compared with the same values; a few curves are also checked against
NumPy formulas of the documented rules.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from bnncore import quantizers

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "plot_quantizers", ROOT / "scripts" / "plot_quantizers.py"
)
assert _spec and _spec.loader
plots = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = plots  # its dataclasses look their module up
_spec.loader.exec_module(plots)

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def stored():
    return json.loads(plots.DATA_FILE.read_text())


@pytest.fixture(scope="module")
def regenerated():
    return plots.generate()


def test_every_builtin_quantizer_has_its_parameters_varied():
    assert set(plots.builtin_classes()) == set(plots.VARIANTS)
    for name, variants in plots.VARIANTS.items():
        signature = inspect.signature(getattr(quantizers, name).__init__)
        for param in signature.parameters.values():
            if param.name in ("self", "metrics") or param.kind is param.VAR_KEYWORD:
                continue
            values = [v.config.get(param.name, param.default) for v in variants]
            if param.default is param.empty:
                assert all(v is not param.empty for v in values), (name, param.name)
            else:  # the default, and at least one other value
                assert values[0] == param.default, (name, param.name)
                assert any(v != param.default for v in values), (name, param.name)


def test_stored_data_is_what_the_code_computes(stored, regenerated):
    assert stored["x"] == regenerated["x"]
    assert list(stored["quantizers"]) == list(regenerated["quantizers"])
    for name, curves in regenerated["quantizers"].items():
        old = stored["quantizers"][name]
        assert [c["config"] for c in old] == [c["config"] for c in curves], name
        for before, now in zip(old, curves, strict=True):
            for key in ("forward", "gradient"):
                np.testing.assert_allclose(
                    before[key], now[key], atol=1e-5, err_msg=f"{name} {key}"
                )


def _read_polylines(path: Path) -> dict[str, list[np.ndarray]]:
    """Panel → the y values of each polyline, mapped back through the axes."""
    out = {}
    for panel in ET.parse(path).getroot().iter(f"{SVG}g"):
        top, height = float(panel.get("data-top")), float(panel.get("data-height"))
        ymin, ymax = float(panel.get("data-ymin")), float(panel.get("data-ymax"))
        left, width = float(panel.get("data-left")), float(panel.get("data-width"))
        xmin, xmax = float(panel.get("data-xmin")), float(panel.get("data-xmax"))
        series = []
        for line in panel.iter(f"{SVG}polyline"):
            pts = np.array(
                [[float(v) for v in p.split(",")] for p in line.get("points").split()]
            )
            xs = xmin + (pts[:, 0] - left) / width * (xmax - xmin)
            ys = ymin + (top + height - pts[:, 1]) / height * (ymax - ymin)
            # Points have 2 decimals: half a hundredth of a pixel on each axis.
            step = (0.006 * (xmax - xmin) / width, 0.006 * (ymax - ymin) / height)
            series.append((xs, ys, step))
        out[panel.get("data-panel")] = series
    return out


@pytest.mark.parametrize("name", list(plots.VARIANTS), ids=list(plots.VARIANTS))
def test_the_pictures_draw_the_stored_data(stored, name):
    lines = _read_polylines(plots.IMG_DIR / f"{name}.svg")
    curves = stored["quantizers"][name]
    for panel, key in (("forward", "forward"), ("pseudo-gradient", "gradient")):
        assert len(lines[panel]) == len(curves)
        for (xs, ys, (dx, dy)), curve in zip(lines[panel], curves, strict=True):
            np.testing.assert_allclose(xs, stored["x"], atol=dx)
            np.testing.assert_allclose(ys, curve[key], atol=dy, err_msg=panel)


def test_markdown_is_generated_from_the_data(stored):
    assert plots.DOC_FILE.read_text() == plots.markdown(stored)
    for name in plots.VARIANTS:
        assert f"](img/quantizers/{name}.svg)" in plots.DOC_FILE.read_text()


def _curve(stored, name, label_start):
    for curve in stored["quantizers"][name]:
        if curve["label"].startswith(label_start):
            return np.array(curve["forward"]), np.array(curve["gradient"])
    raise KeyError(label_start)


@pytest.mark.parametrize(
    ("name", "label", "forward", "gradient"),
    [
        ("SteSign", "clip_value=1.0", lambda x: np.where(x < 0, -1, 1),
         lambda x: np.abs(x) <= 1),
        ("SteSign", "clip_value=0.5", lambda x: np.where(x < 0, -1, 1),
         lambda x: np.abs(x) <= 0.5),
        ("SteHeaviside", "clip_value=1.0", lambda x: np.where(x > 0, 1, 0),
         lambda x: np.abs(x) <= 1),
        ("ApproxSign", "no", lambda x: np.where(x < 0, -1, 1),
         lambda x: np.where(np.abs(x) <= 1, 2 - 2 * np.abs(x), 0)),
        ("SteTern", "threshold_value=0.5",
         lambda x: np.where(x >= 0.5, 1, np.where(x <= -0.5, -1, 0)),
         lambda x: np.abs(x) <= 1),
        ("DoReFa", "k_bit=4", lambda x: np.round(np.clip(x, 0, 1) * 15) / 15,
         lambda x: (x >= 0) & (x <= 1)),
        ("NoOp", "precision", lambda x: x, lambda x: np.ones_like(x)),
    ],
    ids=["ste-sign", "ste-sign-clip", "heaviside", "approx-sign", "ste-tern",
         "dorefa-4bit", "noop"],
)  # fmt: skip
def test_curves_follow_the_documented_rules(stored, name, label, forward, gradient):
    x = np.array(stored["x"])
    got_forward, got_gradient = _curve(stored, name, label)
    np.testing.assert_allclose(got_forward, forward(x), atol=1e-6)
    np.testing.assert_allclose(got_gradient, gradient(x).astype(float), atol=1e-6)
