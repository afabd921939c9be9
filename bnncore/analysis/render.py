"""Renderers of a :class:`ModelProfile`: text, JSON, CSV, Markdown and HTML.

Renderers only format numbers stored in the profile (unit changes such as bits
to KiB are formatting); they never count anything themselves.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from bnncore.analysis.records import ModelProfile, Shape

__all__ = [
    "FORMATS",
    "render",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
    "to_text",
]

KIB = 1024


# ----------------------------------------------------------------------------
# Small formatters
# ----------------------------------------------------------------------------


def _int(value: int) -> str:
    return f"{value:,}"


def _kib(bits: int) -> str:
    return f"{bits / 8 / KIB:.2f}"


def _size(n_bytes: int) -> str:
    if n_bytes >= KIB * KIB:
        return f"{_int(n_bytes)} bytes ({n_bytes / KIB / KIB:.2f} MiB)"
    return f"{_int(n_bytes)} bytes ({n_bytes / KIB:.2f} KiB)"


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{100 * ratio:.2f} %"


def _shape(shapes: tuple[Shape, ...]) -> str:
    if not shapes:
        return "?"
    text = [
        "(" + ", ".join("None" if d is None else str(d) for d in s) + ")"
        for s in shapes
    ]
    return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


def _bit_columns(profile: ModelProfile) -> tuple[list[int], list[int]]:
    """Bit widths that occur in parameters and in MACs, anywhere in the model."""
    param_bits: set[int] = set()
    mac_bits: set[int] = set()
    for _, _, row in profile.walk():
        param_bits.update(row.params_by_bits)
        mac_bits.update(row.macs_by_bits)
    return sorted(param_bits), sorted(mac_bits)


# ----------------------------------------------------------------------------
# Tables shared by text, Markdown and HTML
# ----------------------------------------------------------------------------


def _layer_table(
    profile: ModelProfile, include_macs: bool, indent: str
) -> tuple[list[str], list[list[str]]]:
    param_bits, mac_bits = _bit_columns(profile)
    show_calls = any(row.calls != 1 for _, _, row in profile.walk())
    header = ["Layer", "Type", *(["Calls"] if show_calls else [])]
    header += ["Input bits", "Output shape", "Params"]
    header += [f"{b}-bit params" for b in param_bits]
    header += ["Memory (KiB)"]
    if include_macs:
        header += ["MACs", *(f"{b}-bit MACs" for b in mac_bits)]
    rows = []
    for depth, _, row in profile.walk():
        cells = [
            indent * depth + row.name,
            row.type,
            *([str(row.calls)] if show_calls else []),
            "-" if row.input_precision is None else str(row.input_precision),
            _shape(row.output_shapes),
            _int(row.params),
            *(_int(row.params_by_bits.get(b, 0)) for b in param_bits),
            _kib(row.memory_bits),
        ]
        if include_macs:
            cells += [
                _int(row.macs),
                *(_int(row.macs_by_bits.get(b, 0)) for b in mac_bits),
            ]
        rows.append(cells)
    t = profile.totals
    total = [
        "Total",
        *([""] * (header.index("Params") - 1)),
        _int(t.params),
        *(_int(t.params_by_bits.get(b, 0)) for b in param_bits),
        _kib(t.memory_bits),
    ]
    if include_macs:
        total += [_int(t.macs), *(_int(t.macs_by_bits.get(b, 0)) for b in mac_bits)]
    rows.append(total)
    return header, rows


def _summary_rows(profile: ModelProfile, include_macs: bool) -> list[tuple[str, str]]:
    t = profile.totals
    rows = [
        ("Total params", _int(t.params)),
        ("Trainable params", _int(t.trainable_params)),
        ("Non-trainable params", _int(t.non_trainable_params)),
        ("Inference params (BatchNorm folded)", _int(t.inference_params)),
        *(
            (f"Inference params, {bits}-bit", _int(n))
            for bits, n in t.inference_params_by_bits.items()
        ),
        ("Model size", _size(t.memory_bytes)),
        ("Model size, floats stored at 8 bits", _size(t.memory_bytes_8bit_floats)),
        ("Float-32 equivalent", _size(t.float32_equivalent_bytes)),
        (
            "Compression",
            "n/a" if t.compression is None else f"{t.compression:.2f} x",
        ),
        ("Memory saving", _percent(t.memory_saving)),
    ]
    if include_macs:
        rows += [
            ("Number of MACs", _int(t.macs)),
            ("Binarized MACs", _percent(t.binary_mac_ratio)),
            ("Ternary MACs", _percent(t.ternary_mac_ratio)),
            ("BOPs", _int(t.bops)),
        ]
    rows.append(("Peak activation memory (batch 1)", _size(t.peak_activation_bytes)))
    return rows


def _notes(profile: ModelProfile) -> list[str]:
    notes = list(profile.notes)
    for _, path, row in profile.walk():
        notes += [f"{path}: {note}" for note in row.notes]
    return notes


# ----------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(header))
    return [line(header), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])]


def to_text(profile: ModelProfile, include_macs: bool = True) -> str:
    """A fixed-width text report: the layer table, then the summary."""
    header, rows = _layer_table(profile, include_macs, indent="  ")
    summary = _summary_rows(profile, include_macs)
    width = max(len(label) for label, _ in summary)
    lines = [f"Model: {profile.name} ({profile.type})", "", *_aligned(header, rows)]
    lines += ["", f"{profile.name} summary"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in summary]
    notes = _notes(profile)
    if notes:
        lines += ["", "Notes:", *(f"  - {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def to_json(profile: ModelProfile, include_macs: bool = True) -> str:
    """The JSON document (``profile.to_dict()``), indented; always has MACs."""
    del include_macs  # the JSON document is complete by design
    return json.dumps(profile.to_dict(), indent=2) + "\n"


CSV_COLUMNS = [
    "name",
    "path",
    "depth",
    "type",
    "calls",
    "input_precision",
    "output_precision",
    "output_shape",
    "params",
    "trainable_params",
    "non_trainable_params",
    "inference_params",
    "memory_bits",
    "memory_bits_8bit_floats",
    "macs",
    "bops",
    "activation_elements",
    "activation_bytes",
    "peak_activation_bytes",
]
"""The fixed CSV columns; per-bit-width columns follow (see ``docs/profile.md``)."""


def to_csv(profile: ModelProfile, include_macs: bool = True) -> str:
    """One CSV row per layer (nested layers too, with their ``depth``).

    After :data:`CSV_COLUMNS` come ``params_<b>bit`` and ``inference_params_<b>bit``
    for every parameter bit width in the model, ``macs_<b>bit`` for every MAC
    precision, and ``notes``. Shapes are JSON lists (``null`` for unknown).
    """
    del include_macs  # the CSV always has every column
    param_bits, mac_bits = _bit_columns(profile)
    inference_bits = sorted(
        {b for _, _, row in profile.walk() for b in row.inference_params_by_bits}
    )
    columns = [
        *CSV_COLUMNS,
        *(f"params_{b}bit" for b in param_bits),
        *(f"inference_params_{b}bit" for b in inference_bits),
        *(f"macs_{b}bit" for b in mac_bits),
        "notes",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for depth, path, row in profile.walk():
        data = row.to_dict()
        values: dict[str, Any] = {c: data.get(c) for c in CSV_COLUMNS}
        values.update(path=path, depth=depth)
        values["output_shape"] = json.dumps(data["output_shape"])
        values["input_precision"] = (
            "" if row.input_precision is None else row.input_precision
        )
        for b in param_bits:
            values[f"params_{b}bit"] = row.params_by_bits.get(b, 0)
        for b in inference_bits:
            values[f"inference_params_{b}bit"] = row.inference_params_by_bits.get(b, 0)
        for b in mac_bits:
            values[f"macs_{b}bit"] = row.macs_by_bits.get(b, 0)
        values["notes"] = "; ".join(row.notes)
        writer.writerow([values[c] for c in columns])
    return buffer.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(profile: ModelProfile, include_macs: bool = True) -> str:
    """A Markdown report: a layer table and a summary table."""
    header, rows = _layer_table(profile, include_macs, indent="\u2003")
    rows[-1][0] = "**Total**"
    align = ["---", "---", *(["---:"] * (len(header) - 2))]
    lines = [f"## Model `{profile.name}` ({profile.type})", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(align) + " |")
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    lines += ["", "| Metric | Value |", "| --- | ---: |"]
    lines += [
        f"| {label} | {value} |"
        for label, value in _summary_rows(profile, include_macs)
    ]
    notes = _notes(profile)
    if notes:
        lines += ["", "Notes:", "", *(f"- {_md_cell(n)}" for n in notes)]
    return "\n".join(lines) + "\n"


def to_html(profile: ModelProfile, include_macs: bool = True) -> str:
    """A complete, self-contained HTML page: totals, SVG charts, a sortable
    layer table, the summary and the notes (see
    :mod:`bnncore.analysis.html_report`)."""
    from bnncore.analysis.html_report import to_html_page

    return to_html_page(profile, include_macs=include_macs)


FORMATS: dict[str, Callable[..., str]] = {
    "text": to_text,
    "json": to_json,
    "csv": to_csv,
    "markdown": to_markdown,
    "md": to_markdown,
    "html": to_html,
}
"""Format name → renderer."""


def render(
    profile: ModelProfile, format: str = "text", include_macs: bool = True
) -> str:
    """Formats a profile.

    Args:
        profile: A :class:`ModelProfile` from :func:`bnncore.models.profile`.
        format: ``"text"``, ``"json"``, ``"csv"``, ``"markdown"`` (or ``"md"``)
            or ``"html"``.
        include_macs: Whether the text, Markdown and HTML reports show MACs
            (JSON and CSV always do).

    Returns:
        The report as a string.

    Raises:
        TypeError: if ``profile`` is not a :class:`ModelProfile`.
        ValueError: if ``format`` is unknown.
    """
    if not isinstance(profile, ModelProfile):
        raise TypeError(
            "Expected a ModelProfile (from bnncore.models.profile(model)). "
            f"Received: profile={type(profile).__name__}"
        )
    renderer = FORMATS.get(format)
    if renderer is None:
        raise ValueError(
            f"Unknown report format. Received: format={format!r}; allowed: "
            f"{', '.join(repr(f) for f in FORMATS)}."
        )
    return renderer(profile, include_macs=include_macs)
