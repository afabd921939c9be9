"""Prometheus metrics: one registry per app instance, served at ``GET /metrics``.

Every app has its own :class:`Metrics` (its own ``CollectorRegistry``, never the
process-global default), so several apps in one process (tests) do not mix
their counts. :class:`MetricsMiddleware` times every HTTP request; the
inference code records inference latency, batch sizes and rejections.

Label values are bounded: ``route`` is the route *template*
(``/v2/models/{name}/infer``, or ``unmatched``), ``model`` is the model name
only once the request has been answered for a registered model (a handler
names it, or the status is a success) and ``""`` otherwise, so clients cannot
create series with made-up names.

This module imports no FastAPI (the inference replica, a Starlette app,
serves :func:`metrics_endpoint`); the full service's ``router`` is made on
first use (``from bnncore_service.metrics import router``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from bnncore_runtime import kernels  # the core's (bnncore.engine's too)

__all__ = [
    "REJECTION_REASONS",
    "Metrics",
    "MetricsMiddleware",
    "metrics_endpoint",
    "route_template",
    "router",  # noqa: F822 (made on first use: __getattr__)
]

Scope = dict[str, Any]

REJECTION_REASONS = (
    "body_too_large",
    "batch_limit",
    "elements_limit",
    "memory_limit",
    "queue_full",
    "timeout",
    "build_busy",
)
"""Why a request was refused before or instead of running (``reason`` label)."""

MODEL_STATE_KEY = "bnn_model"
"""``request.state`` attribute through which a handler names the model served."""

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _EngineInfo(Collector):
    """``bnn_engine_info``: the packed engine's instruction-set level, read at
    each scrape (``BNN_ENGINE_ISA`` or the CPU decides it)."""

    def collect(self) -> Any:
        family = InfoMetricFamily(
            "bnn_engine",
            "Instruction-set level of the packed engine's compiled core.",
        )
        family.add_metric(
            [],
            {
                "isa": kernels.isa(),
                "supported_isas": ",".join(kernels.supported_isas()),
                "kernel": kernels.kernel(),
            },
        )
        yield family


class Metrics:
    """The metrics of one app instance.

    Attributes:
        registry: The app's own registry (what ``GET /metrics`` renders).
        requests: ``bnn_http_requests_total{method,route,model,status}``.
        latency: ``bnn_http_request_duration_seconds{method,route,model,status}``.
        inference_latency: ``bnn_inference_duration_seconds{model,engine}``: one
            model execution (a batch), queueing excluded.
        batch_size: ``bnn_inference_batch_size{model,engine}``: rows per model
            execution (with dynamic batching, rows of the merged batch).
        models_loaded: ``bnn_models_loaded``: models ready to infer in memory.
        rejections: ``bnn_rejections_total{reason}``, reasons in
            :data:`REJECTION_REASONS`.

    ``bnn_engine_info{isa,supported_isas,kernel}`` (always 1) names the packed
    engine's instruction-set level at the time of the scrape.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["method", "route", "model", "status"]
        self.requests = Counter(
            "bnn_http_requests",
            "HTTP requests answered, by route template, model and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "bnn_http_request_duration_seconds",
            "HTTP request latency (first byte received to last byte sent).",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_latency = Histogram(
            "bnn_inference_duration_seconds",
            "Time of one model execution (a batch), queueing excluded.",
            ["model", "engine"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "bnn_inference_batch_size",
            "Rows per model execution (merged rows under dynamic batching).",
            ["model", "engine"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "bnn_models_loaded",
            "Models loaded and ready to infer (built, weights loaded, compiled).",
            registry=self.registry,
        )
        self.rejections = Counter(
            "bnn_rejections",
            "Requests refused by a limit or under load, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason=reason)  # exported from the start, at 0
        self.registry.register(_EngineInfo())

    def reject(self, reason: str) -> None:
        """Counts one rejection."""
        self.rejections.labels(reason=reason).inc()

    def observe_inference(
        self, model: str, engine: str, rows: int, seconds: float
    ) -> None:
        """Records one model execution."""
        self.inference_latency.labels(model=model, engine=engine).observe(seconds)
        self.batch_size.labels(model=model, engine=engine).observe(rows)

    def track_models(self, count: Callable[[], float]) -> None:
        """Makes ``bnn_models_loaded`` read ``count()`` at every scrape."""
        self.models_loaded.set_function(count)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


def route_template(scope: Scope) -> tuple[str, bool]:
    """The route template of a request and whether routing reached it.

    A request answered before routing (e.g. 413 from the body-size limit) is
    matched against the app's routes here, so it still gets its template.
    """
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path, "endpoint" in scope
    app = scope.get("app")
    return _match(getattr(app, "routes", ()), scope), False


def _match(routes: Any, scope: Scope) -> str:
    """The template of the route matching ``scope`` (``"unmatched"``: none).

    FastAPI lists an included router as one entry without a ``path`` (its
    routes carry the router's prefix already): its routes are searched.
    """
    for candidate in routes:
        inner = getattr(candidate, "original_router", None)
        if inner is not None and getattr(candidate, "path", None) is None:
            found = _match(getattr(inner, "routes", ()), scope)
            if found != "unmatched":
                return found
            continue
        match, _ = candidate.matches(scope)
        if match is Match.FULL and getattr(candidate, "path", None):
            return candidate.path
    return "unmatched"


def _model(scope: Scope, status: int) -> str:
    state = scope.get("state") or {}
    named = state.get(MODEL_STATE_KEY)
    if named:
        return str(named)
    params = scope.get("path_params") or {}
    if status < 400 and isinstance(params.get("name"), str):
        return params["name"]
    return ""


class MetricsMiddleware:
    """ASGI middleware counting and timing every HTTP request.

    Add it last (outermost) so that it also sees the requests refused by the
    other middleware (413 from the body-size limit is counted as the rejection
    ``body_too_large``).
    """

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # The labelled children of both metrics by label values: looked up
        # once per label set instead of twice per request (``labels()`` takes
        # a lock and builds its key each time; about 8 µs a request).
        self._children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route, routed = route_template(scope)
            if status == 413 and not routed:
                self.metrics.reject("body_too_large")
            key = (
                str(scope.get("method", "")),
                route,
                _model(scope, status),
                str(status),
            )
            children = self._children.get(key)
            if children is None:
                names = ("method", "route", "model", "status")
                labels = dict(zip(names, key, strict=True))
                children = (
                    self.metrics.requests.labels(**labels),
                    self.metrics.latency.labels(**labels),
                )
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)


def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics of this service instance (text format)."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@functools.cache
def _router() -> Any:
    """``GET /metrics`` declared for FastAPI (its OpenAPI operation)."""
    from fastapi import APIRouter

    router = APIRouter(tags=["health"])
    router.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        response_class=Response,
        responses={
            200: {
                "content": {CONTENT_TYPE_LATEST.split(";")[0]: {}},
                "description": "Prometheus text exposition format",
            }
        },
        name="metrics",
    )
    return router


def __getattr__(name: str) -> Any:
    """``router``: the FastAPI router of ``GET /metrics``, made on first use."""
    if name == "router":
        return _router()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
