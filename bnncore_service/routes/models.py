"""The model registry: register, list, metadata, summary, definition, delete."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter

from bnncore_service.builder import Plan, plan
from bnncore_service.deps import (
    ModelName,
    RuntimeDep,
    SettingsDep,
    StoreDep,
    VersionNumber,
)
from bnncore_service.errors import ERROR_RESPONSES, NotFoundError
from bnncore_service.jsonbody import (
    StrictJSONRoute,
    documented_as,
    run_validation,
    validate_off_loop,
)
from bnncore_service.routes.reports import (
    REPORT_RESPONSES,
    ReportFormatQuery,
    checked_plan,
    render_response,
)
from bnncore_service.runtime import Built
from bnncore_service.schemas.definitions import Definition
from bnncore_service.schemas.reports import (
    DeletedVersion,
    ModelList,
    ModelMetadata,
    ModelSummary,
    RegisteredModel,
    RegisterRequest,
    TensorMetadata,
    VersionSummary,
)
from bnncore_service.sizes import SizeCache
from bnncore_service.store import Store, VersionRecord

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


def _io(model_plan: Plan, built: Built) -> tuple[list[dict], list[dict]]:
    """Input and output tensors (name, shape with -1 for the batch)."""

    def shape(dims: list[int | None]) -> list[int]:
        return [-1 if d is None else d for d in dims]

    if model_plan.estimate is not None:
        graph = model_plan.definition.graph()
        inputs = [
            {"name": layer.name, "shape": shape(dims)}
            for layer, dims in zip(
                graph.inputs(), model_plan.estimate.inputs, strict=True
            )
        ]
        outputs = [
            {"name": name, "shape": shape(dims)}
            for name, dims in zip(
                graph.outputs, model_plan.estimate.outputs, strict=True
            )
        ]
        return inputs, outputs
    model = built.model
    output_names = list(getattr(model, "output_names", None) or [])
    inputs = [
        {
            "name": getattr(t, "name", None) or f"input_{i}",
            "shape": shape(list(t.shape)),
        }
        for i, t in enumerate(model.inputs)
    ]
    outputs = [
        {
            "name": output_names[i] if i < len(output_names) else f"output_{i}",
            "shape": shape(list(t.shape)),
        }
        for i, t in enumerate(model.outputs)
    ]
    return inputs, outputs


async def _record(store: Store, name: str, version: int | None) -> VersionRecord:
    record = await run_in_threadpool(store.get, name, version)
    if record is None:
        what = f"model {name!r}" if version is None else f"{name!r} version {version}"
        raise NotFoundError(f"{what} is not registered")
    return record


async def _metadata(store: Store, record: VersionRecord, all_versions: bool) -> Any:
    versions = (
        await run_in_threadpool(store.versions, record.name)
        if all_versions
        else [record.version]
    )
    weights = await run_in_threadpool(store.weights, record.name, record.version)
    return ModelMetadata(
        name=record.name,
        versions=[str(v) for v in versions],
        platform=PLATFORM,
        inputs=[TensorMetadata(datatype="FP32", **t) for t in record.inputs],
        outputs=[TensorMetadata(datatype="FP32", **t) for t in record.outputs],
        content_hash=record.content_hash,
        created_at=record.created_at,
        weights="initial" if weights is None else "uploaded",
        weights_sha256=None if weights is None else weights.sha256,
    )


async def _built(
    store: Store, runtime: Any, settings: Any, record: VersionRecord
) -> Built:
    def load() -> Plan:
        normalized = store.load_definition(record.content_hash)
        return plan(_definition_adapter.validate_python(normalized), settings)

    return await runtime.run(runtime.built, await run_in_threadpool(load))


@router.post(
    "",
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
    store: StoreDep,
    runtime: RuntimeDep,
) -> RegisteredModel:
    """Validates, estimates and builds the definition, then stores it as the next
    version of ``name`` (201). The same definition again returns its existing
    version (200, ``created: false``)."""
    request = await validate_off_loop(http_request, _register_adapter, body)
    model_plan = await run_validation(
        http_request, checked_plan, request.definition, settings
    )
    existing = await run_in_threadpool(
        store.find, request.name, model_plan.content_hash
    )
    if existing is not None:
        response.status_code = 200
        return _registered(existing, created=False)
    built = await runtime.run(runtime.built, model_plan)
    inputs, outputs = _io(model_plan, built)
    totals = built.profile.totals
    record, created = await run_in_threadpool(
        store.register,
        request.name,
        model_plan.content_hash,
        model_plan.normalized,
        type(request.definition).__name__,
        totals.params,
        totals.memory_bytes,
        inputs,
        outputs,
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


def _version_details(
    store: Store,
    settings: Any,
    cache: SizeCache,
    page: list[tuple[str, list[int]]],
) -> list[list[VersionSummary]]:
    """Each listed version's sizes: its record, the estimate of its stored
    definition (cached by content hash) and its weights; nothing is built."""
    details = []
    for name, versions in page:
        rows = []
        for version in versions:
            record = store.get(name, version)
            if record is None:  # deleted since the page was read
                continue
            sizes = cache.sizes(store, settings, record.content_hash)
            rows.append(
                VersionSummary(
                    version=record.version,
                    kind=record.kind,
                    content_hash=record.content_hash,
                    created_at=record.created_at,
                    params=record.params,
                    params_by_bits=sizes.params_by_bits,
                    memory_bytes=record.memory_bytes,
                    compression=sizes.compression,
                    weights_uploaded=store.weights(name, version) is not None,
                )
            )
        details.append(rows)
    return details


@router.get("", response_model=ModelList, responses=ERROR_RESPONSES)
async def list_models(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    cache: SizeCacheDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ModelList:
    """A page of registered models ordered by name, with their versions and
    each version's parameters, memory, compression and weights."""
    page, total = await run_in_threadpool(store.list_models, limit, offset)
    details = await run_validation(
        request, _version_details, store, settings, cache, page
    )
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


