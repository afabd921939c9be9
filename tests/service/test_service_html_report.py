"""format=html wherever the service serves a report: a text/html page that
equals the library's rendering of the same model, and loads nothing."""

from __future__ import annotations

import pytest
from service_samples import MNIST
from test_service_api import local_mnist

from bnncore.analysis import render
from bnncore.models import profile


@pytest.fixture(scope="module")
def page() -> str:
    return render(profile(local_mnist()), format="html")


def _check(response, page: str) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.text == page


def test_every_report_route_serves_html(client, page):
    _check(client.post("/v2/summary?format=html", json=MNIST), page)
    client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
    for path in ("/v2/models/mnist", "/v2/models/mnist/versions/1"):
        _check(client.get(f"{path}/summary?format=html"), page)


def test_openapi_lists_html_and_unknown_formats_still_fail(client):
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/v2/summary"]["post"]["responses"]["200"]["content"]
    assert "text/html" in content
    response = client.post("/v2/summary?format=pdf", json=MNIST)
    assert response.status_code == 422
    assert "format" in response.text
