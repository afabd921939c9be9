"""Inference endpoints: Open Inference Protocol V2 (``/v2/models/.../infer``,
``.../ready``) and TensorFlow Serving REST (``/v1/models/...:predict``, model
status ``GET /v1/models/...`` and metadata ``GET /v1/models/.../metadata``).

The same routes serve both roles: a full replica (``bnncore_service.main``, on
:class:`~bnncore_service.inference.InferenceService`) and an inference replica
(``bnncore_service.inference_app``, on its ``RuntimeInferenceService``, which
refuses a version that needs TensorFlow with 501). Importing this module
imports neither TensorFlow, Keras nor ``bnncore``.

Every refusal is ``{"error": "<message>"}``: 400 for a request that does not
fit the model (malformed bodies included, as the OIP specifies), 404 for an
unknown model or version, 413 over a limit, 503 when busy, 504 on timeout.

The memory bound (``BNN_MAX_REQUEST_BYTES``) is checked by the decoders
(``inference/oip.py``, ``inference/tfserving.py``), from the version's request
cost looked up before the body is decoded, so an oversized batch is refused
before its data is converted or anything runs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from bnncore_service.auth import INFER, READ
from bnncore_service.deps import ModelName, SettingsDep, VersionNumber
from bnncore_service.errors import (
    BusyError,
    error,
    error_responses,
    format_validation_errors,
)
from bnncore_service.inference import InferenceService
from bnncore_service.inference.binary import HEADER, MEDIA_TYPE, encode_body, split_body
from bnncore_service.inference.inline import (
    INLINE_TFS_BODY_BYTES,
    inline_answer,
    inline_body,
)
from bnncore_service.inference.oip import decode_oip, encode_oip_binary, parse_oip
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
from bnncore_service.inference.tensors import Decoded, InferenceError, Limits, to_json
from bnncore_service.inference.tfserving import (
    decode_tfs,
    encode_tfs,
    model_metadata,
    model_status,
)
from bnncore_service.jsonbody import JSONBodyError, check_duplicate_keys
from bnncore_service.metrics import MODEL_STATE_KEY
from bnncore_service.peak import RequestCost
from bnncore_service.registry import VersionRecord

__all__ = ["NEEDS_FULL_REPLICA", "InferenceDep", "InferenceRoute", "router"]

B = TypeVar("B", bound=BaseModel)


class _RouteOptions(TypedDict):
    """Keyword arguments of ``router.post`` shared by a route's two paths."""

    response_model: type[BaseModel]
    responses: dict[int | str, dict[str, Any]]
    response_class: type[Response]
    openapi_extra: dict[str, Any]


class InferenceRoute(APIRoute):
    """Answers this router's errors in the envelope with OIP statuses: body
    validation errors are 400 (not FastAPI's 422), an :class:`InferenceError`
    its own status (501 on an inference replica for a version that needs a
    full one), and every rejection is counted in ``bnn_rejections_total``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return error(400, format_validation_errors(list(exc.errors())))
            except InferenceError as exc:
                if exc.reason:
                    request.app.state.metrics.reject(exc.reason)
                headers = {"Retry-After": "1"} if exc.status == 503 else None
                return error(exc.status, str(exc), headers)
            except BusyError:  # a full replica's builds: 503 by its handler
                request.app.state.metrics.reject("build_busy")
                raise

        return route_handler


router = APIRouter(tags=["inference"], route_class=InferenceRoute)


async def get_inference(request: Request) -> InferenceService:
    """The app's inference service (created by the lifespan)."""
    return request.app.state.inference


InferenceDep = Annotated[InferenceService, Depends(get_inference)]

_ERRORS = error_responses(
    (
        (400, "The request does not fit the model; the message names the field"),
        (404, "Unknown model or version"),
        (413, "Body, batch, element count or request memory over a limit"),
        (503, "Too busy (retry later) or the model cannot be loaded"),
        (504, "Inference timed out"),
    )
)
NEEDS_FULL_REPLICA = error_responses(
    ((501, "The version needs TensorFlow: route it to a full replica"),)
)
"""The inference replica's one more refusal (documented where it includes
:data:`router`)."""


def _parse(raw: bytes, model: type[B]) -> B:
    """The body validated by pydantic's JSON parser (about 4x faster than
    ``json.loads`` on large tensors; it keeps the last of repeated keys, so a
    body that repeats a key is refused after it); any content type is read as
    JSON."""
    try:
        body = model.model_validate_json(raw)
        check_duplicate_keys(raw)
    except ValidationError as exc:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            # Where and why (pydantic says "... at line L column C"), never
            # the body itself.
            reason = str((errors[0].get("ctx") or {}).get("error", "invalid"))
            raise InferenceError(400, f"body: not valid JSON: {reason}") from None
        raise InferenceError(
            400, format_validation_errors(errors, total=exc.error_count())
        ) from None
    except JSONBodyError as exc:
        raise InferenceError(400, str(exc)) from None
    return body