@router.get("/{name}", response_model=ModelMetadata, responses=ERROR_RESPONSES)
async def model_metadata(name: ModelName, store: StoreDep) -> ModelMetadata:
    """Open Inference Protocol metadata of the latest version; ``versions`` lists
    every registered version."""
    return await _metadata(store, await _record(store, name, None), all_versions=True)


@router.get(
    "/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=ERROR_RESPONSES,
)
async def version_metadata(
    name: ModelName, version: VersionNumber, store: StoreDep
) -> ModelMetadata:
    """Open Inference Protocol metadata of one version."""
    return await _metadata(
        store, await _record(store, name, version), all_versions=False
    )


@router.delete(
    "/{name}/versions/{version}",
    response_model=DeletedVersion,
    responses=ERROR_RESPONSES,
)
async def delete_version(
    name: ModelName, version: VersionNumber, store: StoreDep
) -> DeletedVersion:
    """Deletes one version (its number is never reused)."""
    if not await run_in_threadpool(store.delete, name, version):
        raise NotFoundError(f"{name!r} version {version} is not registered")
    return DeletedVersion(name=name, version=version, deleted=True)


@router.get("/{name}/summary", response_class=Response, responses=REPORT_RESPONSES)
async def model_summary(
    name: ModelName,
    settings: SettingsDep,
    store: StoreDep,
    runtime: RuntimeDep,
    format: ReportFormatQuery = "json",
) -> Response:
    """The report of the latest version."""
    record = await _record(store, name, None)
    return render_response(
        (await _built(store, runtime, settings, record)).profile, format
    )


@router.get(
    "/{name}/versions/{version}/summary",
    response_class=Response,
    responses=REPORT_RESPONSES,
)
async def version_summary(
    name: ModelName,
    version: VersionNumber,
    settings: SettingsDep,
    store: StoreDep,
    runtime: RuntimeDep,
    format: ReportFormatQuery = "json",
) -> Response:
    """The report of one version."""
    record = await _record(store, name, version)
    return render_response(
        (await _built(store, runtime, settings, record)).profile, format
    )


@router.get(
    "/{name}/definition",
    response_model=dict[str, Any],
    responses=ERROR_RESPONSES,
)
async def model_definition(name: ModelName, store: StoreDep) -> dict[str, Any]:
    """The normalized definition of the latest version."""
    record = await _record(store, name, None)
    return await run_in_threadpool(store.load_definition, record.content_hash)


@router.get(
    "/{name}/versions/{version}/definition",
    response_model=dict[str, Any],
    responses=ERROR_RESPONSES,
)
async def version_definition(
    name: ModelName, version: VersionNumber, store: StoreDep
) -> dict[str, Any]:
    """The normalized definition of one version."""
    record = await _record(store, name, version)
    return await run_in_threadpool(store.load_definition, record.content_hash)
