"""The one table-sorting script (``bnncore.analysis.html_report.SORT_JS``,
used by the HTML report and the service's home page), run in Chromium on a
table built here.

Oracles: Python's ordering of the same values (numbers numerically, names
case-insensitively, as a locale orders them), and the rows as written for a
header that does not sort. Outside CI, a missing browser skips these tests;
in CI (``CI`` set) it fails them.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import require_browser, shots

from bnncore.analysis.html_report import SORT_JS

require_browser()

from selenium.webdriver.common.by import By  # noqa: E402

# (name, size or None for a cell without data-v, link text)
ROWS = [
    ("beta", 10, "x"),
    ("Alpha", 9, "z"),
    ("gamma", None, "y"),
    ("Delta", 100, "w"),
    ("epsilon", 2, "v"),
]


def _page(tmp_path: Path) -> str:
    rows = []
    for name, size, link in ROWS:
        cell = "<td>n/a</td>" if size is None else f'<td data-v="{size}">{size}</td>'
        rows.append(
            f"<tr data-name={html.escape(name)!r}><td>{html.escape(name)}</td>"
            f"{cell}<td>{link}</td></tr>"
        )
    page = (
        '<!doctype html><html><body><table id="t" class="sortable"><thead><tr>'
        '<th data-sort="text">Name</th><th data-sort="number">Size</th>'
        "<th>Links</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        f"<script>{SORT_JS}</script></body></html>"
    )
    path = tmp_path / "sort.html"
    path.write_text(page, encoding="utf-8")
    return path.as_uri()


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    browser = shots.chrome()
    try:
        yield browser
    finally:
        browser.quit()


def _names(driver: Any) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#t tbody tr")
    return [row.get_attribute("data-name") for row in rows]


def _header(driver: Any, text: str) -> Any:
    return driver.find_element(By.XPATH, f"//table[@id='t']//th[.='{text}']")


WRITTEN = [name for name, _, _ in ROWS]


def test_numbers_sort_numerically_with_cells_without_a_value_last(
    driver, tmp_path
) -> None:
    driver.get(_page(tmp_path))
    assert _names(driver) == WRITTEN
    known = sorted((r for r in ROWS if r[1] is not None), key=lambda r: r[1])
    ascending = [r[0] for r in known] + ["gamma"]
    header = _header(driver, "Size")
    header.click()
    assert _names(driver) == ascending
    assert header.get_attribute("data-dir") == "asc"
    header.click()
    assert _names(driver) == ascending[::-1]
    assert header.get_attribute("data-dir") == "desc"


def test_text_sorts_as_a_reader_expects_not_by_code_unit(driver, tmp_path) -> None:
    driver.get(_page(tmp_path))
    header = _header(driver, "Name")
    header.click()
    by_reader = sorted(WRITTEN, key=str.lower)
    assert by_reader != sorted(WRITTEN)  # the cases tell the two orders apart
    assert _names(driver) == by_reader
    header.click()
    assert _names(driver) == by_reader[::-1]


def test_a_header_without_data_sort_does_not_sort(driver, tmp_path) -> None:
    driver.get(_page(tmp_path))
    links = _header(driver, "Links")
    links.click()
    assert _names(driver) == WRITTEN
    assert links.get_attribute("data-dir") is None
