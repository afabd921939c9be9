"""The routes only an inference replica (``BNN_ROLE=inference``) has: health,
server metadata and OIP model metadata, without TensorFlow. Its inference
routes (OIP inference and readiness, the TensorFlow Serving REST routes) are
the full replica's, :mod:`bnncore_service.routes.inference`, on its
``RuntimeInferenceService``. What differs from a full replica:

* a version the runtime cannot run is refused with **501** and the reason
  (``NeedsFullReplicaError``: route it to a full replica); its ready endpoint
  answers 503 with the same reason;
* registration, reports, definitions, weight uploads and deletes are not
  served: 404 (or 405 for another method on an inference path), naming the
  role (:func:`bnncore_service.inference_app.create_inference_app`).

The replica itself is a Starlette app that calls the handlers
(:mod:`bnncore_service.inference.handlers`) without FastAPI; these
declarations are its OpenAPI document (:func:`openapi_app`, made when a
documentation page is first asked for).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel

from bnncore_service import docs, metrics
from bnncore_service.auth import OPEN, READ, include_router
from bnncore_service.deps import ModelName, VersionNumber
from bnncore_service.inference import handlers
from bnncore_service.inference.handlers import ROLE_MESSAGE, server_version
from bnncore_service.routes import inference
from bnncore_service.routes.inference import InferenceRoute
from bnncore_service.schemas.errors import error_responses

__all__ = ["ROLE_MESSAGE", "openapi_app", "router", "server_version"]

router = APIRouter(route_class=InferenceRoute)

_ERRORS = error_responses(
    (
        (400, "The request does not fit the model; the message names the field"),
        (404, "Unknown model or version"),
    )
)


class Health(BaseModel):
    """``GET /v2/health/live|ready``."""

    status: Literal["live", "ready"]


class ServerInfo(BaseModel):
    """``GET /v2``: the OIP server metadata, and this replica's role."""

    name: str
    version: str
    extensions: list[str]
    role: Literal["inference"]
    limits: dict[str, int]


class Tensor(BaseModel):
    name: str
    datatype: Literal["FP32"]
    shape: list[int]


class ModelInfo(BaseModel):
    """OIP model metadata (with the registry's fields a full replica adds)."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    content_hash: str
    created_at: str


@router.get(
    "/v2/health/live",
    dependencies=[OPEN],
    response_model=Health,
    tags=["health"],
)
async def live(request: Request) -> Any:
    """The process answers."""
    return await handlers.live(request)


@router.get(
    "/v2/health/ready",
    dependencies=[OPEN],
    response_model=Health,
    tags=["health"],
)
async def ready_server(request: Request) -> Any:
    """The registry database answers and every model of ``BNN_PRELOAD`` is
    loaded (503 with the reason otherwise)."""
    return await handlers.ready_server(request)


@router.get("/v2", dependencies=[READ], response_model=ServerInfo, tags=["health"])
async def server_metadata(request: Request) -> Any:
    """Server metadata (Open Inference Protocol) of an inference replica."""
    return await handlers.server_metadata(request)


@router.get(
    "/v2/models/{name}",
    dependencies=[READ],
    response_model=ModelInfo,
    responses=_ERRORS,
    tags=["models"],
)
async def model_info(name: ModelName, request: Request) -> Any:
    """OIP metadata of the latest version; ``versions`` lists every version."""
    return await handlers.model_info(request, name)


@router.get(
    "/v2/models/{name}/versions/{version}",
    dependencies=[READ],
    response_model=ModelInfo,
    responses=_ERRORS,
    tags=["models"],
)
async def version_info(
    name: ModelName, version: VersionNumber, request: Request
) -> Any:
    """OIP metadata of one version."""
    return await handlers.model_info(request, name, version)


def openapi_app(title: str, version: str, description: str) -> FastAPI:
    """The inference replica's routes declared to FastAPI, in the replica's
    order: what its OpenAPI document is made from (the replica serves them
    with Starlette: :mod:`bnncore_service.inference_app`).

    Args:
        title / version / description: The document's ``info``.
    """
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        docs_url=None,  # docs.install_docs: Swagger UI and ReDoc served here
        redoc_url=None,
    )
    include_router(app, router)
    # The full replica's inference routes, on the runtime (501: needs TensorFlow).
    include_router(app, inference.router, responses=inference.NEEDS_FULL_REPLICA)
    include_router(app, metrics.router)
    docs.install_docs(app)
    return app
