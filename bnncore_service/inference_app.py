"""The inference replica: ``create_inference_app(settings)`` and its ``app``.

A replica started with ``BNN_ROLE=inference`` (``python -m bnncore_service``, or
``uvicorn bnncore_service.inference_app:app``) serves inference only, for the models
registered in the shared store (the same ``BNN_DATA_DIR`` or
``BNN_DATABASE_URL`` and object store as the full replicas), and runs them on
``bnncore_runtime``: NumPy and the compiled core. It imports neither
TensorFlow, Keras nor ``bnncore``, so it starts in a fraction of a second
and holds tens of megabytes instead of hundreds; it runs in the runtime image
(``docker/Dockerfile.runtime``, target ``inference``).

It serves: OIP inference and readiness and the TensorFlow Serving REST
routes (the full service's own, ``bnncore_service/routes/inference.py``), OIP
model metadata, health and server metadata
(``bnncore_service/routes/inference_role.py``) and ``/metrics``, with the full
service's API keys, body limit, CORS and metrics. A version whose layers the
core does not run (or that has no uploaded bnncore weights file) is refused
with 501 and the reason: a full replica serves it. Every other route of the
full service is 404 (405 for another method on a served path), naming the
role.

The replica only reads the store: it does not sweep it at start-up (the full
replicas do).

It is a Starlette app, not a FastAPI one, so that it starts without importing
FastAPI: its routes (:data:`ROUTES`, each with the API-key scope the full
service declares for it) call the handlers both roles share
(:mod:`bnncore_service.inference.handlers`), which check the path
parameters and answer errors as FastAPI's routes do. Its documentation
(``/docs``, ``/redoc``, ``/openapi.json``) is the same as before: the
document is made by FastAPI from the routes' FastAPI declarations
(:func:`bnncore_service.routes.inference_role.openapi_app`) when it is first
asked for, so only a reader of the documentation pays for importing FastAPI.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from bnncore_service import docs, fastpath
from bnncore_service.database_url import DatabaseURLError
from bnncore_service.errors import HANDLERS, error
from bnncore_service.inference import handlers
from bnncore_service.inference.runtime_models import RuntimeInferenceService
from bnncore_service.keyauth import ApiKeyAuth, ScopedRoute
from bnncore_service.limits import BodySizeLimit
from bnncore_service.logs import RequestLog, with_logging
from bnncore_service.metrics import Metrics, MetricsMiddleware, metrics_endpoint
from bnncore_service.preload import Preloader
from bnncore_service.registry import Registry
from bnncore_service.settings_env import SettingsError, read_settings
from bnncore_service.store_reader import check_url, open_reader

if TYPE_CHECKING:
    from bnncore_service.config import Settings

__all__ = ["ROUTES", "InferenceReplica", "app", "create_inference_app"]

TITLE = "bnncore model service (inference replica)"
DESCRIPTION = """\
An **inference replica** of the bnncore model service (`BNN_ROLE=inference`):
Open Inference Protocol V2 and TensorFlow Serving inference for the models
registered in the shared store, run on `bnncore_runtime` (no TensorFlow).
A model that needs TensorFlow is refused with 501 and the reason; route it to
a full replica, which also serves registration, reports and weight uploads.
Every error is `{"error": "<message>"}`.
"""

_NAME = "/v2/models/{name}"
_VERSION = "/v2/models/{name}/versions/{version}"
_TFS_NAME = "/v1/models/{name}"
_TFS_VERSION = "/v1/models/{name}/versions/{version}"
ROUTES: tuple[tuple[str, str, str | None, Callable[..., Any]], ...] = (
    ("/v2/health/live", "GET", None, handlers.live),
    ("/v2/health/ready", "GET", None, handlers.ready_server),
    ("/v2", "GET", "read", handlers.server_metadata),
    (_NAME, "GET", "read", handlers.model_info),
    (_VERSION, "GET", "read", handlers.model_info),
    (f"{_NAME}/infer", "POST", "infer", handlers.infer),
    (f"{_VERSION}/infer", "POST", "infer", handlers.infer),
    (f"{_NAME}/ready", "GET", "infer", handlers.ready),
    (f"{_VERSION}/ready", "GET", "infer", handlers.ready),
    (f"{_TFS_NAME}:predict", "POST", "infer", handlers.predict),
    (f"{_TFS_VERSION}:predict", "POST", "infer", handlers.predict),
    (_TFS_NAME, "GET", "read", handlers.tfs_status),
    (_TFS_VERSION, "GET", "read", handlers.tfs_status),
    (f"{_TFS_NAME}/metadata", "GET", "read", handlers.tfs_metadata),
    (f"{_TFS_VERSION}/metadata", "GET", "read", handlers.tfs_metadata),
)
"""The replica's API, in the full service's matching order: (path, method,
API-key scope or ``None`` for open, handler). ``GET /metrics`` (scope
``read``) and the documentation follow them."""


class InferenceReplica(Starlette):
    """The inference replica's app: Starlette, with the attributes of a
    FastAPI app that its documentation reads (``title``, ``version``,
    ``openapi_url``, ``swagger_ui_*``) and :meth:`openapi`."""

    title = TITLE
    description = DESCRIPTION
    openapi_url = "/openapi.json"
    swagger_ui_oauth2_redirect_url = "/docs/oauth2-redirect"
    swagger_ui_init_oauth: dict[str, Any] | None = None
    swagger_ui_parameters: dict[str, Any] | None = None
    root_path_in_servers = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._document: dict[str, Any] | None = None
        self._document_lock = threading.Lock()

    @property
    def version(self) -> str:
        """The distribution's version, read at the first use (the documentation,
        ``GET /v2``), not at the replica's start."""
        return handlers.server_version()

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document, made by FastAPI from the routes' declarations
        at the first call (blocking: imports FastAPI)."""
        with self._document_lock:
            if self._document is None:
                from bnncore_service.routes.inference_role import openapi_app

                declared = openapi_app(self.title, self.version, self.description)
                self._document = declared.openapi()
            return self._document


def _routes(app: InferenceReplica) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        ScopedRoute(
            path,
            handlers.endpoint(handler),
            methods=[method],
            scope=scope,
            name=handler.__name__,
        )
        for path, method, scope, handler in ROUTES
    ]
    routes.append(
        ScopedRoute("/metrics", metrics_endpoint, methods=["GET"], scope="read")
    )
    return [*routes, *docs.docs_routes(app)]


def _version() -> str:
    import bnncore_runtime

    return bnncore_runtime.__version__


def _engine_isa() -> str:
    from bnncore_runtime import kernels

    return kernels.isa()


async def _not_served(request: Request, exc: Exception) -> Response:
    """404 and 405 name the role; another HTTP error is answered as on a full
    replica (its status, detail and headers)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        what = "not found" if exc.status_code == 404 else "method not allowed"
        return error(
            exc.status_code,
            f"{request.method} {request.url.path}: {what}; {handlers.ROLE_MESSAGE}",
        )
    return await HANDLERS[HTTPException](request, exc)


