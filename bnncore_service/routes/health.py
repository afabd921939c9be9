"""Health and server metadata."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

import bnncore
from bnncore_service.auth import OPEN, READ
from bnncore_service.builder import zoo_names
from bnncore_service.deps import SettingsDep
from bnncore_service.errors import error
from bnncore_service.preload import Preloader
from bnncore_service.registry_deps import RegistryDep
from bnncore_service.schemas.errors import ERROR_RESPONSES
from bnncore_service.schemas.layers import LAYER_TYPES
from bnncore_service.schemas.reports import HealthResponse, ServerMetadata

__all__ = ["router"]

router = APIRouter(prefix="/v2", tags=["health"])

EXTENSIONS = (
    "binary_tensor_data",
    "model_repository",
    "statistics",
    "model_configuration",
)
"""The protocol extensions implemented (Triton's names), each tested with
``tritonclient``: see docs/inference.md."""

_LIMITS = (
    "max_layers",
    "max_units",
    "max_filters",
    "max_kernel_size",
    "max_dimension",
    "max_params",
    "max_activation_elements",
    "max_body_bytes",
    "max_definition_keys",
    "max_json_depth",
    "max_weights_bytes",
    "max_batch",
    "max_tensor_elements",
    "max_request_bytes",
)


@router.get("/health/live", dependencies=[OPEN], response_model=HealthResponse)
def live() -> HealthResponse:
    """The process answers."""
    return HealthResponse(status="live")


@router.get(
    "/health/ready",
    dependencies=[OPEN],
    response_model=HealthResponse,
    responses={503: ERROR_RESPONSES[503]},
)
async def ready(
    request: Request, registry: RegistryDep
) -> HealthResponse | JSONResponse:
    """The registry database answers and every model of ``BNN_PRELOAD`` is
    loaded (503 with the reason otherwise)."""
    preload: Preloader | None = getattr(request.app.state, "preload", None)
    if preload is not None and not preload.ready:
        return error(503, preload.reason())
    if not await registry.ping():
        return error(503, "registry database unavailable")
    return HealthResponse(status="ready")


@router.get("", dependencies=[READ], response_model=ServerMetadata)
def server_metadata(settings: SettingsDep) -> ServerMetadata:
    """Server metadata (Open Inference Protocol) and the definition catalogs."""
    return ServerMetadata(
        name="bnncore",
        version=bnncore.__version__,
        extensions=list(EXTENSIONS),
        layer_types=sorted(LAYER_TYPES),
        zoo_models=zoo_names(),
        limits={name: getattr(settings, name) for name in _LIMITS},
    )
