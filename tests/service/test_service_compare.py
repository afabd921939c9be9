"""/v2/compare: two definitions (POST) or two registered versions (GET)."""

from __future__ import annotations

import copy

from service_samples import MNIST

# MNIST: 3·3·32 one-bit conv weights, BatchNorm folded to 2·32 floats,
# 13·13·32·10 one-bit dense weights and 10 float biases.
MNIST_BITS = 3 * 3 * 32 + 2 * 32 * 32 + 13 * 13 * 32 * 10 + 10 * 32
FLOAT_CONV = copy.deepcopy(MNIST)
del FLOAT_CONV["layers"][0]["kernel_quantizer"]  # the conv's 288 weights at 32 bits
FLOAT_CONV_BITS = MNIST_BITS + 3 * 3 * 32 * 31


def _check_mnist_vs_float_conv(doc):
    assert doc["totals"]["memory_bytes"] == {
        "a": MNIST_BITS // 8,
        "b": FLOAT_CONV_BITS // 8,
        "delta": (FLOAT_CONV_BITS - MNIST_BITS) // 8,
    }
    assert doc["totals"]["params_by_bits.1"]["delta"] == -288
    conv = next(layer for layer in doc["layers"] if layer["path"] == "quant_conv2d")
    assert conv["changes"]["memory_bits"]["delta"] == 288 * 31
    assert doc["only_in_a"] == doc["only_in_b"] == []


def test_post_compares_two_definitions_and_stores_nothing(client):
    response = client.post("/v2/compare", json={"a": MNIST, "b": FLOAT_CONV})
    assert response.status_code == 200, response.text
    _check_mnist_vs_float_conv(response.json())
    page = client.post("/v2/compare?format=html", json={"a": MNIST, "b": FLOAT_CONV})
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert (
        page.text.startswith("<!DOCTYPE html>")
        and 'data-path="quant_dense"' in page.text
    )
    assert client.get("/v2/models").json()["total"] == 0


def test_get_compares_registered_versions(client):
    client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
    client.post("/v2/models", json={"name": "mnist", "definition": FLOAT_CONV})
    response = client.get("/v2/compare?a=mnist:1&b=mnist")  # latest is version 2
    assert response.status_code == 200, response.text
    _check_mnist_vs_float_conv(response.json())
    text = client.get("/v2/compare?a=mnist:1&b=mnist:2&format=text")
    assert text.headers["content-type"].startswith("text/plain")
    assert "memory_bytes" in text.text


def test_compare_errors_name_the_field(client):
    missing = client.get("/v2/compare?a=mnist&b=nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "model 'mnist' is not registered"}
    bad_ref = client.get("/v2/compare?a=mnist:0&b=x")
    assert bad_ref.status_code == 422
    assert bad_ref.json()["error"].startswith("query.a: ")
    assert "(received 'mnist:0')" in bad_ref.text
    extra = client.post("/v2/compare", json={"a": MNIST, "b": MNIST, "c": 1})
    assert extra.status_code == 422
    assert extra.json()["error"].startswith("c: Extra inputs are not permitted")
    absent = client.post("/v2/compare", json={"a": MNIST})
    assert absent.status_code == 422
    assert absent.json()["error"].startswith("b: Field required")