def _json(content: Any, engine: str, nonfinite: int) -> Response:
    return Response(
        to_json(content),
        media_type="application/json",
        headers=_headers(engine, nonfinite),
    )


def _limits(settings: Any, cost: RequestCost) -> Limits:
    return Limits(
        settings.max_batch,
        settings.max_tensor_elements,
        settings.max_request_bytes,
        cost,
    )


async def _record(
    request: Request, service: InferenceService, name: str, version: int | None
) -> VersionRecord:
    record = await service.record(name, version)
    setattr(request.state, MODEL_STATE_KEY, record.name)
    return record


def _check_arity(record: VersionRecord, outputs: list[Any]) -> None:
    if len(outputs) != len(record.outputs):
        raise InferenceError(
            500,
            f"model {record.name!r} version {record.version} produced "
            f"{len(outputs)} outputs but its metadata lists {len(record.outputs)}",
        )


class _Outcome:
    """What :func:`_counted` records of a request: its rows once it succeeded."""

    rows: int | None = None


@asynccontextmanager
async def _counted(
    service: InferenceService, record: VersionRecord
) -> AsyncIterator[_Outcome]:
    """Records a request to ``record`` in the statistics extension's success
    or fail counts and durations."""
    start = time.perf_counter_ns()
    outcome = _Outcome()
    try:
        yield outcome
    finally:
        service.statistics.finish(
            record.name,
            record.version,
            outcome.rows is not None,
            outcome.rows or 0,
            time.perf_counter_ns() - start,
        )


