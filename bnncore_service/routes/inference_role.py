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
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from bnncore_service.auth import OPEN, READ
from bnncore_service.deps import ModelName, VersionNumber
from bnncore_service.errors import error, error_responses
from bnncore_service.inference import InferenceService
from bnncore_service.registry import RegistryDep, VersionRecord
from bnncore_service.routes.inference import (
    InferenceDep,
    InferenceRoute,
    _record,
)

__all__ = ["ROLE_MESSAGE", "router", "server_version"]

ROLE_MESSAGE = (
    "this replica serves inference only (BNN_ROLE=inference): registration, "
    "reports, definitions, weight uploads and deletes are served by a full "
    "replica (BNN_ROLE=full) on the same store"
)
EXTENSIONS = ("binary_tensor_data",)
"""The protocol extensions an inference replica implements."""

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


def server_version() -> str:
    """The installed ``bnncore`` distribution's version (the runtime image
    has only ``bnncore-runtime``: its version)."""
    try:
        return metadata.version("bnncore")
    except metadata.PackageNotFoundError:  # the runtime image: the runtime's
        return metadata.version("bnncore-runtime")


@router.get(
    "/v2/health/live",
    dependencies=[OPEN],
    response_model=Health,
    tags=["health"],
)
def live() -> Health:
    """The process answers."""
    return Health(status="live")


@router.get(
    "/v2/health/ready",
    dependencies=[OPEN],
    response_model=Health,
    tags=["health"],
)
async def ready_server(request: Request, registry: RegistryDep) -> Any:
    """The registry database answers and every model of ``BNN_PRELOAD`` is
    loaded (503 with the reason otherwise)."""
    preload = getattr(request.app.state, "preload", None)
    if preload is not None and not preload.ready:
        return error(503, preload.reason())
    if not await registry.ping():
        return error(503, "registry database unavailable")
    return Health(status="ready")


@router.get("/v2", dependencies=[READ], response_model=ServerInfo, tags=["health"])
def server_metadata(request: Request) -> ServerInfo:
    """Server metadata (Open Inference Protocol) of an inference replica."""
    settings = request.app.state.settings
    names = ("max_body_bytes", "max_batch", "max_tensor_elements", "max_request_bytes")
    return ServerInfo(
        name="bnncore",
        version=server_version(),
        extensions=list(EXTENSIONS),
        role="inference",
        limits={name: getattr(settings, name) for name in names},
    )


async def _model_info(
    service: InferenceService, record: VersionRecord, all_versions: bool
) -> ModelInfo:
    versions = (
        await service.registry.versions(record.name)
        if all_versions
        else [record.version]
    )
    return ModelInfo(
        name=record.name,
        versions=[str(v) for v in versions],
        platform="bnncore",
        inputs=[Tensor(datatype="FP32", **t) for t in record.inputs],
        outputs=[Tensor(datatype="FP32", **t) for t in record.outputs],
        content_hash=record.content_hash,
        created_at=record.created_at,
    )


@router.get(
    "/v2/models/{name}",
    dependencies=[READ],
    response_model=ModelInfo,
    responses=_ERRORS,
    tags=["models"],
)
async def model_info(
    name: ModelName, request: Request, service: InferenceDep
) -> ModelInfo:
    """OIP metadata of the latest version; ``versions`` lists every version."""
    record = await _record(request, service, name, None)
    return await _model_info(service, record, all_versions=True)


@router.get(
    "/v2/models/{name}/versions/{version}",
    dependencies=[READ],
    response_model=ModelInfo,
    responses=_ERRORS,
    tags=["models"],
)
async def version_info(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> ModelInfo:
    """OIP metadata of one version."""
    record = await _record(request, service, name, version)
    return await _model_info(service, record, all_versions=False)
