"""The routes of an inference replica (``BNN_ROLE=inference``): Open Inference
Protocol V2 inference, model metadata and readiness, the TensorFlow Serving
REST routes, health and server metadata, on ``bnncore_runtime`` (no
TensorFlow).

Requests are decoded, checked and encoded by the same codec as a full
replica's (``bnncore_service/inference/codec.py``), so bodies, limits, statuses and
the binary extension behave alike. What differs:

* a version the runtime cannot run is refused with **501** and the reason
  (``NeedsFullReplicaError``: route it to a full replica); its ready endpoint
  answers 503 with the same reason;
* registration, reports, definitions, weight uploads and deletes are not
  served: 404 (or 405 for another method on an inference path), naming the
  role (:func:`bnncore_service.inference_app.create_inference_app`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from importlib import metadata
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from bnncore_service.inference.binary import HEADER, MEDIA_TYPE, encode_body, split_body
from bnncore_service.inference.codec import (
    Decoded,
    InferenceError,
    Limits,
    decode_oip,
    decode_tfs,
    encode_oip_binary,
    encode_tfs,
    parse_oip,
    to_json,
)
from bnncore_service.inference.inline import (
    INLINE_TFS_BODY_BYTES,
    inline_answer,
    inline_body,
)
from bnncore_service.inference.runtime_models import RuntimeInferenceService
from bnncore_service.inference.schemas import (
    BINARY_BODY,
    InferenceRequest,
    InferenceResponse,
    ModelReady,
    PredictRequest,
    PredictResponse,
    TFSModelMetadata,
    TFSModelStatus,
    request_body,
)
from bnncore_service.inference.tfserving import model_metadata, model_status
from bnncore_service.jsonbody import JSONBodyError, check_duplicate_keys
from bnncore_service.metrics import MODEL_STATE_KEY
from bnncore_service.store import VersionRecord

__all__ = ["ROLE_MESSAGE", "error", "router", "server_version"]

ROLE_MESSAGE = (
    "this replica serves inference only (BNN_ROLE=inference): registration, "
    "reports, definitions, weight uploads and deletes are served by a full "
    "replica (BNN_ROLE=full) on the same store"
)
EXTENSIONS = ("binary_tensor_data",)
"""The protocol extensions an inference replica implements."""


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Any:
    """The service's error envelope, ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _location(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        if index == 0 and part in ("body", "path", "query", "header"):
            continue
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "body"


def validation_message(errors: Sequence[Mapping[str, Any]], total: int) -> str:
    """``field: message (received value)`` of the first errors."""
    shown = []
    for item in errors[:3]:
        text = f"{_location(item.get('loc', ()))}: {item.get('msg', 'invalid')}"
        if "input" in item and not isinstance(item["input"], dict | list):
            text += f" (received {str(item['input'])[:80]!r})"
        shown.append(text)
    more = total - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


class InferenceRoleRoute(APIRoute):
    """Errors in the envelope with the OIP's statuses: body validation errors
    are 400, :class:`InferenceError` s their own status (501 for a version
    that needs a full replica), each rejection counted."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                found = list(exc.errors())
                return error(400, validation_message(found, len(found)))
            except InferenceError as exc:
                if exc.reason:
                    request.app.state.metrics.reject(exc.reason)
                headers = {"Retry-After": "1"} if exc.status == 503 else None
                return error(exc.status, str(exc), headers)

        return route_handler


router = APIRouter(route_class=InferenceRoleRoute)


async def get_inference(request: Request) -> RuntimeInferenceService:
    """The app's inference service (created by the lifespan)."""
    return request.app.state.inference


InferenceDep = Annotated[RuntimeInferenceService, Depends(get_inference)]
ModelName = Annotated[
    str,
    Path(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$", description="Model name"),
]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="Version")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": description}
    for status, description in (
        (400, "The request does not fit the model; the message names the field"),
        (404, "Unknown model or version"),
        (413, "Body, batch, element count or request memory over a limit"),
        (501, "The version needs TensorFlow: route it to a full replica"),
        (503, "Too busy (retry later)"),
        (504, "Inference timed out"),
    )
}


# --------------------------------------------------------------------------
# Health and metadata
# --------------------------------------------------------------------------


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


@router.get("/v2/health/live", response_model=Health, tags=["health"])
def live() -> Health:
    """The process answers."""
    return Health(status="live")


@router.get("/v2/health/ready", response_model=Health, tags=["health"])
async def ready_server(request: Request) -> Any:
    """The registry database answers and every model of ``BNN_PRELOAD`` is
    loaded (503 with the reason otherwise)."""
    preload = getattr(request.app.state, "preload", None)
    if preload is not None and not preload.ready:
        return error(503, preload.reason())
    if not await run_in_threadpool(request.app.state.store.ping):
        return error(503, "registry database unavailable")
    return Health(status="ready")


