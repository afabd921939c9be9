"""The model registry: register, list, metadata, summary, definition, delete."""

from __future__ import annotations

import functools
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import TypeAdapter

from bnncore_service.auth import ADMIN, READ
from bnncore_service.deps import ModelName, SettingsDep, VersionNumber
from bnncore_service.jsonbody import (
    StrictJSONRoute,
    documented_as,
    run_validation,
    validate_off_loop,
)
from bnncore_service.registry import VersionInfo, VersionRecord
from bnncore_service.registry_deps import RegistryDep
from bnncore_service.routes.reports import (
    REPORT_RESPONSES,
    ReportFormatQuery,
    checked_plan,
    render_response,
)
from bnncore_service.schemas.definitions import Definition
from bnncore_service.schemas.errors import ERROR_RESPONSES
from bnncore_service.schemas.reports import (
    DeletedVersion,
    ModelList,
    ModelMetadata,
    ModelSummary,
    RegisteredModel,
    RegisterRequest,
    TensorMetadata,
)
from bnncore_service.sizes import SizeCache

__all__ = ["router"]

# Bodies are parsed (strict JSON) and validated in a worker thread, never on
# the event loop (bnncore_service/jsonbody.py); OpenAPI still documents the model.
router = APIRouter(prefix="/v2/models", tags=["models"], route_class=StrictJSONRoute)

PLATFORM = "bnncore_keras"
_definition_adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, Definition))
_register_adapter: TypeAdapter[RegisterRequest] = TypeAdapter(RegisterRequest)
RegisterBody = Annotated[Any, Body(), documented_as(RegisterRequest)]


def _registered(record: VersionRecord, created: bool) -> RegisteredModel:
    return RegisteredModel(
        name=record.name,
        version=record.version,
        content_hash=record.content_hash,
        kind=record.kind,
        created_at=record.created_at,
        params=record.params,
        memory_bytes=record.memory_bytes,
        created=created,
    )


def _metadata(info: VersionInfo) -> ModelMetadata:
    record, weights = info.record, info.weights
    return ModelMetadata(
        name=record.name,
        versions=[str(v) for v in info.versions],
        platform=PLATFORM,
        inputs=[TensorMetadata(datatype="FP32", **t) for t in record.inputs],
        outputs=[TensorMetadata(datatype="FP32", **t) for t in record.outputs],
        content_hash=record.content_hash,
        created_at=record.created_at,
        weights="initial" if weights is None else "uploaded",
        weights_sha256=None if weights is None else weights.sha256,
    )


@router.post(
    "",
    dependencies=[ADMIN],
    status_code=201,
    response_model=RegisteredModel,
    responses={
        200: {"model": RegisteredModel, "description": "Already registered"},
        **ERROR_RESPONSES,
    },
    summary="Register a definition under a name (idempotent)",
)
async def register(
    http_request: Request,
    body: RegisterBody,
    response: Response,
    settings: SettingsDep,
    registry: RegistryDep,
) -> RegisteredModel:
    """Validates, estimates and builds the definition, then stores it as the next
    version of ``name`` (201). The same definition again returns its existing
    version (200, ``created: false``)."""
    request = await validate_off_loop(http_request, _register_adapter, body)
    model_plan = await run_validation(
        http_request, checked_plan, request.definition, settings
    )
    record, created = await registry.register(
        request.name, model_plan, type(request.definition).__name__
    )
    if not created:
        response.status_code = 200
    return _registered(record, created)


async def get_size_cache(request: Request) -> SizeCache:
    """The app's cache of definition sizes (made on first use)."""
    state = request.app.state
    cache = getattr(state, "size_cache", None)
    if cache is None:  # two first requests may both make one: either serves
        cache = state.size_cache = SizeCache()
    return cache


SizeCacheDep = Annotated[SizeCache, Depends(get_size_cache)]


@router.get(
    "",
    dependencies=[READ],
    response_model=ModelList,
    responses=ERROR_RESPONSES,
)
async def list_models(
    request: Request,
    registry: RegistryDep,
    cache: SizeCacheDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ModelList:
    """A page of registered models ordered by name, with their versions and
    each version's parameters, memory, compression and weights."""
    # The home page (routes/pages.py) calls this function too; sizes are
    # estimated in the validation threads.
    run = functools.partial(run_validation, request)
    found = await registry.page(cache, limit, offset, run)
    page, details, total = found.models, found.details, found.total
    return ModelList(
        models=[
            ModelSummary(
                name=name,
                versions=versions,
                latest_version=max(versions),
                version_details=rows,
            )
            for (name, versions), rows in zip(page, details, strict=True)
        ],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if offset + limit < total else None,
    )


@router.get(
    "/{name}",
    dependencies=[READ],
    response_model=ModelMetadata,
    responses=ERROR_RESPONSES,
)
async def model_metadata(name: ModelName, registry: RegistryDep) -> ModelMetadata:
    """Open Inference Protocol metadata of the latest version; ``versions`` lists
    every registered version."""
    return _metadata(await registry.describe(name, None, all_versions=True))


@router.get(
    "/{name}/versions/{version}",
    dependencies=[READ],
    response_model=ModelMetadata,
    responses=ERROR_RESPONSES,
)
async def version_metadata(
    name: ModelName, version: VersionNumber, registry: RegistryDep
) -> ModelMetadata:
    """Open Inference Protocol metadata of one version."""
    return _metadata(await registry.describe(name, version, all_versions=False))


@router.delete(
    "/{name}/versions/{version}",
    dependencies=[ADMIN],
    response_model=DeletedVersion,
    responses=ERROR_RESPONSES,
)
async def delete_version(
    name: ModelName, version: VersionNumber, registry: RegistryDep
) -> DeletedVersion:
    """Deletes one version (its number is never reused)."""
    await registry.delete(name, version)
    return DeletedVersion(name=name, version=version, deleted=True)


@router.get(
    "/{name}/summary",
    dependencies=[READ],
    response_class=Response,
    responses=REPORT_RESPONSES,
)
async def model_summary(
    name: ModelName,
    registry: RegistryDep,
    format: ReportFormatQuery = "json",
) -> Response:
    """The report of the latest version."""
    return render_response(await registry.profile(name, None), format)


@router.get(
    "/{name}/versions/{version}/summary",
    dependencies=[READ],
    response_class=Response,
    responses=REPORT_RESPONSES,
)
async def version_summary(
    name: ModelName,
    version: VersionNumber,
    registry: RegistryDep,
    format: ReportFormatQuery = "json",
) -> Response:
    """The report of one version."""
    return render_response(await registry.profile(name, version), format)


@router.get(
    "/{name}/definition",
    dependencies=[READ],
    response_model=dict[str, Any],
    responses=ERROR_RESPONSES,
)
async def model_definition(name: ModelName, registry: RegistryDep) -> dict[str, Any]:
    """The normalized definition of the latest version."""
    return await registry.definition(name, None)


@router.get(
    "/{name}/versions/{version}/definition",
    dependencies=[READ],
    response_model=dict[str, Any],
    responses=ERROR_RESPONSES,
)
async def version_definition(
    name: ModelName, version: VersionNumber, registry: RegistryDep
) -> dict[str, Any]:
    """The normalized definition of one version."""
    return await registry.definition(name, version)
