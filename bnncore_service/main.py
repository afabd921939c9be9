"""The FastAPI application: ``create_app(settings)`` and the default ``app``.

``uvicorn bnncore_service.main:app`` serves the embedded default (SQLite and files
under ``./data``, or ``BNN_DATA_DIR``). The registry is opened in the
lifespan, so importing this module touches no file.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import bnncore
from bnncore_service import docs, errors, fastpath
from bnncore_service.auth import ApiKeyAuth, ScopeTable, include_router
from bnncore_service.config import Settings, SettingsError, load_settings
from bnncore_service.database import DatabaseURLError, check_url
from bnncore_service.inference import InferenceService
from bnncore_service.limits import BodySizeLimit
from bnncore_service.logs import RequestLog, with_logging
from bnncore_service.metrics import Metrics, MetricsMiddleware
from bnncore_service.metrics import router as metrics_router
from bnncore_service.preload import Preloader
from bnncore_service.registry import Registry
from bnncore_service.routes import (
    health,
    inference,
    models,
    pages,
    reports,
    triton,
    weights,
)
from bnncore_service.runtime import Runtime, freeze_startup_objects
from bnncore_service.store import Store
from bnncore_service.uploads import DeferredBody

if TYPE_CHECKING:
    from bnncore_service.inference_app import InferenceReplica

__all__ = ["app", "create_app", "required_scope"]

DESCRIPTION = """\
Model definitions in, exact binarized-network reports out, and a persistent
model registry. Definitions are validated against an allow-list and sized
analytically before anything is built; they are never passed to Keras
deserialization. Every error is `{"error": "<message>"}`.

When the service has `BNN_API_KEYS` set, every operation except the health
probes needs `Authorization: Bearer <key>` with the scope its security
requirement names (`read`, `infer` or `admin`); use **Authorize** to send one.
"""


def _version() -> str:
    return bnncore.__version__


def _engine_isa() -> str:
    from bnncore.engine import kernels

    return kernels.isa()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the service.

    Args:
        settings: Configuration; ``None`` reads ``BNN_*`` environment variables.

    Returns:
        The FastAPI app; its lifespan opens the registry and the build executor.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings).open()
        store.sweep(settings.sweep_grace_s)  # what crashed writes left behind
        freeze_startup_objects()  # cheap collections after model evictions
        runtime = Runtime(settings)
        app.state.store = store
        app.state.runtime = runtime
        registry = Registry(settings, store, runtime)  # the routes' use cases
        app.state.registry = registry
        serving = InferenceService(settings, registry, app.state.metrics)
        app.state.inference = serving
        # BNN_PRELOAD: loads in the background; live at once, ready when loaded.
        preloader = Preloader(settings.preload_targets(), settings.preload_retry_s)
        app.state.preload = preloader
        preloader.start(serving)
        try:
            yield
        finally:
            await preloader.stop()
            serving.close()
            runtime.close()
            store.close()

    app = FastAPI(
        title="bnncore model service",
        version=bnncore.__version__,
        description=DESCRIPTION,
        lifespan=with_logging(  # BNN_LOG_*, lifecycle lines
            lifespan, settings, _version, _engine_isa
        ),
        docs_url=None,  # docs.install_docs: Swagger UI and ReDoc served here
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()  # this app's own registry (GET /metrics)
    errors.install(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        overrides=[
            (
                "PUT",
                weights.WEIGHTS_PATH,
                settings.max_weights_bytes,
                "BNN_MAX_WEIGHTS_BYTES",
            )
        ],
    )
    # Added after (so outside) the body limit: a request without a valid key
    # is refused before its body is read; CORS outermost, so that preflights
    # and error responses carry its headers.
    # Each route declares its scope (bnncore_service/auth.py); the home page is
    # declared open: it checks the key itself and lists models only to a key
    # with the read scope (bnncore_service/routes/pages.py).
    app.add_middleware(
        ApiKeyAuth,
        keys=settings.api_key_scopes(),
        open_paths=docs.open_paths(app) if settings.public_docs else frozenset(),
    )
    # Outside the body limit (which buffers what it passes; for uploads it only
    # checks the declared length) and the key check: a weights upload's body
    # is left for its route, which checks the version, the declared length
    # and the uploads in progress first, then streams it to a file capped as
    # it arrives; any reply before the whole body (401 and 403 too) closes
    # the connection.
    app.add_middleware(DeferredBody, routes=[("PUT", weights.WEIGHTS_PATH)])
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Inference-Header-Content-Length",
            ],
            max_age=600,
        )
    # Outermost: counts and times every request, refusals by the others too.
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    # Around it: logs refused, failed and slow requests (bnncore_service/logs.py).
    app.add_middleware(RequestLog, slow_ms=settings.slow_request_ms)
    # Each protected route declares the bearer scheme (and its scope) in OpenAPI.
    for router in (
        health.router,
        reports.router,
        triton.router,  # before models: GET /v2/models/stats is not a model name
        models.router,
        weights.router,
        inference.router,
        metrics_router,
    ):
        include_router(app, router)
    app.include_router(pages.router)  # GET /, not in the OpenAPI document
    docs.install_docs(app)
    # Inference requests dispatched without the router's scan (fastpath.py).
    fastpath.install(app, fastpath.hot_routes(inference.router))
    _share_openapi(app)
    return app


_openapi_cache: dict[str, Any] = {}


def _share_openapi(app: FastAPI) -> None:
    """Generates the OpenAPI document once per process (it takes seconds: the
    definition language has ~70 layer types) and shares it between app instances.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if "schema" not in _openapi_cache:
            _openapi_cache["schema"] = generate()
        app.openapi_schema = _openapi_cache["schema"]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_service_scopes: list[ScopeTable] = []


def required_scope(method: str, path: str) -> str | None:
    """The scope a request to the full service needs (``None``: open), as
    declared on the route it reaches (:class:`~bnncore_service.auth.ScopeTable`
    of :func:`create_app`'s routes, built once)."""
    if not _service_scopes:
        _service_scopes.append(ScopeTable(create_app(Settings()).routes))
    return _service_scopes[0].scope(method, path)


def _app_from_environment() -> FastAPI | InferenceReplica:
    """The app of the ``BNN_*`` environment; a bad value stops the start with
    one line on stderr naming the variable and the expected form (exit 2), and
    so does a database URL whose driver is not installed."""
    try:
        settings = load_settings()
        check_url(settings.resolved_database_url())
        if settings.role == "inference":
            # uvicorn bnncore_service.main:app with BNN_ROLE=inference: the inference
            # replica all the same (with TensorFlow imported by this module;
            # python -m bnncore_service and bnncore_service.inference_app:app leave
            # it out).
            from bnncore_service.inference_app import create_inference_app

            return create_inference_app(settings)
    except (SettingsError, DatabaseURLError) as exc:
        print(f"bnncore service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return create_app(settings)


app: Any = _app_from_environment()