def create_inference_app(settings: Settings | None = None) -> InferenceReplica:
    """Builds an inference replica.

    Args:
        settings: Configuration; ``None`` reads ``BNN_*`` environment variables
            (:func:`~bnncore_service.settings_env.read_settings`).

    Returns:
        The app; its lifespan opens the store (read only) and the inference
        service, and starts ``BNN_PRELOAD``.

    Raises:
        SettingsError: a bad ``BNN_*`` value, or ``BNN_ENGINE=keras``, which
            needs TensorFlow.
    """
    settings = settings or read_settings()
    if settings.engine == "keras":
        raise SettingsError(
            "invalid configuration: BNN_ENGINE='keras' needs TensorFlow, which an "
            "inference replica (BNN_ROLE=inference) does not have: expected auto"
        )

    @asynccontextmanager
    async def lifespan(app: InferenceReplica) -> AsyncIterator[None]:
        store = open_reader(settings)  # read only, without SQLAlchemy
        app.state.store = store
        registry = Registry(settings, store, None)  # no build executor: no Keras
        app.state.registry = registry
        serving = RuntimeInferenceService(settings, registry, app.state.metrics)
        app.state.inference = serving
        preloader = Preloader(settings.preload_targets(), settings.preload_retry_s)
        app.state.preload = preloader
        preloader.start(serving)
        try:
            yield
        finally:
            await preloader.stop()
            serving.close()
            store.close()

    app = InferenceReplica(
        # BNN_LOG_*, and the lifecycle lines a full replica logs.
        lifespan=with_logging(lifespan, settings, _version, _engine_isa),
        # The envelope for every error, as on a full replica; 404 and 405
        # name the role.
        exception_handlers={**HANDLERS, HTTPException: _not_served},
    )
    app.router.routes.extend(_routes(app))
    app.state.settings = settings
    app.state.metrics = Metrics()

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, overrides=[])
    app.add_middleware(
        ApiKeyAuth,
        keys=settings.api_key_scopes(),
        open_paths=docs.open_paths(app) if settings.public_docs else frozenset(),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Inference-Header-Content-Length",
            ],
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    # Around it: logs refused, failed and slow requests (bnncore_service/logs.py).
    app.add_middleware(RequestLog, slow_ms=settings.slow_request_ms)
    # Inference requests dispatched without the router's scan (fastpath.py).
    fastpath.install(app, fastpath.hot_routes(app.router))
    return app


def _app_from_environment() -> InferenceReplica:
    """The app of the ``BNN_*`` environment; a bad value, or a database URL
    whose driver is not installed, stops the start with one line on stderr
    (exit 2), as ``bnncore_service.main`` does."""
    try:
        settings = read_settings()  # pydantic only for an unusual value
        check_url(settings.resolved_database_url())
        return create_inference_app(settings)
    except (SettingsError, DatabaseURLError) as exc:
        print(f"bnncore service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


app: Any = _app_from_environment()
