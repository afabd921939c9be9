"""lq.analysis.compare: deltas of two models against hand counts."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import keras
import pytest

from bnncore import analysis, models
from bnncore import layers as bl


@pytest.fixture(scope="module")
def pair():
    a = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, name="d1"),
            keras.layers.Dropout(0.1, name="drop"),
            keras.layers.Dense(4, name="head"),
        ],
        name="float",
    )
    b = keras.Sequential(
        [
            keras.Input((8,)),
            bl.QuantDense(16, kernel_quantizer="ste_sign", name="d1"),
            keras.layers.Dense(4, name="head"),
            keras.layers.Dense(4, name="extra"),
        ],
        name="binary",
    )
    return a, b


# a: d1 = 8·16 kernel + 16 bias at 32 bits; head = 16·4 + 4 at 32 bits.
# b: d1's kernel at 1 bit; extra = 4·4 + 4 at 32 bits.
A_BITS = (8 * 16 + 16) * 32 + (16 * 4 + 4) * 32
B_BITS = 8 * 16 + 16 * 32 + (16 * 4 + 4) * 32 + (4 * 4 + 4) * 32


def test_totals_and_layers_against_hand_counts(pair):
    c = analysis.compare(*pair)
    assert (c.a_name, c.b_name) == ("float", "binary")
    assert c.total("memory_bytes").delta == B_BITS // 8 - A_BITS // 8 == -416
    assert c.total("macs").delta == 4 * 4
    assert c.total("params_by_bits.1").to_dict() == {"a": 0, "b": 128, "delta": 128}
    assert c.total("params").delta == 4 * 4 + 4
    assert [layer.path for layer in c.layers] == ["d1", "head"]
    assert (c.only_in_a, c.only_in_b) == (("drop",), ("extra",))
    d1 = {ch.key: ch for ch in c.layers[0].changes}
    assert (c.layers[0].type_a, c.layers[0].type_b) == ("Dense", "QuantDense")
    assert d1["memory_bits"].delta == (8 * 16 + 16 * 32) - (8 * 16 + 16) * 32
    assert d1["params"].delta == 0
    assert d1["params_by_bits.32"].to_dict() == {"a": 144, "b": 16, "delta": -128}
    assert all(ch.delta == 0 for ch in c.layers[1].changes)


def test_profiles_and_models_give_the_same_comparison(pair):
    a, b = pair
    assert analysis.compare(a, b) == analysis.compare(
        models.profile(a), models.profile(b)
    )
    with pytest.raises(TypeError, match="Received: b of type dict"):
        analysis.compare(a, {})


def test_renderers(pair):
    c = analysis.compare(*pair)
    doc = json.loads(analysis.render_comparison(c, "json"))
    assert doc["totals"]["memory_bytes"] == {
        "a": A_BITS // 8,
        "b": B_BITS // 8,
        "delta": -416,
    }
    assert doc["only_in_b"] == ["extra"]
    text = analysis.render_comparison(c, "text")
    assert "d1 (Dense -> QuantDense)" in text and "memory_bytes" in text

    paths = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "tr" and dict(attrs).get("data-path"):
                paths.append(dict(attrs)["data-path"])

    page = analysis.render_comparison(c, "html")
    Rows().feed(page)
    assert paths == ["d1", "head"]
    assert "http://" not in page and "https://" not in page
    with pytest.raises(ValueError, match="format='pdf'"):
        analysis.render_comparison(c, "pdf")
