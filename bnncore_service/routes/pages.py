"""Pages for a browser: the home page (``GET /``) and the API documentation
(``/docs``, ``/redoc``) with Swagger UI and ReDoc served by the service itself.

The home page is server-rendered HTML with inline CSS and a few lines of
inline JavaScript (table sorting); it loads nothing, and its
``Content-Security-Policy`` makes the browser refuse any request it would make.
Every value from the registry (model names come from clients) is escaped.

Authentication: the page is open, so that a browser can always reach it and
learn how to authenticate, and it lists models only to a caller allowed to
read them. With ``BNN_API_KEYS`` set, a request without ``Authorization:
Bearer <key>`` gets the page without models and the instructions; an invalid
key gets 401, a key without the ``read`` scope 403. A browser sends no such
header from a link, so behind authentication the list is for tools that send
it (``curl -H``, a proxy that adds it). The key is never accepted in the URL
(it would end up in access logs and browser history).

The documentation pages are installed by :func:`bnncore_service.docs.install_docs`
(re-exported here): Swagger UI and ReDoc from the ``fastapi-offline`` package,
so ``/docs`` and ``/redoc`` work without internet access.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

import bnncore
from bnncore.analysis.html_report import SORT_JS
from bnncore_service.auth import OPEN, ApiKeyAuth
from bnncore_service.docs import (
    ASSETS_URL,
    DOCS_URL,
    REDOC_URL,
    asset_paths,
    install_docs,
)
from bnncore_service.registry_deps import RegistryDep
from bnncore_service.routes import models
from bnncore_service.routes.reports import HTML_HEADERS
from bnncore_service.schemas.reports import ModelList

__all__ = [
    "ASSETS_URL",
    "DOCS_URL",
    "HOME_URL",
    "REDOC_URL",
    "HomeRow",
    "asset_paths",
    "home_rows",
    "install_docs",
    "render_home",
    "router",
]

HOME_URL = "/"
PAGE_SIZE = 100
"""Models per home page (the model list's largest page)."""

router = APIRouter(tags=["pages"])

esc = html.escape


@dataclass(frozen=True)
class HomeRow:
    """One model on the home page, with its latest version's sizes.

    Attributes:
        name: The model's name.
        versions: Every registered version, ascending.
        params: Parameters of the latest version.
        memory_bytes: Its memory (bytes, as the profile counts it).
        compression: Its float-32 bytes / memory bytes (``None``: unknown
            without building, for a zoo definition).
        weights_uploaded: Whether weights were uploaded for it.
    """

    name: str
    versions: tuple[int, ...]
    params: int
    memory_bytes: int
    compression: float | None
    weights_uploaded: bool

    @property
    def latest(self) -> int:
        """The latest version."""
        return self.versions[-1]


def _granted(request: Request) -> frozenset[str] | None:
    """The caller's scopes: every scope when the service is open, ``None`` for
    a missing or invalid key."""
    keys = request.app.state.settings.api_key_scopes()
    if not keys:
        return frozenset({"read", "infer", "admin"})
    header = request.headers.get("authorization")
    checker = ApiKeyAuth(None, keys)
    return checker.authorize(None if header is None else header.encode("latin-1"))


def home_rows(page: ModelList) -> list[HomeRow]:
    """The rows of a page of ``GET /v2/models`` (its latest versions)."""
    rows = []
    for entry in page.models:
        if not entry.version_details:  # every version deleted meanwhile
            continue
        latest = entry.version_details[-1]
        rows.append(
            HomeRow(
                name=entry.name,
                versions=tuple(d.version for d in entry.version_details),
                params=latest.params,
                memory_bytes=latest.memory_bytes,
                compression=latest.compression,
                weights_uploaded=latest.weights_uploaded,
            )
        )
    return rows


# ----------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;
padding:1em 1.5em;color:#222}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.4em}
nav a{margin-right:1em}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right;
white-space:nowrap}
th:first-child,td:first-child,td.links,th.links{text-align:left}
thead th{background:#f4f4f4;cursor:pointer}
thead th[data-dir=asc]::after{content:" \\25B2"}
thead th[data-dir=desc]::after{content:" \\25BC"}
.notice{border:1px solid #e0b252;background:#fff8e6;border-radius:6px;
padding:.6em .9em}
code,pre{background:#f4f4f4;padding:1px 4px;border-radius:3px}
.muted{color:#666}
"""


def _bytes(n_bytes: int) -> str:
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / 1024 / 1024:.2f} MiB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.2f} KiB"
    return f"{n_bytes} B"


def _compression(value: float | None) -> str:
    if value is None:  # sorts last
        return '<td data-v="-1" title="known once built: see the report">n/a</td>'
    return f'<td data-v="{value!r}">{value:.2f} ×</td>'


def _model_url(name: str, version: int | None = None, tail: str = "") -> str:
    path = f"/v2/models/{quote(name, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    return path + tail


def _link(url: str, text: str, root: str = "") -> str:
    """A link to a path of this service (``root``: the proxy's root path)."""
    return f'<a href="{esc(root + url)}">{esc(text)}</a>'


def _table(rows: list[HomeRow], root: str) -> str:
    head = (
        '<th data-sort="text">Model</th>'
        '<th data-sort="number" title="Latest version">Latest</th>'
        '<th class="links">Versions (reports)</th>'
        '<th data-sort="number">Parameters</th>'
        '<th data-sort="number">Memory</th>'
        '<th data-sort="number" title="Float-32 bytes / memory">Compression</th>'
        '<th data-sort="text">Weights</th>'
        '<th class="links">Latest version</th>'
    )
    body = []
    for row in rows:
        versions = ", ".join(
            _link(_model_url(row.name, v, "/summary?format=html"), str(v), root)
            for v in row.versions
        )
        links = " · ".join(
            (
                _link(
                    _model_url(row.name, tail="/summary?format=html"), "report", root
                ),
                _link(_model_url(row.name, tail="/definition"), "definition", root),
                _link(_model_url(row.name), "metadata", root),
            )
        )
        body.append(
            f'<tr data-name="{esc(row.name)}"><td>{esc(row.name)}</td>'
            f'<td data-v="{row.latest}">{row.latest}</td>'
            f'<td class="links">{versions}</td>'
            f'<td data-v="{row.params}">{row.params:,}</td>'
            f'<td data-v="{row.memory_bytes}" title="{row.memory_bytes:,} bytes">'
            f"{esc(_bytes(row.memory_bytes))}</td>"
            f"{_compression(row.compression)}"
            f"<td>{'uploaded' if row.weights_uploaded else 'initial'}</td>"
            f'<td class="links">{links}</td></tr>'
        )
    return (
        f'<table id="models" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _auth_notice(state: str) -> str:
    example = '<pre>curl -H "Authorization: Bearer $KEY" http://HOST:PORT/</pre>'
    reasons = {
        "missing": "This service requires an API key (<code>BNN_API_KEYS</code> "
        "is set). Send it in the <code>Authorization: Bearer &lt;key&gt;</code> "
        "header to see the models:",
        "invalid": "The API key sent is not valid. Send a valid key in the "
        "<code>Authorization: Bearer &lt;key&gt;</code> header:",
        "no-read": "This API key lacks the <code>read</code> scope, which "
        "listing the models needs.",
    }
    text = reasons[state] + (example if state != "no-read" else "")
    return (
        f'<div id="auth" class="notice" data-state="{state}"><p>{text}</p>'
        "<p>A browser does not send this header from a link; use a tool or a "
        "proxy that adds it. In the API documentation, <b>Authorize</b> "
        "takes the key.</p></div>"
    )


def _page(body: str, root: str) -> str:
    nav = " ".join(
        _link(url, text, root)
        for url, text in (
            (DOCS_URL, "API documentation (Swagger UI)"),
            (REDOC_URL, "ReDoc"),
            ("/openapi.json", "OpenAPI document"),
            ("/v2", "server metadata"),
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>bnncore model service</title><style>{CSS}</style></head><body>"
        f"<header><h1>bnncore model service</h1>"
        f'<p class="muted">version {esc(bnncore.__version__)}</p>'
        f"<nav>{nav}</nav></header>{body}<script>{SORT_JS}</script></body></html>"
    )


def render_home(
    rows: list[HomeRow] | None,
    total: int,
    offset: int,
    auth: str | None,
    root: str = "",
) -> str:
    """The home page's HTML.

    Args:
        rows: The models of this page; ``None``: the caller may not list them.
        total: Registered model names in all.
        offset: Position of the first row among all names.
        auth: ``None`` (no notice), ``"missing"``, ``"invalid"`` or
            ``"no-read"``: why the list is withheld.
        root: The root path the service is mounted at behind a proxy
            (``--root-path``), prefixed to every link.

    Returns:
        A complete HTML page.
    """
    parts = [] if auth is None else [_auth_notice(auth)]
    if rows is not None:
        parts.append(f'<h2>Registered models <span class="muted">({total})</span></h2>')
        if not rows and offset == 0:
            parts.append(
                '<p id="empty">No model is registered yet: '
                f"<code>POST /v2/models</code> ({_link(DOCS_URL, 'how', root)}).</p>"
            )
        else:
            parts.append(_table(rows, root))
            pages = []
            if offset > 0:
                pages.append(
                    _link(f"/?offset={max(0, offset - PAGE_SIZE)}", "previous", root)
                )
            if offset + PAGE_SIZE < total:
                pages.append(_link(f"/?offset={offset + PAGE_SIZE}", "next", root))
            if pages:
                parts.append(f"<p>{' · '.join(pages)}</p>")
            parts.append(
                '<p class="muted">Sizes are the latest version\'s, counted as '
                "<code>bnncore.models.profile</code> does (1-bit weights take "
                "one bit; compression: float-32 bytes / memory). Click a column "
                "header to sort.</p>"
            )
    return _page("".join(parts), root)


@router.get(
    HOME_URL,
    dependencies=[OPEN],
    response_class=HTMLResponse,
    include_in_schema=False,
)
async def home(
    request: Request,
    registry: RegistryDep,
    cache: models.SizeCacheDep,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> HTMLResponse:
    """The home page: registered models with their sizes and links."""
    granted = _granted(request)
    root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy
    headers = dict(HTML_HEADERS)
    if granted is None:
        has_header = "authorization" in request.headers
        if has_header:
            headers["WWW-Authenticate"] = (
                'Bearer realm="bnncore", error="invalid_token"'
            )
        return HTMLResponse(
            render_home(None, 0, offset, "invalid" if has_header else "missing", root),
            status_code=401 if has_header else 200,
            headers=headers,
        )
    if "read" not in granted:
        return HTMLResponse(
            render_home(None, 0, offset, "no-read", root),
            status_code=403,
            headers=headers,
        )
    # The model list's own route function: the same query and sizes.
    page = await models.list_models(
        request, registry, cache, limit=PAGE_SIZE, offset=offset
    )
    return HTMLResponse(
        render_home(home_rows(page), page.total, offset, None, root),
        headers=headers,
    )
