"""The four report formats say the same thing, and the JSON schema is complete.

One model with several bit widths, a nested model and a shared layer is
rendered to JSON, CSV, Markdown and text; each output is parsed back and
compared with the others.
"""

from __future__ import annotations

import csv
import io
import json
import re

import keras
import pytest

from bnncore import analysis, models, quantizers
from bnncore import layers as bl

LAYER_KEYS = {
    "name",
    "type",
    "input_precision",
    "output_shape",
    "params",
    "trainable_params",
    "non_trainable_params",
    "params_by_bits",
    "inference_params",
    "memory_bits",
    "macs",
    "macs_by_bits",
    "bops",
    "activation_elements",
    "weights",
}
WEIGHT_KEYS = {"name", "shape", "bits", "trainable"}
TOTAL_KEYS = {
    "params",
    "trainable_params",
    "non_trainable_params",
    "inference_params",
    "params_by_bits",
    "binary_params",
    "float_params",
    "memory_bytes",
    "memory_bytes_8bit_floats",
    "float32_equivalent_bytes",
    "compression",
    "memory_saving",
    "macs",
    "macs_by_bits",
    "binary_mac_ratio",
    "ternary_mac_ratio",
    "bops",
    "peak_activation_bytes",
}


@pytest.fixture(scope="module")
def report():
    block = keras.Sequential(
        [
            keras.Input((6, 6, 8)),
            bl.QuantConv2D(
                8,
                3,
                padding="same",
                use_bias=False,
                input_quantizer="ste_sign",
                kernel_quantizer="ste_sign",
            ),
            keras.layers.BatchNormalization(),
        ],
        name="block",
    )
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = keras.layers.Add()([block(x), x])
    shared = bl.QuantDense(
        4, input_quantizer="ste_tern", kernel_quantizer=quantizers.DoReFa(k_bit=4)
    )
    a = shared(keras.layers.GlobalAveragePooling2D()(x))
    b = shared(keras.layers.GlobalMaxPooling2D()(x))
    outputs = keras.layers.Concatenate()([a, b])
    return models.profile(keras.Model(inputs, outputs, name="mixed"))


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _expected(report):
    """name → (params, params by bits, memory KiB, MACs, MACs by bits)."""
    rows = {}
    for _, _, row in report.walk():
        rows[row.name] = (
            row.params,
            dict(row.params_by_bits),
            row.memory_bits / 8 / 1024,
            row.macs,
            dict(row.macs_by_bits),
        )
    return rows


def _from_json(text):
    doc = json.loads(text)
    rows = {}

    def visit(layers):
        for layer in layers:
            rows[layer["name"]] = (
                layer["params"],
                {int(b): n for b, n in layer["params_by_bits"].items()},
                layer["memory_bits"] / 8 / 1024,
                layer["macs"],
                {int(b): n for b, n in layer["macs_by_bits"].items()},
            )
            visit(layer["layers"])

    visit(doc["layers"])
    return rows, doc["totals"]


def _from_csv(text):
    rows = {}
    for line in csv.DictReader(io.StringIO(text)):
        by_bits = {
            int(m.group(1)): int(v)
            for k, v in line.items()
            if (m := re.fullmatch(r"params_(\d+)bit", k)) and int(v)
        }
        macs_by_bits = {
            int(m.group(1)): int(v)
            for k, v in line.items()
            if (m := re.fullmatch(r"macs_(\d+)bit", k)) and int(v)
        }
        rows[line["name"]] = (
            int(line["params"]),
            by_bits,
            int(line["memory_bits"]) / 8 / 1024,
            int(line["macs"]),
            macs_by_bits,
        )
    return rows


def _table_rows(header, cells_list):
    """Rows of a rendered layer table, parsed with its header."""
    param_cols = {
        int(m.group(1)): i
        for i, h in enumerate(header)
        if (m := re.fullmatch(r"(\d+)-bit params", h))
    }
    mac_cols = {
        int(m.group(1)): i
        for i, h in enumerate(header)
        if (m := re.fullmatch(r"(\d+)-bit MACs", h))
    }
    rows = {}
    for cells in cells_list:
        rows[cells[0].strip("\u2003 ")] = (
            _int(cells[header.index("Params")]),
            {b: _int(cells[i]) for b, i in param_cols.items() if _int(cells[i])},
            float(cells[header.index("Memory (KiB)")]),
            _int(cells[header.index("MACs")]),
            {b: _int(cells[i]) for b, i in mac_cols.items() if _int(cells[i])},
        )
    return rows