@router.get("/v2", response_model=ServerInfo, tags=["health"])
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


async def _record(
    request: Request, service: RuntimeInferenceService, name: str, version: int | None
) -> VersionRecord:
    record = await service.record(name, version)
    setattr(request.state, MODEL_STATE_KEY, record.name)
    return record


async def _model_info(
    service: RuntimeInferenceService, record: VersionRecord, all_versions: bool
) -> ModelInfo:
    versions = (
        await run_in_threadpool(service.store.versions, record.name)
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
    "/v2/models/{name}", response_model=ModelInfo, responses=_ERRORS, tags=["models"]
)
async def model_info(
    name: ModelName, request: Request, service: InferenceDep
) -> ModelInfo:
    """OIP metadata of the latest version; ``versions`` lists every version."""
    record = await _record(request, service, name, None)
    return await _model_info(service, record, all_versions=True)


@router.get(
    "/v2/models/{name}/versions/{version}",
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


async def _ready(
    request: Request, service: RuntimeInferenceService, name: str, version: int | None
) -> Response:
    record = await _record(request, service, name, version)
    try:
        await service.served(record)
    except InferenceError as exc:
        if exc.status != 501:
            raise
        return error(503, f"not ready: {exc}")
    return JSONResponse({"name": record.name, "ready": True})


@router.get(
    "/v2/models/{name}/ready",
    response_model=ModelReady,
    responses=_ERRORS,
    tags=["inference"],
)
async def ready(name: ModelName, request: Request, service: InferenceDep) -> Response:
    """Whether this replica can serve the latest version (loads it); 503 with
    the reason when it needs a full replica."""
    return await _ready(request, service, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    response_model=ModelReady,
    responses=_ERRORS,
    tags=["inference"],
)
async def ready_version(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """Whether this replica can serve one version (loads it)."""
    return await _ready(request, service, name, version)


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------


def _parse(raw: bytes, model: type[Any]) -> Any:
    """The body validated as JSON by pydantic (repeated keys refused)."""
    try:
        body = model.model_validate_json(raw)
        check_duplicate_keys(raw)
    except ValidationError as exc:
        found = list(exc.errors())
        if found and found[0].get("type") == "json_invalid":
            reason = str((found[0].get("ctx") or {}).get("error", "invalid"))
            raise InferenceError(400, f"body: not valid JSON: {reason}") from None
        raise InferenceError(
            400, validation_message(found, exc.error_count())
        ) from None
    except JSONBodyError as exc:
        raise InferenceError(400, str(exc)) from None
    return body


def _headers(engine: str, nonfinite: int) -> dict[str, str]:
    headers = {"X-BNN-Engine": engine}
    if nonfinite:
        headers["X-BNN-Nonfinite"] = str(nonfinite)
    return headers


async def _run(
    request: Request,
    service: RuntimeInferenceService,
    record: VersionRecord,
    decode: Callable[[Limits], tuple[Decoded, Any]],
    encode: Callable[[list[Any], Decoded, Any, str], Response],
    inline: bool,
) -> Response:
    """Cost, decode, load, infer, encode; counted in the statistics as success
    or failure. Decoding runs on the loop when ``inline`` (a small body) and
    encoding when the answer is small (``bnncore_service.inference.inline``), else in
    the thread pool."""
    start = time.perf_counter_ns()
    rows: int | None = None
    try:
        settings = request.app.state.settings
        cost = await service.cost(record)
        limits = Limits(
            settings.max_batch,
            settings.max_tensor_elements,
            settings.max_request_bytes,
            cost,
        )
        if inline:
            decoded, extra = decode(limits)
        else:
            decoded, extra = await run_in_threadpool(decode, limits)
        served = await service.served(record)
        outputs, engine = await service.infer(record, served, decoded, cost)
        if len(outputs) != len(record.outputs):
            raise InferenceError(
                500,
                f"model {record.name!r} version {record.version} produced "
                f"{len(outputs)} outputs but its metadata lists {len(record.outputs)}",
            )
        if inline_answer(outputs):
            response = encode(outputs, decoded, extra, engine)
        else:
            response = await run_in_threadpool(encode, outputs, decoded, extra, engine)
        rows = decoded.rows
        return response
    finally:
        service.statistics.finish(
            record.name,
            record.version,
            rows is not None,
            rows or 0,
            time.perf_counter_ns() - start,
        )


async def _infer(
    request: Request, service: RuntimeInferenceService, name: str, version: int | None
) -> Response:
    record = await _record(request, service, name, version)
    raw = await request.body()
    header = request.headers.get(HEADER)

    def decode(limits: Limits) -> tuple[Decoded, InferenceRequest]:
        json_part, binary = split_body(raw, header)
        # orjson's fast path; pydantic validates what it declines.
        fast = parse_oip(json_part)
        body = fast if fast is not None else _parse(json_part, InferenceRequest)
        decoded = decode_oip(
            body, record.name, record.inputs, record.outputs, limits, binary
        )
        return decoded, body

    def encode(
        outputs: list[Any], decoded: Decoded, body: InferenceRequest, engine: str
    ) -> Response:
        encoded, nonfinite, buffers = encode_oip_binary(
            outputs, decoded.outputs, record.outputs, decoded.binary
        )
        parameters: dict[str, Any] = {"engine": engine}
        if nonfinite:
            parameters["nonfinite"] = nonfinite
        content: dict[str, Any] = {
            "model_name": record.name,
            "model_version": str(record.version),
        }
        if body.id is not None:
            content["id"] = body.id
        content["parameters"] = parameters
        content["outputs"] = encoded
        headers = _headers(engine, nonfinite)
        if not buffers:
            return Response(
                to_json(content), media_type="application/json", headers=headers
            )
        payload, length = encode_body(content, buffers)
        headers[HEADER] = str(length)
        return Response(payload, media_type=MEDIA_TYPE, headers=headers)

    return await _run(request, service, record, decode, encode, inline_body(raw))


_INFER: dict[str, Any] = {
    "response_model": InferenceResponse,
    "responses": _ERRORS,
    "response_class": JSONResponse,
    "openapi_extra": request_body(InferenceRequest, BINARY_BODY),
    "tags": ["inference"],
}


@router.post("/v2/models/{name}/infer", **_INFER)
async def infer(name: ModelName, request: Request, service: InferenceDep) -> Response:
    """Open Inference Protocol V2 inference on the latest version."""
    return await _infer(request, service, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer", **_INFER)
async def infer_version(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """Open Inference Protocol V2 inference on one version."""
    return await _infer(request, service, name, version)


async def _predict(
    request: Request, service: RuntimeInferenceService, name: str, version: int | None
) -> Response:
    record = await _record(request, service, name, version)
    raw = await request.body()

    def decode(limits: Limits) -> tuple[Decoded, bool]:
        return decode_tfs(
            _parse(raw, PredictRequest), record.name, record.inputs, limits
        )

    def encode(
        outputs: list[Any], decoded: Decoded, rows_format: bool, engine: str
    ) -> Response:
        content, nonfinite = encode_tfs(outputs, record.outputs, rows_format)
        return Response(
            to_json(content),
            media_type="application/json",
            headers=_headers(engine, nonfinite),
        )

    inline = inline_body(raw, INLINE_TFS_BODY_BYTES)
    return await _run(request, service, record, decode, encode, inline)


_PREDICT: dict[str, Any] = {
    "response_model": PredictResponse,
    "responses": _ERRORS,
    "response_class": JSONResponse,
    "openapi_extra": request_body(PredictRequest),
    "tags": ["tensorflow-serving"],
}


@router.post("/v1/models/{name}:predict", **_PREDICT)
async def predict(name: ModelName, request: Request, service: InferenceDep) -> Response:
    """TensorFlow Serving REST predict on the latest version."""
    return await _predict(request, service, name, None)


@router.post("/v1/models/{name}/versions/{version}:predict", **_PREDICT)
async def predict_version(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving REST predict on one version."""
    return await _predict(request, service, name, version)


_LOOKUP: dict[str, Any] = {
    "response_class": JSONResponse,
    "responses": {status: _ERRORS[status] for status in (400, 404)},
    "tags": ["tensorflow-serving"],
}


@router.get("/v1/models/{name}", response_model=TFSModelStatus, **_LOOKUP)
async def tfs_model_status(
    name: ModelName, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving model status of every registered version."""
    record = await _record(request, service, name, None)
    versions = await run_in_threadpool(service.store.versions, record.name)
    return JSONResponse(model_status(versions or [record.version]))


@router.get(
    "/v1/models/{name}/versions/{version}", response_model=TFSModelStatus, **_LOOKUP
)
async def tfs_version_status(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving model status of one version."""
    record = await _record(request, service, name, version)
    return JSONResponse(model_status([record.version]))


@router.get("/v1/models/{name}/metadata", response_model=TFSModelMetadata, **_LOOKUP)
async def tfs_model_metadata(
    name: ModelName, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving model metadata of the latest version."""
    return JSONResponse(model_metadata(await _record(request, service, name, None)))


@router.get(
    "/v1/models/{name}/versions/{version}/metadata",
    response_model=TFSModelMetadata,
    **_LOOKUP,
)
async def tfs_version_metadata(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving model metadata of one version."""
    return JSONResponse(model_metadata(await _record(request, service, name, version)))
