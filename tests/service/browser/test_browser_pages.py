"""The service's pages and the HTML report in a real browser: headless
Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium,
against ``python -m bnncore_service`` on loopback.

The oracle is the service's JSON: the models registered here, their JSON
reports (layer counts, parameters, memory, MACs). Every page visit also checks,
from Chrome's performance log (``Network`` events), that no request left the
machine: each URL requested is loopback, ``data:``, ``about:`` or a loopback
``blob:``, or was refused unsent by the page's Content-Security-Policy.
Screenshots of each page go
to ``$BNN_TEST_ARTIFACTS/browser/`` when that variable is set, otherwise to a
pytest temporary directory (its path is printed with ``-rA``/``-s``).

The browser set-up is ``scripts/screenshots.py``'s (the README's screenshots
come from the same code). Outside CI, a missing browser skips these tests; in
CI (``CI`` set) it fails them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import require_browser, shots

require_browser()

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

MODELS = shots.sample_definitions()


# ----------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-data")


@pytest.fixture(scope="module")
def base(start_service: Callable[..., Any], data_dir: Path) -> str:
    """The service, with :data:`MODELS` registered."""
    service = start_service(data_dir)
    shots.register(service.base, MODELS)
    return service.base


@pytest.fixture(scope="module")
def reports(base: str) -> dict[str, dict[str, Any]]:
    """The JSON report of each registered model (the oracle)."""
    return {
        name: httpx.get(
            f"{base}/v2/models/{name}/summary", params={"format": "json"}, timeout=60
        ).json()
        for name in MODELS
    }


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go (``$BNN_TEST_ARTIFACTS/browser`` or a temporary
    directory)."""
    root = os.environ.get("BNN_TEST_ARTIFACTS")
    if root:
        path = Path(root) / "browser"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("browser-artifacts")


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    browser = shots.chrome()
    try:
        yield browser
    finally:
        browser.quit()


def _open(
    driver: Any, url: str, ready: str, timeout: float = 60
) -> list[tuple[str, str | None]]:
    """Loads ``url``, waits for the CSS selector ``ready``, and checks that no
    request left the machine (this page's, and any late one of the page
    before).

    Returns:
        The requests made (:func:`requested_urls`).
    """
    shots.requested_urls(driver)  # drains the log
    driver.get(url)
    WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ready))
    )
    requests = shots.requested_urls(driver)
    assert requests, "the performance log recorded no request"
    assert shots.sent_outside(requests) == [], url
    return requests


def _drawn_layers(report: dict[str, Any]) -> list[str]:
    """Top-level layers with weights or MACs: the report's chart rows."""
    return [
        layer["name"]
        for layer in report["layers"]
        if layer["memory_bits"] or layer["macs"]
    ]


# ----------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------


def test_home_page_lists_the_registered_models_with_their_sizes(
    driver, base, reports, artifacts
):
    _open(driver, f"{base}/", "#models tbody tr")
    rows = driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    shown = {
        row.get_attribute("data-name"): row.find_elements(By.TAG_NAME, "td")
        for row in rows
    }
    assert sorted(shown) == sorted(MODELS)
    header = [
        th.text for th in driver.find_elements(By.CSS_SELECTOR, "#models thead th")
    ]
    for name, cells in shown.items():
        totals = reports[name]["totals"]
        params = cells[header.index("Parameters")]
        memory = cells[header.index("Memory")]
        assert int(params.get_attribute("data-v")) == totals["params"]
        assert params.text == f"{totals['params']:,}"
        assert int(memory.get_attribute("data-v")) == totals["memory_bytes"]
    links = {
        a.text: a.get_attribute("href")
        for a in shown["cifar-bnn"][-1].find_elements(By.TAG_NAME, "a")
    }
    assert links == {
        "report": f"{base}/v2/models/cifar-bnn/summary?format=html",
        "definition": f"{base}/v2/models/cifar-bnn/definition",
        "metadata": f"{base}/v2/models/cifar-bnn",
    }
    nav = {
        a.text: a.get_attribute("href")
        for a in driver.find_elements(By.CSS_SELECTOR, "nav a")
    }
    assert {f"{base}/docs", f"{base}/redoc", f"{base}/openapi.json"} <= set(
        nav.values()
    )
    shots.screenshot(driver, artifacts / "home.png")


def test_following_the_report_link_shows_one_bar_per_layer(
    driver, base, reports, artifacts
):
    _open(driver, f"{base}/", "#models tbody tr")
    row = driver.find_element(By.CSS_SELECTOR, '#models tr[data-name="mnist-bnn"]')
    row.find_element(By.LINK_TEXT, "report").click()
    WebDriverWait(driver, 20).until(
        expected_conditions.presence_of_element_located((By.ID, "memory-chart"))
    )
    assert shots.sent_outside(shots.requested_urls(driver)) == []
    expected = _drawn_layers(reports["mnist-bnn"])
    assert len(expected) >= 5  # convolutions, batch norms, dense layers
    for chart in ("memory-chart", "macs-chart"):
        bars = driver.find_elements(By.CSS_SELECTOR, f"#{chart} g.bar")
        assert [b.get_attribute("data-label") for b in bars] == expected
    # The bars are drawn: each one with memory has a visible width.
    layers = {layer["name"]: layer for layer in reports["mnist-bnn"]["layers"]}
    for bar in driver.find_elements(By.CSS_SELECTOR, "#memory-chart g.bar"):
        width = sum(
            segment.rect["width"]
            for segment in bar.find_elements(By.CSS_SELECTOR, "rect.segment")
        )
        assert (width > 0) == (
            layers[bar.get_attribute("data-label")]["memory_bits"] > 0
        )
    shots.screenshot(driver, artifacts / "report-mnist-bnn.png", full_page=True)


