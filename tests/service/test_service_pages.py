"""The home page (``GET /``) and the offline API documentation (``/docs``,
``/redoc``), in process. The oracle for the sizes is each model's JSON report;
HTML is read back with the standard library's parser (what a browser would
build), not with string searches. The same pages in a real browser:
``tests/service/browser/test_browser_pages.py``."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bnncore_service.config import Settings
from bnncore_service.main import create_app
from bnncore_service.routes import pages


class Page(HTMLParser):
    """Tags, the home table's rows (cells' text and ``data-v``) and links."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.links: dict[str, list[tuple[str, str]]] = {}  # row name -> (text, href)
        self.text: list[str] = []
        self._row: str | None = None
        self._cell: dict[str, Any] | None = None
        self._href: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "tr" and attributes.get("data-name") is not None:
            self._row = attributes["data-name"]
            self.rows[self._row] = []
            self.links[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = {"v": attributes.get("data-v"), "text": ""}
            self.rows[self._row].append(self._cell)
        elif tag == "a":
            self._href = attributes.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None
        elif tag == "a":
            self._href = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data
        if self._href is not None and self._row is not None:
            self.links[self._row].append((data, self._href))


def dense(name: str, units: int) -> dict[str, Any]:
    return {
        "name": name,
        "input_shape": [16],
        "layers": [
            {
                "type": "QuantDense",
                "units": units,
                "input_quantizer": "ste_sign",
                "kernel_quantizer": "ste_sign",
                "kernel_constraint": "weight_clip",
            },
            {"type": "BatchNormalization"},
            {"type": "Dense", "units": 3},
        ],
    }


def register(client: TestClient, name: str, definition: dict[str, Any]) -> None:
    response = client.post("/v2/models", json={"name": name, "definition": definition})
    assert response.status_code in (200, 201), response.text


@pytest.fixture
def keyed(tmp_path: Path) -> Any:
    """An app with keys (read, infer-only, admin), its models registered."""
    settings = Settings(
        data_dir=tmp_path / "data",
        api_keys="reader:read,inferrer:infer,boss:*",
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v2/models",
            json={"name": "small", "definition": dense("small", 8)},
            headers={"Authorization": "Bearer boss"},
        )
        assert response.status_code == 201, response.text
        yield client


def test_home_lists_every_model_with_the_sizes_of_its_report(client):
    register(client, "alpha", dense("alpha", 32))
    register(client, "beta", dense("beta", 8))
    register(client, "beta", dense("beta", 64))  # version 2
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = Page(response.text)
    assert sorted(page.rows) == ["alpha", "beta"]
    for name, latest in (("alpha", 1), ("beta", 2)):
        totals = client.get(f"/v2/models/{name}/summary").json()["totals"]
        cells = page.rows[name]
        assert cells[0]["text"] == name
        assert int(cells[1]["v"]) == latest
        assert int(cells[3]["v"]) == totals["params"]
        assert cells[3]["text"] == f"{totals['params']:,}"
        assert int(cells[4]["v"]) == totals["memory_bytes"]
        assert float(cells[5]["v"]) == pytest.approx(totals["compression"])
        assert cells[6]["text"] == "initial"
    # Every version links to its report; the latest to report, definition,
    # metadata; each link answers.
    assert page.links["beta"][:2] == [
        ("1", "/v2/models/beta/versions/1/summary?format=html"),
        ("2", "/v2/models/beta/versions/2/summary?format=html"),
    ]
    assert dict(page.links["beta"][2:]) == {
        "report": "/v2/models/beta/summary?format=html",
        "definition": "/v2/models/beta/definition",
        "metadata": "/v2/models/beta",
    }
    for text, href in page.links["beta"]:
        linked = client.get(href)
        assert linked.status_code == 200, (text, href)
    # Links to the API documentation.
    hrefs = {attrs.get("href") for tag, attrs in page.tags if tag == "a"}
    assert {"/docs", "/redoc", "/openapi.json"} <= hrefs


def test_home_without_models_says_how_to_register(client):
    page = Page(client.get("/").text)
    assert page.rows == {}
    assert any(attrs.get("id") == "empty" for _, attrs in page.tags)


def test_a_hostile_model_name_is_rendered_as_text(client):
    """Names come from clients. The API refuses this one, so it is written to
    the store directly (as another replica, or an older release, could)."""
    register(client, "plain", dense("plain", 8))
    store = client.app.state.store
    record = store.get("plain")
    hostile = "<img src=x onerror=alert(1)>\"'&<script>alert(2)</script>"
    store.register(
        hostile,
        record.content_hash,
        store.load_definition(record.content_hash),
        record.kind,
        record.params,
        record.memory_bytes,
        record.inputs,
        record.outputs,
    )
    page = Page(client.get("/").text)
    assert hostile in page.rows  # the attribute reads back as the name itself
    assert page.rows[hostile][0]["text"] == hostile
    assert [tag for tag, _ in page.tags if tag in ("img", "script")] == ["script"]
    assert "alert(" not in "".join(
        attrs.get("src") or "" for tag, attrs in page.tags if tag == "script"
    )
    # The links percent-encode it: one path segment, nothing interpreted.
    report = dict(page.links[hostile])["report"]
    assert report.startswith("/v2/models/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29")
    assert report.count("/") == 4


@pytest.mark.parametrize(
    ("authorization", "status", "listed", "state"),
    [
        (None, 200, False, "missing"),
        ("Bearer wrong", 401, False, "invalid"),
        ("Basic cmVhZGVy", 401, False, "invalid"),
        ("Bearer inferrer", 403, False, "no-read"),
        ("Bearer reader", 200, True, None),
        ("Bearer boss", 200, True, None),
    ],
    ids=["no-key", "unknown-key", "not-bearer", "infer-only", "read", "all-scopes"],
)
def test_home_with_keys_lists_models_only_for_a_read_key(
    keyed, authorization, status, listed, state
):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = keyed.get("/", headers=headers)
    assert response.status_code == status
    page = Page(response.text)
    assert bool(page.rows) is listed
    notices = [attrs for tag, attrs in page.tags if attrs.get("id") == "auth"]
    if state is None:
        assert notices == []
        assert "small" in page.rows
    else:
        assert [n["data-state"] for n in notices] == [state]
        assert "small" not in response.text  # nothing of the registry shows
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if state == "missing":
        assert "Authorization: Bearer <key>" in "".join(page.text)


def test_home_refuses_a_bad_offset(client):
    response = client.get("/?offset=-1")
    assert response.status_code == 422
    assert "offset" in response.json()["error"]


def _page_assets(text: str) -> set[str]:
    page = Page(text)
    return {
        value
        for tag, attrs in page.tags
        for key, value in attrs.items()
        if tag in ("script", "link", "img") and key in ("src", "href") and value
    }


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_their_assets_from_the_service(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assets = _page_assets(response.text)
    assert assets, "no script or style found"
    assert all(a.startswith(pages.ASSETS_URL + "/") for a in assets), assets
    assert "googleapis" not in response.text
    assert "connect-src 'self'" in response.headers["content-security-policy"]
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000
        kind = served.headers["content-type"]
        assert kind.split(";")[0] in (
            "text/javascript",
            "application/javascript",
            "text/css",
            "image/png",
        )


def test_swagger_ui_keeps_authorize_and_has_no_online_validator(client):
    text = client.get("/docs").text
    assert '"validatorUrl": null' in text
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in text
    assert client.get("/docs/oauth2-redirect").status_code == 200
    # The bearer scheme that the Authorize button offers is in the document.
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"


def test_pages_are_not_operations_of_the_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/docs", "/redoc"} & set(paths)
    assert not [p for p in paths if p.startswith(pages.ASSETS_URL)]


@pytest.mark.parametrize("public_docs", [True, False], ids=["public", "private"])
def test_docs_and_assets_follow_public_docs(tmp_path, public_docs):
    settings = Settings(
        data_dir=tmp_path / "data", api_keys="reader:read", public_docs=public_docs
    )
    with TestClient(create_app(settings)) as client:
        for path in ["/docs", "/redoc", *sorted(pages.asset_paths())]:
            expected = 200 if public_docs else 401
            assert client.get(path).status_code == expected, path
            with_key = client.get(path, headers={"Authorization": "Bearer reader"})
            assert with_key.status_code == 200, path
        assert client.get("/").status_code == 200  # the home page is always open
        assert client.get("/static/docs/../../service/main.py").status_code in (
            401,
            404,
        )


def test_asset_paths_name_the_vendored_files():
    names = {path.rsplit("/", 1)[1] for path in pages.asset_paths()}
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"} <= names


def test_behind_a_proxy_links_carry_the_root_path(tmp_path):
    """Behind a proxy that strips ``/bnn`` (uvicorn ``--root-path /bnn``),
    every link of the pages starts with it."""
    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app, root_path="/bnn") as client:
        register(client, "alpha", dense("alpha", 8))
        page = Page(client.get("/").text)
        hrefs = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
        assert "/bnn/docs" in hrefs
        assert "/bnn/v2/models/alpha/summary?format=html" in hrefs
        assert all(href and href.startswith("/bnn/") for href in hrefs), hrefs
        docs = _page_assets(client.get("/docs").text)
        assert docs and all(a.startswith("/bnn/static/docs/") for a in docs)
        assert "url: '/bnn/openapi.json'" in client.get("/docs").text