def _timed(service: InferenceService, record: VersionRecord, kind: str) -> Any:
    """Wraps a blocking step so that its duration is added to ``kind`` of the
    statistics when it succeeds."""

    def wrap(step: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            start = time.perf_counter_ns()
            result = step()
            service.statistics.add(
                record.name, record.version, kind, time.perf_counter_ns() - start
            )
            return result

        return run

    return wrap


async def _infer(
    request: Request,
    service: InferenceService,
    settings: Any,
    name: str,
    version: int | None,
) -> Response:
    record = await _record(request, service, name, version)
    async with _counted(service, record) as outcome:
        response, rows = await _infer_record(request, service, settings, record)
        outcome.rows = rows
        return response


async def _infer_record(
    request: Request, service: InferenceService, settings: Any, record: VersionRecord
) -> tuple[Response, int]:
    raw = await request.body()
    cost = await service.cost(record)
    limits = _limits(settings, cost)
    header = request.headers.get(HEADER)

    @_timed(service, record, "compute_input")
    def decode() -> tuple[InferenceRequest, Decoded]:
        json_part, binary = split_body(raw, header)
        # orjson's fast path; pydantic validates what it declines.
        fast = parse_oip(json_part)
        body = fast if fast is not None else _parse(json_part, InferenceRequest)
        return body, decode_oip(
            body, record.name, record.inputs, record.outputs, limits, binary
        )

    # Parsing, checking and encoding large tensors take milliseconds: off the
    # loop; a small body costs less than the hop (INLINE_BODY_BYTES).
    if inline_body(raw):
        body, decoded = decode()
    else:
        body, decoded = await run_in_threadpool(decode)
    served = await service.served(record)
    outputs, engine = await service.infer(record, served, decoded, cost)
    _check_arity(record, outputs)

    @_timed(service, record, "compute_output")
    def encode() -> Response:
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
        if not buffers:
            return _json(content, engine, nonfinite)
        payload, length = encode_body(content, buffers)
        headers = _headers(engine, nonfinite)
        headers[HEADER] = str(length)
        return Response(payload, media_type=MEDIA_TYPE, headers=headers)

    if inline_answer(outputs):
        return encode(), decoded.rows
    return await run_in_threadpool(encode), decoded.rows


def _headers(engine: str, nonfinite: int) -> dict[str, str]:
    headers = {"X-BNN-Engine": engine}
    if nonfinite:
        headers["X-BNN-Nonfinite"] = str(nonfinite)
    return headers


_INFER: _RouteOptions = {
    "response_model": InferenceResponse,
    "responses": _ERRORS,
    "response_class": JSONResponse,
    "openapi_extra": request_body(InferenceRequest, BINARY_BODY),
}


@router.post("/v2/models/{name}/infer", dependencies=[INFER], **_INFER)
async def infer(
    name: ModelName,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
) -> Response:
    """Open Inference Protocol V2 inference on the latest version."""
    return await _infer(request, service, settings, name, None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer", dependencies=[INFER], **_INFER
)
async def infer_version(
    name: ModelName,
    version: VersionNumber,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
) -> Response:
    """Open Inference Protocol V2 inference on one version."""
    return await _infer(request, service, settings, name, version)


async def _ready(
    request: Request, service: InferenceService, name: str, version: int | None
) -> Response:
    record = await _record(request, service, name, version)
    try:
        await service.served(record)
    except InferenceError as exc:
        if exc.status != 501:  # 501: this replica cannot serve it
            raise
        reason: Exception = exc
    except BusyError:  # too many builds queued: 503 with Retry-After
        raise
    except Exception as exc:
        reason = exc
    else:
        return JSONResponse({"name": record.name, "ready": True})
    return error(
        503, f"model {record.name!r} version {record.version} is not ready: {reason}"
    )


@router.get(
    "/v2/models/{name}/ready",
    dependencies=[INFER],
    response_model=ModelReady,
    responses=_ERRORS,
    response_class=JSONResponse,
)
async def ready(name: ModelName, request: Request, service: InferenceDep) -> Response:
    """Whether the latest version can be served (it is loaded by this call)."""
    return await _ready(request, service, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    dependencies=[INFER],
    response_model=ModelReady,
    responses=_ERRORS,
    response_class=JSONResponse,
)
async def ready_version(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """Whether one version can be served (it is loaded by this call)."""
    return await _ready(request, service, name, version)


async def _predict(
    request: Request,
    service: InferenceService,
    settings: Any,
    name: str,
    version: int | None,
) -> Response:
    record = await _record(request, service, name, version)
    async with _counted(service, record) as outcome:
        raw = await request.body()
        cost = await service.cost(record)
        limits = _limits(settings, cost)

        @_timed(service, record, "compute_input")
        def decode() -> tuple[Decoded, bool]:
            body = _parse(raw, PredictRequest)
            return decode_tfs(body, record.name, record.inputs, limits)

        if inline_body(raw, INLINE_TFS_BODY_BYTES):
            decoded, rows_format = decode()
        else:
            decoded, rows_format = await run_in_threadpool(decode)
        served = await service.served(record)
        outputs, engine = await service.infer(record, served, decoded, cost)
        _check_arity(record, outputs)

        @_timed(service, record, "compute_output")
        def encode() -> Response:
            content, nonfinite = encode_tfs(outputs, record.outputs, rows_format)
            return _json(content, engine, nonfinite)

        if inline_answer(outputs):
            response = encode()
        else:
            response = await run_in_threadpool(encode)
        outcome.rows = decoded.rows
        return response


_PREDICT: _RouteOptions = {
    "response_model": PredictResponse,
    "responses": _ERRORS,
    "response_class": JSONResponse,
    "openapi_extra": request_body(PredictRequest),
}


@router.post("/v1/models/{name}:predict", dependencies=[INFER], **_PREDICT)
async def predict(
    name: ModelName,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
) -> Response:
    """TensorFlow Serving REST predict on the latest version."""
    return await _predict(request, service, settings, name, None)


@router.post(
    "/v1/models/{name}/versions/{version}:predict", dependencies=[INFER], **_PREDICT
)
async def predict_version(
    name: ModelName,
    version: VersionNumber,
    request: Request,
    service: InferenceDep,
    settings: SettingsDep,
) -> Response:
    """TensorFlow Serving REST predict on one version."""
    return await _predict(request, service, settings, name, version)


_LOOKUP: dict[str, Any] = {
    "response_class": JSONResponse,
    "responses": {status: _ERRORS[status] for status in (400, 404)},
}


async def _status(
    request: Request, service: InferenceService, name: str, version: int | None
) -> Response:
    record = await _record(request, service, name, version)
    if version is not None:
        return JSONResponse(model_status([record.version]))
    versions = await service.registry.versions(record.name)
    return JSONResponse(model_status(versions or [record.version]))


@router.get(
    "/v1/models/{name}",
    dependencies=[READ],
    response_model=TFSModelStatus,
    **_LOOKUP,
)
async def tfs_model_status(
    name: ModelName, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving model status of every registered version (latest
    first); each is ``AVAILABLE`` (versions are loaded on first use)."""
    return await _status(request, service, name, None)


@router.get(
    "/v1/models/{name}/versions/{version}",
    dependencies=[READ],
    response_model=TFSModelStatus,
    **_LOOKUP,
)
async def tfs_version_status(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving model status of one version."""
    return await _status(request, service, name, version)


@router.get(
    "/v1/models/{name}/metadata",
    dependencies=[READ],
    response_model=TFSModelMetadata,
    **_LOOKUP,
)
async def tfs_model_metadata(
    name: ModelName, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving model metadata (the ``serving_default`` signature) of
    the latest version."""
    record = await _record(request, service, name, None)
    return JSONResponse(model_metadata(record))


@router.get(
    "/v1/models/{name}/versions/{version}/metadata",
    dependencies=[READ],
    response_model=TFSModelMetadata,
    **_LOOKUP,
)
async def tfs_version_metadata(
    name: ModelName, version: VersionNumber, request: Request, service: InferenceDep
) -> Response:
    """TensorFlow Serving model metadata of one version."""
    record = await _record(request, service, name, version)
    return JSONResponse(model_metadata(record))
