"""Triton/KServe protocol extensions besides inference: the model repository
(``POST /v2/repository/index``, ``.../models/{name}/load`` and ``/unload``),
model configuration (``GET /v2/models/{name}[/versions/{v}]/config``) and
statistics (``GET /v2/models[/{name}[/versions/{v}]]/stats``).

This router is included before ``/v2/models/{name}``, so ``GET
/v2/models/stats`` is the statistics of every model (as in Triton); the
metadata of a model named ``stats`` stays at ``/v2/models/stats/versions/{v}``.
Errors: ``{"error": ...}``, 400 for a body that does not fit, 404 for an
unknown model or version, 503 when a version cannot be loaded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bnncore_service.auth import ADMIN, READ
from bnncore_service.deps import ModelName, SettingsDep, VersionNumber
from bnncore_service.errors import BusyError
from bnncore_service.inference import InferenceService
from bnncore_service.inference.repository import (
    UNLOADED_REASON,
    IndexEntry,
    LoadRequest,
    ModelConfig,
    RepositoryIndexRequest,
    StatisticsResponse,
    UnloadRequest,
    model_config,
)
from bnncore_service.inference.schemas import request_body
from bnncore_service.inference.tensors import InferenceError
from bnncore_service.peak import JSON_BYTES_PER_VALUE
from bnncore_service.registry import VersionRecord
from bnncore_service.routes.inference import (
    _ERRORS,
    InferenceDep,
    InferenceRoute,
    _parse,
    _record,
)

__all__ = ["router"]

router = APIRouter(tags=["repository"], route_class=InferenceRoute)


def _body(raw: bytes, model: Any) -> Any:
    """An optional JSON body (empty: every field at its default)."""
    return model() if not raw.strip() else _parse(raw, model)


@router.post(
    "/v2/repository/index",
    dependencies=[READ],
    response_model=list[IndexEntry],
    responses={400: _ERRORS[400]},
    response_class=JSONResponse,
    openapi_extra=request_body(RepositoryIndexRequest),
)
async def repository_index(request: Request, service: InferenceDep) -> Response:
    """Every registered version and its state: ``READY`` when loaded in memory,
    else ``UNAVAILABLE`` (the next load or inference loads it)."""
    body = _body(await request.body(), RepositoryIndexRequest)
    entries = []
    for record in await service.registry.records(None):
        state = service.state(await service.key(record))
        if body.ready and state != "READY":
            continue
        entries.append(
            {
                "name": record.name,
                "version": str(record.version),
                "state": state,
                "reason": "" if state == "READY" else UNLOADED_REASON,
            }
        )
    return JSONResponse(entries)


@router.post(
    "/v2/repository/models/{name}/load",
    dependencies=[ADMIN],
    responses={status: _ERRORS[status] for status in (400, 404, 503)},
    openapi_extra=request_body(LoadRequest),
)
async def repository_load(
    name: ModelName, request: Request, service: InferenceDep
) -> Response:
    """Loads the model's latest version into memory (build, uploaded weights,
    packed compilation), as Triton's default version policy; 200 with an
    empty body once it is ready."""
    body = _body(await request.body(), LoadRequest)
    for key in body.parameters or {}:
        if key == "config" or key.startswith("file:"):
            raise InferenceError(
                400,
                f"parameters.{key[:60]}: model configurations and files cannot be "
                "given to load: the service builds models only from registered "
                "definitions (POST /v2/models)",
            )
    record = await _record(request, service, name, None)
    try:
        await service.served(record)
    except (BusyError, InferenceError):
        raise
    except Exception as exc:
        raise InferenceError(
            503, f"model {record.name!r} version {record.version} failed to load: {exc}"
        ) from None
    return Response(status_code=200)


@router.post(
    "/v2/repository/models/{name}/unload",
    dependencies=[ADMIN],
    responses={status: _ERRORS[status] for status in (400, 404)},
    openapi_extra=request_body(UnloadRequest),
)
async def repository_unload(
    name: ModelName, request: Request, service: InferenceDep
) -> Response:
    """Evicts every version of the model from memory (a request being served
    finishes; the next request or load loads it again); 200 with an empty
    body. Another name registering the same definition and weights shares
    the loaded model, so it is evicted too."""
    _body(await request.body(), UnloadRequest)
    records = await service.registry.records(name)
    if not records:
        await _record(request, service, name, None)  # 404
    for record in records:
        service.evict(await service.key(record))
    return Response(status_code=200)


async def _config(
    request: Request,
    service: InferenceService,
    settings: Any,
    name: str,
    version: int | None,
) -> Response:
    record = await _record(request, service, name, version)
    cost = await service.cost(record)
    every = range(len(cost.output_elements))
    fits = cost.max_rows(settings.max_request_bytes, every, JSON_BYTES_PER_VALUE)
    return JSONResponse(model_config(record, settings, min(settings.max_batch, fits)))


_CONFIG: dict[str, Any] = {
    "response_model": ModelConfig,
    "responses": {status: _ERRORS[status] for status in (404, 413, 503)},
    "response_class": JSONResponse,
}


@router.get("/v2/models/{name}/config", dependencies=[READ], **_CONFIG)
async def config(
    name: ModelName, request: Request, service: InferenceDep, settings: SettingsDep
) -> Response:
    """Triton model configuration of the latest version: inputs and outputs
    (``TYPE_FP32``, dims without the batch), ``max_batch_size`` (the largest
    batch ``BNN_MAX_BATCH`` and ``BNN_MAX_REQUEST_BYTES`` allow with every
    output in JSON), platform ``bnncore``."""
    return await _config(request, service, settings, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/config",
    dependencies=[READ],
    **_CONFIG,
)
async def config_version(
    name: ModelName,
    version: VersionNumber,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
) -> Response:
    """Triton model configuration of one version."""
    return await _config(request, service, settings, name, version)


def _statistics(service: InferenceService, records: list[VersionRecord]) -> Response:
    stats = [
        service.statistics.get(r.name, r.version).as_triton(r.name, r.version)
        for r in records
    ]
    return JSONResponse({"model_stats": stats})


_STATS: dict[str, Any] = {
    "response_model": StatisticsResponse,
    "responses": {404: _ERRORS[404]},
    "response_class": JSONResponse,
}


@router.get("/v2/models/stats", dependencies=[READ], **_STATS)
async def statistics_all(service: InferenceDep) -> Response:
    """Inference statistics of every registered version."""
    return _statistics(service, await service.registry.records(None))


@router.get("/v2/models/{name}/stats", dependencies=[READ], **_STATS)
async def statistics(
    name: ModelName, request: Request, service: InferenceDep
) -> Response:
    """Inference statistics of every version of a model."""
    records = await service.registry.records(name)
    if not records:
        await _record(request, service, name, None)  # 404
    return _statistics(service, records)


@router.get("/v2/models/{name}/versions/{version}/stats", dependencies=[READ], **_STATS)
async def statistics_version(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """Inference statistics of one version."""
    return _statistics(service, [await _record(request, service, name, version)])