def _from_markdown(text):
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if cells[0] == "**Total**":
            break
        body.append(cells)
    return _table_rows(header, body)


def _from_text(text):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Layer "))
    header = re.split(r"\s{2,}", lines[start].strip())
    body = []
    for line in lines[start + 2 :]:
        if line.startswith("---"):
            break
        body.append(re.split(r"\s{2,}", line.strip()))
    summary = {}
    for line in lines:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == 2 and line.startswith("  "):
            summary[parts[0]] = parts[1]
    return _table_rows(header, body), summary


def _assert_same(rows, expected):
    assert rows.keys() == expected.keys()
    for name, (params, by_bits, kib, macs, macs_by_bits) in expected.items():
        got = rows[name]
        assert got[0] == params, name
        assert got[1] == by_bits, name
        assert got[2] == pytest.approx(
            kib, abs=0.005 + 1e-9
        )  # shown to 2 decimals, name
        assert got[3] == macs, name
        assert got[4] == macs_by_bits, name


def test_json_csv_markdown_and_text_agree(report):
    expected = _expected(report)
    # Several bit widths, a nested model and a shared layer are all present.
    assert {1, 4, 32} <= set(report.totals.params_by_bits)
    assert any(row.layers for row in report.layers)
    assert any(row.calls == 2 for row in report.layers)

    json_rows, totals = _from_json(analysis.render(report, "json"))
    _assert_same(json_rows, expected)
    _assert_same(_from_csv(analysis.render(report, "csv")), expected)
    _assert_same(_from_markdown(analysis.render(report, "markdown")), expected)
    text_rows, summary = _from_text(analysis.render(report, "text"))
    _assert_same(text_rows, expected)

    assert _int(summary["Total params"]) == totals["params"] == report.totals.params
    assert _int(summary["Number of MACs"]) == totals["macs"]
    assert _int(summary["BOPs"]) == totals["bops"]
    assert _int(summary["Model size"].split()[0]) == totals["memory_bytes"]
    assert summary["Binarized MACs"] == f"{100 * totals['binary_mac_ratio']:.2f} %"


def test_json_document_has_every_documented_key(report):
    doc = json.loads(report.to_json())
    assert doc["schema_version"] == analysis.SCHEMA_VERSION
    assert {"name", "input_shape", "output_shape"} <= doc["model"].keys()
    assert doc["model"]["input_shape"] == [None, 12, 12, 3]
    assert doc["totals"].keys() >= TOTAL_KEYS
    for _, _, row in report.walk():
        data = row.to_dict()
        assert data.keys() >= LAYER_KEYS, row.name
        for weight in data["weights"]:
            assert weight.keys() >= WEIGHT_KEYS
        assert all(isinstance(k, str) for k in data["params_by_bits"])
        shape = data["output_shape"]
        assert shape is None or shape[0] is None  # batch dimension is null
    # The JSON document is the dataclasses' content, key for key.
    assert doc == json.loads(json.dumps(report.to_dict()))


def test_summary_prints_larqs_tables_and_render_the_rich_report():
    # summary() is Larq's text (tests/bnncore/analysis/test_larq_summary.py);
    # bnncore's own text report is render(profile(model), "text").
    inputs = keras.Input((5,))
    model = keras.Model(inputs, bl.QuantDense(3, kernel_quantizer="ste_sign")(inputs))
    printed = []
    models.summary(model, print_fn=printed.append)
    assert len(printed) == 2
    assert printed[0].startswith(f"+{model.name} stats-")
    assert printed[1].startswith(f"+{model.name} summary-")
    assert "Number of MACs" in printed[1]
    printed.clear()
    models.summary(model, print_fn=printed.append, include_macs=False)
    assert "Number of MACs" not in printed[1]
    text = analysis.render(models.profile(model), "text")
    assert text.startswith(f"Model: {model.name} (Functional)")


def test_html_report_escapes_and_has_the_totals(report):
    page = analysis.render(report, "html")
    assert page.count("<table") == 2
    assert f"{report.totals.params:,}" in page


def test_render_rejects_unknown_format_and_non_profiles(report):
    with pytest.raises(ValueError, match=r"format='pdf'.*'text'"):
        analysis.render(report, "pdf")
    with pytest.raises(TypeError, match="ModelProfile"):
        analysis.render({"totals": {}}, "text")