def test_a_hostile_model_name_runs_no_script(driver, base, data_dir):
    """The API refuses such a name; it is written to the store directly (as
    another replica or an older release could), then removed."""
    from bnncore_service.config import Settings
    from bnncore_service.store import Store

    hostile = (
        "<img src=x onerror=\"document.title='pwned'\">"
        "<script>document.title='pwned'</script>"
    )
    store = Store(Settings(data_dir=data_dir)).open()
    try:
        record = store.get("mnist-bnn")
        assert record is not None
        created, _ = store.register(
            hostile,
            record.content_hash,
            store.load_definition(record.content_hash),
            record.kind,
            record.params,
            record.memory_bytes,
            record.inputs,
            record.outputs,
        )
        try:
            _open(driver, f"{base}/", "#models tbody tr")
            cells = driver.find_elements(By.CSS_SELECTOR, "#models tbody td")
            assert hostile in [cell.text for cell in cells]  # shown as text
            assert driver.title == "bnncore model service"
            assert driver.find_elements(By.CSS_SELECTOR, "#models img") == []
            row = next(
                r
                for r in driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")
                if r.get_attribute("data-name") == hostile
            )
            report = row.find_element(By.LINK_TEXT, "report").get_attribute("href")
            assert report.startswith(f"{base}/v2/models/%3Cimg%20src%3Dx")
        finally:
            store.delete(hostile, created.version)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("column", "key"),
    [("Params", "params"), ("MACs", "macs")],
    ids=["params", "macs"],
)
def test_report_table_sorts_by_a_column(driver, base, reports, column, key):
    _open(driver, f"{base}/v2/models/cifar-bnn/summary?format=html", "table.layers")
    headers = driver.find_elements(By.CSS_SELECTOR, "table.layers thead th")
    index = [h.text for h in headers].index(column)
    layers = reports["cifar-bnn"]["layers"]

    def order() -> list[tuple[str, int]]:
        rows = driver.find_elements(By.CSS_SELECTOR, "table.layers tbody tr")
        return [
            (
                row.find_elements(By.TAG_NAME, "td")[0].text.strip(),
                int(
                    row.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-v")
                ),
            )
            for row in rows
        ]

    before = order()
    assert before == [(layer["name"], layer[key]) for layer in layers]  # graph order
    headers[index].click()
    ascending = [value for _, value in order()]
    assert ascending == sorted(layer[key] for layer in layers)
    headers[index].click()
    descending = order()
    assert [value for _, value in descending] == sorted(
        (layer[key] for layer in layers), reverse=True
    )
    assert sorted(descending) == sorted(before)  # same rows, only reordered


def test_home_table_sorts_by_parameters(driver, base, reports):
    _open(driver, f"{base}/", "#models tbody tr")
    header = driver.find_element(By.XPATH, "//table[@id='models']//th[.='Parameters']")

    def names() -> list[str | None]:
        return [
            row.get_attribute("data-name")
            for row in driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")
        ]

    by_params = sorted(MODELS, key=lambda n: reports[n]["totals"]["params"])
    assert names() == sorted(MODELS)  # by name, as the model list
    header.click()
    assert names() == by_params
    header.click()
    assert names() == by_params[::-1]


def test_api_docs_render_offline(driver, base, artifacts):
    requests = _open(driver, f"{base}/docs", ".opblock")
    operations = {
        element.text.replace("\u200b", "")
        for element in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert {"/v2/models", "/v2/summary", "/v2/health/ready"} <= operations
    assert driver.find_elements(By.CSS_SELECTOR, "button.authorize")
    shots.screenshot(driver, artifacts / "docs.png")
    requests += _open(driver, f"{base}/redoc", "[data-section-id]")
    assert len(driver.find_elements(By.CSS_SELECTOR, "[data-section-id]")) > 10
    assert "bnncore model service" in driver.find_element(By.TAG_NAME, "h1").text
    shots.screenshot(driver, artifacts / "redoc.png")
    # The scripts, styles and the OpenAPI document came from the service
    # (the log does record requests: _open's check is not vacuous).
    urls = {url for url, _ in requests}
    assert {
        f"{base}{path}"
        for path in (
            "/openapi.json",
            "/static/docs/swagger-ui-bundle.js",
            "/static/docs/swagger-ui.css",
            "/static/docs/redoc.standalone.js",
        )
    } <= urls
    # ReDoc's bundle shows Redocly's logo from its CDN whatever its options:
    # the docs' Content-Security-Policy makes the browser refuse it unsent.
    assert {r for url, r in requests if not shots.is_local(url)} <= {"csp"}


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/docs", True),
        ("http://localhost/x", True),
        ("data:image/png;base64,AAAA", True),
        ("blob:http://127.0.0.1:8000/3e4f", True),
        ("about:blank", True),
        ("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css", False),
        ("https://fonts.googleapis.com/css?family=Montserrat", False),
        ("http://127.0.0.1.example.com/", False),
        ("blob:https://example.com/3e4f", False),
        ("ws://10.0.0.1/socket", False),
    ],
    ids=lambda value: str(value)[:30],
)
def test_is_local_tells_loopback_from_the_network(url, local):
    assert shots.is_local(url) is local
