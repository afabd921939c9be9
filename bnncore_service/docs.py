"""The API documentation, offline: ``/docs`` (Swagger UI) and ``/redoc``
(ReDoc) with their JavaScript and CSS served by the service itself.

The files come from the ``fastapi-offline`` package (Swagger UI, ReDoc; MIT),
mounted at :data:`ASSETS_URL`, so the pages work without internet access.
ReDoc's Google Fonts are not loaded and Swagger UI's online validator is off;
the pages' ``Content-Security-Policy`` keeps every request on this origin.
Both the full service (:func:`install_docs`) and the TensorFlow-free
inference replica (:func:`docs_routes`, Starlette routes) use it, so nothing
here imports Keras or TensorFlow, and FastAPI (whose page templates these
are) only when a page is asked for.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bnncore_service.keyauth import ScopedRoute

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "ASSETS_DIR",
    "ASSETS_URL",
    "DOCS_HEADERS",
    "DOCS_URL",
    "REDOC_URL",
    "asset_paths",
    "docs_routes",
    "install_docs",
    "open_paths",
]

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/static/docs"
"""Where the Swagger UI and ReDoc files are served."""


def _package_dir(name: str) -> Path:
    """Where the top-level package ``name`` is installed (found, not imported:
    ``fastapi_offline`` imports FastAPI)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{name}: not installed", name=name)
    return Path(next(iter(spec.submodule_search_locations)))


ASSETS_DIR = _package_dir("fastapi_offline") / "static"
"""The files shipped by ``fastapi-offline``: ``swagger-ui-bundle.js``,
``swagger-ui.css``, ``redoc.standalone.js``, ``favicon.png``."""

# The documentation pages run the vendored scripts and fetch /openapi.json
# from this origin only; ReDoc runs its search in a blob: worker.
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self' "
    "'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; font-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
}


def asset_paths() -> frozenset[str]:
    """URL paths of the documentation's asset files (open like the docs)."""
    return frozenset(
        f"{ASSETS_URL}/{path.name}" for path in ASSETS_DIR.iterdir() if path.is_file()
    )


def open_paths(app: Any) -> frozenset[str]:
    """Every path of the documentation: the pages, the OpenAPI document, the
    OAuth2 redirect page and the asset files (open when ``BNN_PUBLIC_DOCS``)."""
    paths = (
        DOCS_URL,
        REDOC_URL,
        app.openapi_url,
        app.swagger_ui_oauth2_redirect_url,
        *asset_paths(),
    )
    return frozenset(p for p in paths if p)


def _root(request: Request) -> str:
    """The root path the app is served under (behind a proxy), or ``""``."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def swagger_ui_page(app: Any, request: Request) -> HTMLResponse:
    """Swagger UI for ``app`` (a FastAPI app, or an app with its ``title``,
    ``openapi_url`` and ``swagger_ui_*`` attributes), its files served here."""
    from fastapi.openapi.docs import get_swagger_ui_html

    root = _root(request)
    redirect_url = app.swagger_ui_oauth2_redirect_url
    page = get_swagger_ui_html(
        openapi_url=root + (app.openapi_url or "/openapi.json"),
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=redirect_url and root + redirect_url,
        init_oauth=app.swagger_ui_init_oauth,
        swagger_ui_parameters={
            **(app.swagger_ui_parameters or {}),
            "validatorUrl": None,  # no request to the online validator
        },
    )
    page.headers.update(DOCS_HEADERS)
    return page


def redoc_page(app: Any, request: Request) -> HTMLResponse:
    """ReDoc for ``app``, its files served here."""
    from fastapi.openapi.docs import get_redoc_html

    root = _root(request)
    page = get_redoc_html(
        openapi_url=root + (app.openapi_url or "/openapi.json"),
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )
    page.headers.update(DOCS_HEADERS)
    return page


def oauth2_redirect_page() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page."""
    from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html

    return get_swagger_ui_oauth2_redirect_html()


def install_docs(app: FastAPI) -> None:
    """Serves ``/docs`` (Swagger UI, with its OAuth2 redirect page) and
    ``/redoc`` from the files of :data:`ASSETS_DIR`.

    The app must be created with ``docs_url=None, redoc_url=None`` (FastAPI's
    own pages load their scripts from a CDN).
    """
    redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def swagger_ui(request: Request) -> HTMLResponse:
        return swagger_ui_page(app, request)

    def redoc(request: Request) -> HTMLResponse:
        return redoc_page(app, request)

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(REDOC_URL, redoc, methods=["GET"], include_in_schema=False)
    if redirect_url:

        def oauth2_redirect() -> HTMLResponse:
            return oauth2_redirect_page()

        app.add_api_route(
            redirect_url, oauth2_redirect, methods=["GET"], include_in_schema=False
        )


def docs_routes(app: Any) -> list[BaseRoute]:
    """The documentation of a Starlette ``app`` that has FastAPI's document
    attributes (``title``, ``openapi_url``, ``swagger_ui_*``,
    ``root_path_in_servers``) and an ``openapi()`` method, as routes:
    ``/openapi.json`` (made by ``app.openapi()`` off the event loop, with the
    root path as its first server, as FastAPI serves it), the pages of
    :func:`install_docs` and their files, answering as a FastAPI app with
    :func:`install_docs` does (the pages take ``GET`` only, the document
    ``GET`` and ``HEAD``)."""

    async def openapi(request: Request) -> Response:
        root = _root(request)
        schema = await run_in_threadpool(app.openapi)
        servers = schema.get("servers", [])
        listed = {server.get("url") for server in servers}
        if root and app.root_path_in_servers and root not in listed:
            schema = {**schema, "servers": [{"url": root}, *servers]}
        return JSONResponse(schema)

    def swagger_ui(request: Request) -> HTMLResponse:
        return swagger_ui_page(app, request)

    def redoc(request: Request) -> HTMLResponse:
        return redoc_page(app, request)

    def oauth2_redirect(request: Request) -> HTMLResponse:
        return oauth2_redirect_page()

    # The pages need the scope FastAPI's undeclared GET routes get: read.
    pages = [(DOCS_URL, swagger_ui), (REDOC_URL, redoc)]
    if app.swagger_ui_oauth2_redirect_url:
        pages.append((app.swagger_ui_oauth2_redirect_url, oauth2_redirect))
    return [
        Route(app.openapi_url, openapi, methods=["GET"], include_in_schema=False),
        Mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets"),
        *(
            ScopedRoute(
                path, page, methods=["GET"], scope="read", include_in_schema=False
            )
            for path, page in pages
        ),
    ]
