"""The API documentation, offline: ``/docs`` (Swagger UI) and ``/redoc``
(ReDoc) with their JavaScript and CSS served by the service itself.

The files come from the ``fastapi-offline`` package (Swagger UI, ReDoc; MIT),
mounted at :data:`ASSETS_URL`, so the pages work without internet access.
ReDoc's Google Fonts are not loaded and Swagger UI's online validator is off;
the pages' ``Content-Security-Policy`` keeps every request on this origin.
Both the full service and the TensorFlow-free inference replica use it, so
nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = [
    "ASSETS_DIR",
    "ASSETS_URL",
    "DOCS_HEADERS",
    "DOCS_URL",
    "REDOC_URL",
    "asset_paths",
    "install_docs",
    "open_paths",
]

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/static/docs"
"""Where the Swagger UI and ReDoc files are served."""

ASSETS_DIR = Path(str(files("fastapi_offline").joinpath("static")))
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


def open_paths(app: FastAPI) -> frozenset[str]:
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


def install_docs(app: FastAPI) -> None:
    """Serves ``/docs`` (Swagger UI, with its OAuth2 redirect page) and
    ``/redoc`` from the files of :data:`ASSETS_DIR`.

    The app must be created with ``docs_url=None, redoc_url=None`` (FastAPI's
    own pages load their scripts from a CDN).
    """
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
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

    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers.update(DOCS_HEADERS)
        return page

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(REDOC_URL, redoc, methods=["GET"], include_in_schema=False)
    if redirect_url:

        def oauth2_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        app.add_api_route(
            redirect_url, oauth2_redirect, methods=["GET"], include_in_schema=False
        )
