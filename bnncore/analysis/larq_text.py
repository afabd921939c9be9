"""Larq's ``summary`` text: its number formats and its two ASCII tables.

``larq.models.summary`` prints a layer table (title ``"<model> stats"``) and a
totals table (``"<model> summary"``) drawn with ``+``, ``-`` and ``|``, cells
padded by one space, no lines between columns. This module draws the same
text from :class:`bnncore.analysis.larq_profile.ModelProfile`'s rows, so a
Larq user's snapshot of ``summary`` output still matches (the fixtures in
``tests/bnncore/analysis/larq_summaries/`` were printed by Larq 0.14).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bnncore.analysis.larq_profile import ModelProfile

__all__ = ["ascii_table", "bitsize_as_str", "cell_text", "number_as_readable_str"]

_MAGNITUDES = ("", " k", " M", " B", " T")


def number_as_readable_str(num: float) -> str:
    """A count in 3 significant figures with k / M / B / T (Larq's format).

    Below 1000 the number itself without trailing zeros (``"468"``,
    ``"99.5"``); up to the trillions a scaled number and a suffix (``"93.6 k"``,
    ``"2.6 M"``, ``"1 k"`` for 999.5); from 10**15 on, scientific notation
    (``"1.00E+15"``). The number is rounded to 3 significant figures first, so
    999,500 is ``"1 M"``.
    """
    rounded = float(f"{num:.3g}")
    if rounded < 1000:
        text = repr(rounded)
        return text.rstrip("0").rstrip(".") if "." in text else text
    if rounded >= 1e15:
        return f"{rounded:.2E}"
    scaled, exponent = rounded, 0
    while scaled >= 1000 and exponent < len(_MAGNITUDES) - 1:
        scaled /= 1000
        exponent += 1
    return f"{scaled:.3g}".rstrip(".") + _MAGNITUDES[exponent]


def bitsize_as_str(bits: int) -> str:
    """The name of a memory unit given in bits: 8 → ``"byte"``, 8192 → ``"kB"``.

    Raises:
        NotImplementedError: for any other size (as Larq).
    """
    names = {8: "byte", 8 * 1024: "kB"}
    if bits not in names:
        raise NotImplementedError(
            f"No unit name for {bits!r} bits; known: 8 (byte), 8192 (kB)."
        )
    return names[bits]


def cell_text(value: Any) -> str:
    """A table cell as Larq writes it: floats with 2 decimals, the rest ``str``."""
    if type(value) is float:
        return f"{value:.2f}"
    return str(value)


def _width(text: str) -> int:
    """Columns a string takes in a terminal (East Asian wide characters: 2)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("F", "W") else 1 for c in text)


def _pad(line: str, width: int, right: bool) -> str:
    fill = width - _width(line)
    if right:
        return " " + " " * fill + line + " "
    return " " + line + " " * fill + " "


def ascii_table(
    rows: Sequence[Sequence[str]],
    title: str | None = None,
    *,
    right_align: bool = False,
    heading_border: bool = False,
    footing_border: bool = False,
) -> str:
    """Draws rows of text cells as Larq's summary tables are drawn.

    Args:
        rows: The cells, row by row; a cell may hold several lines.
        title: Shown at the start of the top border when it fits there.
        right_align: Right-align every column but the first.
        heading_border: Draw a rule under the first row.
        footing_border: Draw a rule above the last row.

    Returns:
        The table, lines joined by newlines, without a final newline.
    """
    columns = max((len(row) for row in rows), default=0)
    cells = [
        [(text.splitlines() or [""]) for text in [*row, *[""] * (columns - len(row))]]
        for row in rows
    ]
    widths = [
        max((_width(line) for row in cells for line in row[i]), default=0)
        for i in range(columns)
    ]
    total = sum(w + 2 for w in widths)
    rule = "+" + "-" * total + "+"
    top = rule
    if title is not None and columns and _width(title) <= total:
        top = "+" + title + "-" * (total - _width(title)) + "+"

    lines = [top]
    last = len(cells) - 1
    for index, row in enumerate(cells):
        height = max(len(cell) for cell in row) if row else 1
        for k in range(height):
            parts = [
                _pad(cell[k] if k < len(cell) else "", widths[i], right_align and i > 0)
                for i, cell in enumerate(row)
            ]
            lines.append("|" + "".join(parts) + "|")
        if index == last:
            break
        under_heading = heading_border and index == 0
        if under_heading or (footing_border and index == last - 1):
            lines.append(rule)
    lines.append(rule)
    return "\n".join(lines)


def summary_tables(profile: ModelProfile, include_macs: bool = True) -> list[str]:
    """The two tables Larq's ``summary`` prints, one string each.

    The layer table always has the MAC columns, as Larq's does; ``include_macs``
    only decides whether the totals table shows the MAC lines.
    """
    layer_rows = [[cell_text(v) for v in row] for row in profile.generate_table()]
    summary_rows = [
        [cell_text(v) for v in row] for row in profile.generate_summary(include_macs)
    ]
    return [
        ascii_table(
            layer_rows,
            title=f"{profile.name} stats",
            right_align=True,
            heading_border=True,
            footing_border=True,
        ),
        ascii_table(summary_rows, title=f"{profile.name} summary"),
    ]
