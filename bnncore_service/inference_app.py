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
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException

from bnncore_service import docs, fastpath
from bnncore_service.auth import ApiKeyAuth, include_router
from bnncore_service.config import Settings, SettingsError, load_settings
from bnncore_service.database_url import DatabaseURLError
from bnncore_service.errors import error
from bnncore_service.inference.runtime_models import RuntimeInferenceService
from bnncore_service.limits import BodySizeLimit
from bnncore_service.metrics import Metrics, MetricsMiddleware
from bnncore_service.metrics import router as metrics_router
from bnncore_service.preload import Preloader
from bnncore_service.registry import Registry
from bnncore_service.routes import inference, inference_role
from bnncore_service.store_reader import check_url, open_reader

__all__ = ["app", "create_inference_app"]

DESCRIPTION = """\
An **inference replica** of the bnncore model service (`BNN_ROLE=inference`):
Open Inference Protocol V2 and TensorFlow Serving inference for the models
registered in the shared store, run on `bnncore_runtime` (no TensorFlow).
A model that needs TensorFlow is refused with 501 and the reason; route it to
a full replica, which also serves registration, reports and weight uploads.
Every error is `{"error": "<message>"}`.
"""


def create_inference_app(settings: Settings | None = None) -> FastAPI:
    """Builds an inference replica.

    Args:
        settings: Configuration; ``None`` reads ``BNN_*`` environment variables.

    Returns:
        The FastAPI app; its lifespan opens the store (read only) and the
        inference service, and starts ``BNN_PRELOAD``.

    Raises:
        SettingsError: ``BNN_ENGINE=keras``, which needs TensorFlow.
    """
    settings = settings or Settings()
    if settings.engine == "keras":
        raise SettingsError(
            "invalid configuration: BNN_ENGINE='keras' needs TensorFlow, which an "
            "inference replica (BNN_ROLE=inference) does not have: expected auto"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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

    app = FastAPI(
        title="bnncore model service (inference replica)",
        version=inference_role.server_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # docs.install_docs: Swagger UI and ReDoc served here
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()

    @app.exception_handler(HTTPException)
    async def _not_served(request: Request, exc: HTTPException) -> Any:
        if exc.status_code in (404, 405):
            what = "not found" if exc.status_code == 404 else "method not allowed"
            return error(
                exc.status_code,
                f"{request.method} {request.url.path}: {what}; "
                f"{inference_role.ROLE_MESSAGE}",
            )
        return error(exc.status_code, str(exc.detail))

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
    include_router(app, inference_role.router)
    # The full replica's inference routes, on the runtime (501: needs TensorFlow).
    include_router(app, inference.router, responses=inference.NEEDS_FULL_REPLICA)
    include_router(app, metrics_router)
    docs.install_docs(app)  # offline: the same pages as the full service
    # Inference requests dispatched without the router's scan (fastpath.py).
    fastpath.install(app, fastpath.hot_routes(inference.router))
    return app


def _app_from_environment() -> FastAPI:
    """The app of the ``BNN_*`` environment; a bad value, or a database URL
    whose driver is not installed, stops the start with one line on stderr
    (exit 2), as ``bnncore_service.main`` does."""
    try:
        settings = load_settings()
        check_url(settings.resolved_database_url())
        return create_inference_app(settings)
    except (SettingsError, DatabaseURLError) as exc:
        print(f"bnncore service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


app: Any = _app_from_environment()
