"""The HTML page: parsed back, its charts and tables agree with hand counts.

The page is parsed with :mod:`html.parser` (elements and attributes) and its
SVG charts with :mod:`xml.etree` (they are well-formed XML). Expected numbers
are written out from the models' shapes, not read from the code under test.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import keras
import pytest

from bnncore import analysis, models, quantizers
from bnncore import layers as bl
from bnncore.analysis import html_report


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.body_rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._in_tbody = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "tbody":
            self._in_tbody = True
        if self._in_tbody and tag == "tr":
            self.body_rows.append([])
        if self._in_tbody and tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_tbody = False
        if tag == "td" and self._cell is not None:
            self.body_rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    parser.close()
    return parser


def _svg(page: str, chart_id: str) -> ET.Element:
    match = re.search(rf'<svg id="{chart_id}".*?</svg>', page, re.S)
    assert match, chart_id
    return ET.fromstring(match.group(0))


def _bars(svg: ET.Element) -> list[dict[int, tuple[float, int]]]:
    """Per bar group: bits → (drawn width, data-value)."""
    bars = []
    for group in svg.iter("g"):
        if group.get("class") != "bar":
            continue
        bars.append(
            {
                int(r.get("data-bits")): (
                    float(r.get("width")),
                    int(r.get("data-value")),
                )
                for r in group.iter("rect")
            }
        )
    return bars


@pytest.fixture(scope="module")
def small():
    model = keras.Sequential(
        [
            keras.Input((16,)),
            bl.QuantDense(
                32, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="qd1"
            ),
            bl.QuantDense(8, kernel_quantizer=quantizers.DoReFa(k_bit=4), name="qd2"),
            keras.layers.Dense(4, name="dense"),
            keras.layers.Activation("softmax", name="act"),
        ],
        name="small",
    )
    return models.profile(model)


# Written out from the shapes: kernel in×out at the kernel quantizer's bits,
# bias at 32 bits; MACs = in×out at max(input bits, kernel bits).
SMALL_MEMORY = {
    "qd1": {1: 16 * 32, 32: 32 * 32},
    "qd2": {4: 4 * 32 * 8, 32: 8 * 32},
    "dense": {32: (8 * 4 + 4) * 32},
}
SMALL_MACS = {"qd1": {1: 16 * 32}, "qd2": {32: 32 * 8}, "dense": {32: 8 * 4}}


def test_page_is_complete_and_self_contained(small):
    page = analysis.render(small, format="html")
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page
    parsed = _parse(page)
    tags = {tag for tag, _ in parsed.elements}
    # Nothing is loaded: no external script, stylesheet, image, font or frame.
    assert not tags & {"link", "img", "iframe", "object", "embed"}
    assert all(
        "src" not in attrs and "href" not in attrs for _, attrs in parsed.elements
    )
    assert "<style>" in page and "<script>" in page


def test_totals_cards_equal_hand_counts(small):
    parsed = _parse(analysis.render(small, format="html"))
    cards = {
        a["data-key"]: a["data-value"]
        for tag, a in parsed.elements
        if tag == "div" and a.get("class") == "card"
    }
    memory_bits = sum(sum(m.values()) for m in SMALL_MEMORY.values())
    params = 16 * 32 + 32 + 32 * 8 + 8 + 8 * 4 + 4
    assert int(cards["memory_bytes"]) == math.ceil(memory_bits / 8) == 496
    assert int(cards["float32_equivalent_bytes"]) == params * 4
    assert float(cards["compression"]) == pytest.approx(params * 4 / 496)
    assert float(cards["binary_mac_ratio"]) == pytest.approx(512 / (512 + 256 + 32))
    assert int(cards["inference_params_by_bits.1"]) == 512
    assert int(cards["inference_params_by_bits.4"]) == 256
    assert int(cards["inference_params_by_bits.32"]) == 32 + 8 + 8 * 4 + 4


@pytest.mark.parametrize(
    ("chart_id", "expected"),
    [("memory-chart", SMALL_MEMORY), ("macs-chart", SMALL_MACS)],
    ids=["memory", "macs"],
)
def test_stacked_bars_are_proportional(small, chart_id, expected):
    svg = _svg(analysis.render(small, format="html"), chart_id)
    bars = _bars(svg)
    labels = [g.get("data-label") for g in svg.iter("g") if g.get("class") == "bar"]
    # One bar per layer with weights or MACs; the activation has neither.
    assert labels == list(expected)
    largest = max(sum(v.values()) for v in expected.values())
    for bar, want in zip(bars, expected.values(), strict=True):
        assert {b: v for b, (_, v) in bar.items()} == want
        for bits, (width, _) in bar.items():
            assert width == pytest.approx(
                html_report.CHART_WIDTH * want[bits] / largest, abs=1e-3
            )


def test_share_chart_fills_the_bar(small):
    svg = _svg(analysis.render(small, format="html"), "share-chart")
    memory_total = sum(sum(m.values()) for m in SMALL_MEMORY.values())
    for group in svg.iter("g"):
        rects = list(group.iter("rect"))
        assert len(rects) == len(SMALL_MEMORY)
        assert sum(float(r.get("width")) for r in rects) == pytest.approx(
            html_report.CHART_WIDTH, abs=1e-2
        )
        if group.get("data-key") == "memory":
            first = float(rects[0].get("width"))
            assert first == pytest.approx(
                html_report.CHART_WIDTH
                * sum(SMALL_MEMORY["qd1"].values())
                / memory_total,
                abs=1e-3,
            )


def test_table_rows_are_the_layers(small):
    parsed = _parse(analysis.render(small, format="html"))
    paths = [
        a["data-path"] for tag, a in parsed.elements if tag == "tr" and "data-path" in a
    ]
    assert paths == ["qd1", "qd2", "dense", "act"]
    layer_rows = parsed.body_rows[: len(paths)]
    assert [r[0].strip() for r in layer_rows] == paths
    params = {r[0].strip(): int(r[4].replace(",", "")) for r in layer_rows}
    assert params == {"qd1": 544, "qd2": 264, "dense": 36, "act": 0}
    sortable = [a for tag, a in parsed.elements if tag == "table"]
    assert "sortable" in sortable[0]["class"]


def test_names_are_escaped():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, name="<b>&x")], name="m<script>"
    )
    page = analysis.render(models.profile(model), format="html")
    assert "<b>&x" not in page and "m<script>" not in page
    assert "&lt;b&gt;&amp;x" in page
    _svg(page, "memory-chart")  # still well-formed XML


def test_a_200_layer_model_aggregates_into_blocks():
    layers = [keras.Input((4,))]
    for i in range(50):
        layers += [
            bl.QuantDense(4, kernel_quantizer="ste_sign", name=f"d{i}a"),
            bl.QuantDense(4, kernel_quantizer="ste_sign", name=f"d{i}b"),
            bl.QuantDense(4, kernel_quantizer="ste_sign", name=f"d{i}c"),
            keras.layers.Activation("relu", name=f"r{i}"),
        ]
    report = models.profile(keras.Sequential(layers, name="deep"))
    page = analysis.render(report, format="html")
    drawn = 150  # every QuantDense: 16 one-bit weights + 4 float biases
    block = math.ceil(drawn / html_report.MAX_CHART_ROWS)
    svg = _svg(page, "memory-chart")
    bars = _bars(svg)
    assert len(bars) == math.ceil(drawn / block) == 50
    for bar in bars:
        assert {b: v for b, (_, v) in bar.items()} == {1: block * 16, 32: block * 128}
    labels = [g.get("data-label") for g in svg.iter("g") if g.get("class") == "bar"]
    assert labels[0] == "d0a … d0c" and labels[-1] == "d49a … d49c"
    assert f"blocks of {block} consecutive layers" in page
    parsed = _parse(page)
    rows = [a for tag, a in parsed.elements if tag == "tr" and "data-path" in a]
    assert len(rows) == 200
    assert int(
        next(a for t, a in parsed.elements if a.get("data-key") == "memory_bytes")[
            "data-value"
        ]
    ) == math.ceil(drawn * (16 + 128) / 8)


def test_a_model_without_weights_has_empty_charts_and_no_ratios():
    model = keras.Sequential(
        [keras.Input((4, 4)), keras.layers.Flatten(name="flat")], name="empty"
    )
    page = analysis.render(models.profile(model), format="html")
    parsed = _parse(page)
    cards = {
        a["data-key"]: a["data-value"]
        for tag, a in parsed.elements
        if tag == "div" and a.get("class") == "card"
    }
    assert cards["compression"] == cards["binary_mac_ratio"] == ""
    assert cards["memory_bytes"] == "0"
    assert _bars(_svg(page, "memory-chart")) == []
    assert "1 layer without weights or MACs not drawn" in page
