"""The HTML report: one self-contained page with the totals, charts and tables.

The page has inline CSS, inline SVG charts drawn here (no plotting library:
a bar is a ``<rect>``), and a few lines of vanilla JavaScript that sort the
layer table. It makes no request: no fonts, scripts, styles or images are
loaded from anywhere.

Every number comes from the profile. The charts only scale them: a segment of
the memory chart is ``bits × inference_params_by_bits[bits]`` of its row, which
is how the profile counts memory (the segments of a row add up to its
``memory_bits``).

Chart rows are the model's top-level layers that have weights or MACs (a nested
model is one row, as in the table). When there are more than
:data:`MAX_CHART_ROWS` of them, consecutive rows are grouped into blocks of
``ceil(rows / MAX_CHART_ROWS)`` layers in graph order, and a block's bar is the
sum of its layers; the table below always lists every layer.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bnncore.analysis.records import LayerProfile, ModelProfile

__all__ = ["MAX_CHART_ROWS", "SORT_JS", "ChartRow", "chart_rows", "to_html_page"]

MAX_CHART_ROWS = 60
"""Above this many chart rows, consecutive rows are grouped into blocks."""

CHART_WIDTH = 640
"""Width in pixels of the longest bar of a chart."""

LABEL_WIDTH = 220
BAR_HEIGHT = 14
ROW_GAP = 4

# One colour per bit width (fewer bits: cooler); others fall back to grey.
COLOURS = {
    1: "#1f77b4",
    2: "#17becf",
    4: "#2ca02c",
    8: "#bcbd22",
    16: "#ff7f0e",
    32: "#d62728",
    64: "#8c564b",
}
FALLBACK_COLOUR = "#7f7f7f"

esc = html.escape


@dataclass(frozen=True)
class ChartRow:
    """One bar of the charts: a layer, or a block of consecutive layers.

    Attributes:
        label: The layer's name, or ``"first … last"`` for a block.
        layers: Names of the layers it covers.
        memory_bits_by_bits: Memory in bits of its parameters, by bit width.
        macs_by_bits: Its MACs by precision.
    """

    label: str
    layers: tuple[str, ...]
    memory_bits_by_bits: Mapping[int, int]
    macs_by_bits: Mapping[int, int]

    @property
    def memory_bits(self) -> int:
        """Total memory in bits."""
        return sum(self.memory_bits_by_bits.values())

    @property
    def macs(self) -> int:
        """Total MACs."""
        return sum(self.macs_by_bits.values())


def _merge(counts: Sequence[Mapping[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for c in counts:
        for bits, n in c.items():
            out[bits] = out.get(bits, 0) + n
    return dict(sorted(out.items()))


def _layer_row(layer: LayerProfile) -> ChartRow:
    memory = {b: b * n for b, n in layer.inference_params_by_bits.items()}
    return ChartRow(layer.name, (layer.name,), memory, dict(layer.macs_by_bits))


def chart_rows(
    profile: ModelProfile, max_rows: int = MAX_CHART_ROWS
) -> tuple[list[ChartRow], int]:
    """The rows the charts draw, and the block size (1 when not aggregated).

    Args:
        profile: The model's profile.
        max_rows: Above this many layers with weights or MACs, consecutive
            layers are grouped into blocks of ``ceil(n / max_rows)``.

    Returns:
        ``(rows, block_size)``.
    """
    drawn = [_layer_row(r) for r in profile.layers if r.memory_bits or r.macs]
    if len(drawn) <= max_rows:
        return drawn, 1
    size = math.ceil(len(drawn) / max_rows)
    blocks = []
    for start in range(0, len(drawn), size):
        group = drawn[start : start + size]
        names = tuple(n for row in group for n in row.layers)
        label = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
        blocks.append(
            ChartRow(
                label,
                names,
                _merge([r.memory_bits_by_bits for r in group]),
                _merge([r.macs_by_bits for r in group]),
            )
        )
    return blocks, size


# ----------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------


def _int(value: int) -> str:
    return f"{value:,}"


def _bytes(n_bytes: int) -> str:
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / 1024 / 1024:.2f} MiB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.2f} KiB"
    return f"{n_bytes} B"


def _bits_as_bytes(bits: int) -> str:
    return _bytes(math.ceil(bits / 8))


def _ratio(value: float | None, suffix: str = " %", scale: float = 100) -> str:
    return "n/a" if value is None else f"{scale * value:.2f}{suffix}"


def _colour(bits: int) -> str:
    return COLOURS.get(bits, FALLBACK_COLOUR)


# ----------------------------------------------------------------------------
# SVG charts
# ----------------------------------------------------------------------------


def _stacked_chart(
    chart_id: str,
    title: str,
    rows: list[ChartRow],
    values: list[Mapping[int, int]],
    unit: str,
) -> str:
    """Horizontal stacked bars, one per row, one segment per bit width."""
    totals = [sum(v.values()) for v in values]
    largest = max(totals, default=0)
    widths = sorted({b for v in values for b in v})
    height = len(rows) * (BAR_HEIGHT + ROW_GAP) + 30
    total_width = LABEL_WIDTH + CHART_WIDTH + 130
    out = [
        f'<figure class="chart"><figcaption>{esc(title)}</figcaption>',
        f'<svg id="{chart_id}" class="bars" width="{total_width}" '
        f'height="{height}" viewBox="0 0 {total_width} {height}" role="img" '
        f'aria-label="{esc(title)}" data-scale-max="{largest}" '
        f'data-bar-width="{CHART_WIDTH}">',
    ]
    legend_x = LABEL_WIDTH
    for bits in widths:
        out.append(
            f'<rect class="legend" x="{legend_x}" y="2" width="10" height="10" '
            f'fill="{_colour(bits)}"/><text x="{legend_x + 14}" y="11">'
            f"{bits}-bit</text>"
        )
        legend_x += 70
    for i, (row, counts, total) in enumerate(zip(rows, values, totals, strict=True)):
        y = 20 + i * (BAR_HEIGHT + ROW_GAP)
        out.append(
            f'<g class="bar" data-row="{i}" data-label="{esc(row.label)}" '
            f'data-total="{total}">'
            f'<text class="label" x="{LABEL_WIDTH - 6}" y="{y + BAR_HEIGHT - 3}" '
            f'text-anchor="end">{esc(_short(row.label))}</text>'
        )
        x = float(LABEL_WIDTH)
        for bits, n in counts.items():
            w = CHART_WIDTH * n / largest if largest else 0.0
            out.append(
                f'<rect class="segment" x="{x:.3f}" y="{y}" width="{w:.3f}" '
                f'height="{BAR_HEIGHT}" fill="{_colour(bits)}" data-bits="{bits}" '
                f'data-value="{n}"><title>{esc(row.label)}: {_int(n)} {unit} at '
                f"{bits} bits</title></rect>"
            )
            x += w
        out.append(
            f'<text class="value" x="{x + 4:.3f}" y="{y + BAR_HEIGHT - 3}">'
            f"{esc(_amount(total, unit))}</text></g>"
        )
    out.append("</svg></figure>")
    return "".join(out)


def _amount(value: int, unit: str) -> str:
    return _bits_as_bytes(value) if unit == "bits" else _int(value)


def _short(label: str, limit: int = 32) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _share_chart(rows: list[ChartRow], memory_bits: int, macs: int) -> str:
    """Two 100 % bars: each row's share of the model's memory and of its MACs."""
    width = CHART_WIDTH
    out = [
        "<figure class=\"chart\"><figcaption>Each layer's share of the model's "
        "memory and MACs</figcaption>",
        f'<svg id="share-chart" class="bars" width="{LABEL_WIDTH + width + 10}" '
        f'height="60" viewBox="0 0 {LABEL_WIDTH + width + 10} 60" role="img" '
        f'aria-label="Share of memory and MACs" data-bar-width="{width}">',
    ]
    for j, (key, label, total) in enumerate(
        (("memory", "Memory", memory_bits), ("macs", "MACs", macs))
    ):
        y = 6 + j * 26
        out.append(
            f'<g class="share" data-key="{key}" data-total="{total}">'
            f'<text class="label" x="{LABEL_WIDTH - 6}" y="{y + 14}" '
            f'text-anchor="end">{label}</text>'
        )
        x = float(LABEL_WIDTH)
        for i, row in enumerate(rows):
            value = row.memory_bits if key == "memory" else row.macs
            w = width * value / total if total else 0.0
            shade = "#4e79a7" if i % 2 == 0 else "#a0cbe8"
            out.append(
                f'<rect class="segment" x="{x:.3f}" y="{y}" width="{w:.3f}" '
                f'height="20" fill="{shade}" data-row="{i}" data-value="{value}">'
                f"<title>{esc(row.label)}: {_ratio(value / total if total else None)}"
                f"</title></rect>"
            )
            x += w
        out.append("</g>")
    out.append("</svg></figure>")
    return "".join(out)


def _top_shares(rows: list[ChartRow], memory_bits: int, macs: int) -> str:
    def top(key: str, total: int) -> str:
        ranked = sorted(
            rows,
            key=lambda r: r.memory_bits if key == "memory" else r.macs,
            reverse=True,
        )[:5]
        items = [
            f"<li>{esc(r.label)}: "
            f"{_ratio((r.memory_bits if key == 'memory' else r.macs) / total)}</li>"
            for r in ranked
            if total
        ]
        return "".join(items)

    return (
        '<div class="top"><div><h4>Largest by memory</h4><ol>'
        f"{top('memory', memory_bits)}</ol></div>"
        f"<div><h4>Largest by MACs</h4><ol>{top('macs', macs)}</ol></div></div>"
    )


# ----------------------------------------------------------------------------
# Page
# ----------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;
padding:1em 1.5em;color:#222}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em}
.cards{display:flex;flex-wrap:wrap;gap:.6em}
.card{border:1px solid #ccc;border-radius:6px;padding:.5em .8em;min-width:9em}
.card .v{font-size:1.3em;font-weight:600}.card .k{color:#555;font-size:.85em}
figure.chart{margin:1em 0;overflow-x:auto}figcaption{font-weight:600}
svg.bars text{font-size:11px;fill:#333}
.scroll{max-height:70vh;overflow:auto;border:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}
th,td{padding:2px 8px;border-bottom:1px solid #eee;text-align:right;
white-space:nowrap}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
.layers thead th{position:sticky;top:0;background:#f4f4f4;cursor:pointer}
thead th[data-dir=asc]::after{content:" \\25B2"}
thead th[data-dir=desc]::after{content:" \\25BC"}
.layers tfoot th{position:sticky;bottom:0;background:#f4f4f4}
.top{display:flex;gap:3em}.note{color:#555}
"""

SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
 t.querySelectorAll("thead th[data-sort]").forEach(function(th){
  th.addEventListener("click",function(){
   var b=t.tBodies[0],rows=Array.from(b.rows),up=th.dataset.dir!=="asc";
   t.querySelectorAll("thead th").forEach(function(h){delete h.dataset.dir;});
   th.dataset.dir=up?"asc":"desc";
   var col=th.cellIndex,num=th.dataset.sort==="number";
   function key(r){var c=r.cells[col],v=c.dataset.v;
    return num&&v!==undefined?parseFloat(v):c.textContent.trim();}
   rows.sort(function(x,y){var a=key(x),c=key(y),n=typeof a==="number",
    m=typeof c==="number",r=n&&m?a-c:n?-1:m?1:a.localeCompare(c);
    return up?r:-r;});
   rows.forEach(function(r){b.appendChild(r);});
  });
 });
});
"""
"""Sorts a ``table.sortable`` by a header clicked twice (ascending, then
descending; ``data-dir`` marks it). Only headers with ``data-sort`` sort:
``"number"`` by each cell's ``data-v`` (ascending, cells without one come
after the numbers), ``"text"`` by the cell's text in the reader's locale.
The column is the header's ``cellIndex``. The service's pages use it too."""


def _cards(profile: ModelProfile) -> str:
    t = profile.totals
    cards: list[tuple[str, str, str, object]] = [
        (
            f"Memory ({_int(t.memory_bytes)} bytes)",
            _bytes(t.memory_bytes),
            "memory_bytes",
            t.memory_bytes,
        ),
        (
            "Float-32 equivalent",
            _bytes(t.float32_equivalent_bytes),
            "float32_equivalent_bytes",
            t.float32_equivalent_bytes,
        ),
        (
            "Compression",
            _ratio(t.compression, " ×", 1),
            "compression",
            t.compression,
        ),
        (
            "Binarized MACs",
            _ratio(t.binary_mac_ratio),
            "binary_mac_ratio",
            t.binary_mac_ratio,
        ),
        ("MACs", _int(t.macs), "macs", t.macs),
        ("Parameters (Keras count)", _int(t.params), "params", t.params),
    ]
    cards += [
        (
            f"{bits}-bit parameters (BatchNorm folded)",
            _int(n),
            f"inference_params_by_bits.{bits}",
            n,
        )
        for bits, n in t.inference_params_by_bits.items()
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card" data-key="{esc(key)}" '
            f'data-value="{"" if value is None else value}">'
            f'<div class="v">{esc(shown)}</div><div class="k">{esc(label)}</div></div>'
            for label, shown, key, value in cards
        )
        + "</div>"
    )


def _table(profile: ModelProfile) -> str:
    from bnncore.analysis.render import _layer_table

    header, rows = _layer_table(profile, include_macs=True, indent="\u2003")
    t = profile.totals
    header = [*header, "% memory", "% MACs"]
    raw = []
    for (_, path, row), cells in zip(profile.walk(), rows[:-1], strict=True):
        mem = 100 * row.memory_bits / t.memory_bits if t.memory_bits else 0.0
        mac = 100 * row.macs / t.macs if t.macs else 0.0
        raw.append((path, [*cells, f"{mem:.2f}", f"{mac:.2f}"]))
    out = ['<div class="scroll"><table class="layers sortable"><thead><tr>']
    out += [
        f'<th data-sort="{"text" if i < 2 else "number"}" title="Sort by {esc(h)}">'
        f"{esc(h)}</th>"
        for i, h in enumerate(header)
    ]
    out.append("</tr></thead><tbody>")
    for path, cells in raw:
        tds = []
        for i, c in enumerate(cells):
            number = c.replace(",", "")
            attr = ""
            if i >= 2 and _is_number(number):
                attr = f' data-v="{esc(number)}"'
            tds.append(f"<td{attr}>{esc(c)}</td>")
        out.append(f'<tr data-path="{esc(path)}">' + "".join(tds) + "</tr>")
    out.append("</tbody><tfoot><tr>")
    out += [f"<th>{esc(c)}</th>" for c in rows[-1]]
    out.append("<th>100.00</th><th>100.00</th></tr></tfoot></table></div>")
    return "".join(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_html_page(profile: ModelProfile, include_macs: bool = True) -> str:
    """A complete, self-contained HTML page for a profile.

    Args:
        profile: A :class:`ModelProfile`.
        include_macs: Whether the summary table lists MACs (the charts and the
            layer table always show them).

    Returns:
        The page, starting with ``<!DOCTYPE html>``.
    """
    from bnncore.analysis.render import _notes, _summary_rows

    t = profile.totals
    rows, block = chart_rows(profile)
    skipped = sum(1 for r in profile.layers if not (r.memory_bits or r.macs))
    if block > 1:
        grouping = (
            f"{len(rows)} bars: the layers with weights or MACs are grouped, in "
            f"graph order, into blocks of {block} consecutive layers; each bar is "
            "the sum of its block. The table lists every layer."
        )
    else:
        grouping = "One bar per layer with weights or MACs."
    if skipped:
        plural = "layer" if skipped == 1 else "layers"
        grouping += f" {skipped} {plural} without weights or MACs not drawn."
    notes = _notes(profile)
    name = esc(profile.name)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{name}: bnncore model report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>{name}</h1><p>{esc(profile.type)} model · "
        f"{_int(len(list(profile.walk())))} layers · bnncore model report</p>",
        _cards(profile),
        "</header>",
        "<section><h2>Where the bytes and MACs are</h2>",
        f'<p class="note" id="chart-rows">{esc(grouping)}</p>',
        _stacked_chart(
            "memory-chart",
            "Memory by bit width (deployed weights, BatchNorm folded)",
            rows,
            [r.memory_bits_by_bits for r in rows],
            "bits",
        ),
        _stacked_chart(
            "macs-chart",
            "MACs by precision (batch 1)",
            rows,
            [r.macs_by_bits for r in rows],
            "MACs",
        ),
        _share_chart(rows, t.memory_bits, t.macs),
        _top_shares(rows, t.memory_bits, t.macs),
        "</section>",
        '<section><h2>Layers</h2><p class="note">Click a column header to sort.</p>',
        _table(profile),
        '</section><section><h2>Summary</h2><table class="summary"><tbody>',
        *(
            f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>"
            for label, value in _summary_rows(profile, include_macs)
        ),
        "</tbody></table></section>",
    ]
    if notes:
        parts.append(
            '<section><h2>Notes</h2><ul class="notes">'
            + "".join(f"<li>{esc(n)}</li>" for n in notes)
            + "</ul></section>"
        )
    parts.append(f"<script>{SORT_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
