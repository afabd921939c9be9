"""The inference routes' handlers, without FastAPI: what both roles answer.

A full replica declares its routes to FastAPI
(:mod:`bnncore_service.routes.inference`,
:mod:`bnncore_service.routes.inference_role`: the OpenAPI document, the
scopes, the path parameters) and each declaration calls a handler here. The
inference replica (:mod:`bnncore_service.inference_app`), a Starlette app,
calls the same handlers through :func:`endpoint`, which does what FastAPI
and ``InferenceRoute`` do for them: the path parameters checked
(:func:`bnncore_service.pathparams.path_errors`: 400, FastAPI's messages), an
:class:`InferenceError` answered with its status (:func:`refusal`), and a
plain answer serialized as JSON.

A handler takes the request and the path parameters; it reads the app's
inference service (``request.app.state.inference``) and settings
(``request.app.state.settings``). It returns a response, or the content of a
JSON answer (a ``dict``: FastAPI checks it against the route's response
model).

Importing this module imports neither FastAPI, TensorFlow, Keras nor
``bnncore``; pydantic's validation of a body (:func:`parse_body`) is used
for the bodies the fast parsers decline.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bnncore_service.errors import BusyError, error, format_validation_errors
from bnncore_service.inference.binary import HEADER, MEDIA_TYPE, encode_body, split_body
from bnncore_service.inference.inline import (
    INLINE_TFS_BODY_BYTES,
    inline_answer,
    inline_body,
)
from bnncore_service.inference.oip import decode_oip, encode_oip_binary, parse_oip
from bnncore_service.inference.tensors import Decoded, InferenceError, Limits, to_json
from bnncore_service.inference.tfserving import (
    PredictBody,
    decode_tfs,
    encode_tfs,
    model_metadata,
    model_status,
    parse_predict,
)
from bnncore_service.metrics import MODEL_STATE_KEY
from bnncore_service.pathparams import path_errors
from bnncore_service.peak import RequestCost
from bnncore_service.records import VersionRecord

if TYPE_CHECKING:
    from pydantic import BaseModel

    from bnncore_service.inference import InferenceService
    from bnncore_service.inference.oip import OipBody
    from bnncore_service.inference.schemas import PredictRequest

__all__ = [
    "EXTENSIONS",
    "ROLE_MESSAGE",
    "endpoint",
    "infer",
    "live",
    "model_info",
    "parse_body",
    "predict",
    "ready",
    "ready_server",
    "record_of",
    "refusal",
    "server_metadata",
    "server_version",
    "tfs_metadata",
    "tfs_status",
]

B = TypeVar("B", bound="BaseModel")
Handler = Callable[..., Awaitable[Any]]

ROLE_MESSAGE = (
    "this replica serves inference only (BNN_ROLE=inference): registration, "
    "reports, definitions, weight uploads and deletes are served by a full "
    "replica (BNN_ROLE=full) on the same store"
)
EXTENSIONS = ("binary_tensor_data",)
"""The protocol extensions an inference replica implements."""


# --- errors -----------------------------------------------------------------


def refusal(request: Request, exc: InferenceError) -> Response:
    """The answer to an :class:`InferenceError`: its status and message (501
    on an inference replica for a version that needs a full one; 503 with
    ``Retry-After``), counted in ``bnn_rejections_total`` when it has a
    reason."""
    if exc.reason:
        request.app.state.metrics.reject(exc.reason)
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return error(exc.status, str(exc), headers)


def count_busy(request: Request) -> None:
    """Counts a :class:`BusyError` (a full replica's builds; its handler
    answers 503) as the rejection ``build_busy``."""
    request.app.state.metrics.reject("build_busy")


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a Starlette endpoint (the inference replica's routes):
    its path parameters checked as FastAPI checks ``deps.ModelName`` and
    ``deps.VersionNumber`` (400 naming the parameter), its errors answered as
    ``routes.inference.InferenceRoute`` answers them, and a ``dict`` it
    returns sent as JSON."""

    async def run(request: Request) -> Response:
        params, errors = path_errors(request.path_params)
        if errors:
            return error(400, format_validation_errors(errors))
        try:
            answer = await handler(request, **params)
        except InferenceError as exc:
            return refusal(request, exc)
        except BusyError:
            count_busy(request)
            raise
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    run.__name__ = run.__qualname__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def parse_body(raw: bytes, model: type[B]) -> B:
    """The body validated by pydantic's JSON parser (about 4x faster than
    ``json.loads`` on large tensors; it keeps the last of repeated keys, so a
    body that repeats a key is refused after it); any content type is read as
    JSON."""
    from pydantic import ValidationError

    from bnncore_service.strictjson import JSONBodyError, check_duplicate_keys

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


# --- helpers ----------------------------------------------------------------


def _service(request: Request) -> InferenceService:
    return request.app.state.inference


def _json(content: Any, engine: str, nonfinite: int) -> Response:
    return Response(
        to_json(content),
        media_type="application/json",
        headers=_headers(engine, nonfinite),
    )


def _headers(engine: str, nonfinite: int) -> dict[str, str]:
    headers = {"X-BNN-Engine": engine}
    if nonfinite:
        headers["X-BNN-Nonfinite"] = str(nonfinite)
    return headers


def _limits(settings: Any, cost: RequestCost) -> Limits:
    return Limits(
        settings.max_batch,
        settings.max_tensor_elements,
        settings.max_request_bytes,
        cost,
    )


async def record_of(
    request: Request, service: InferenceService, name: str, version: int | None
) -> VersionRecord:
    """The version's record (404 if it is not registered); the request is
    labelled with its model in the metrics."""
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


# --- Open Inference Protocol and TensorFlow Serving ---------------------------


async def infer(request: Request, name: str, version: int | None = None) -> Response:
    """Open Inference Protocol V2 inference (the latest version when
    ``version`` is ``None``)."""
    service = _service(request)
    record = await record_of(request, service, name, version)
    async with _counted(service, record) as outcome:
        response, rows = await _infer_record(request, service, record)
        outcome.rows = rows
        return response


async def _infer_record(
    request: Request, service: InferenceService, record: VersionRecord
) -> tuple[Response, int]:
    raw = await request.body()
    cost = await service.cost(record)
    limits = _limits(request.app.state.settings, cost)
    header = request.headers.get(HEADER)

    @_timed(service, record, "compute_input")
    def decode() -> tuple[OipBody, Decoded]:
        json_part, binary = split_body(raw, header)
        # orjson's fast path; pydantic validates what it declines.
        body: OipBody | None = parse_oip(json_part)
        if body is None:
            # pydantic and the request models are imported by the first body
            # the fast path declines, not at start.
            from bnncore_service.inference.schemas import InferenceRequest

            body = parse_body(json_part, InferenceRequest)
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


async def ready(request: Request, name: str, version: int | None = None) -> Response:
    """Whether a version can be served (it is loaded by this call): 200, or
    503 with the reason."""
    service = _service(request)
    record = await record_of(request, service, name, version)
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


async def predict(request: Request, name: str, version: int | None = None) -> Response:
    """TensorFlow Serving REST predict."""
    service = _service(request)
    record = await record_of(request, service, name, version)
    async with _counted(service, record) as outcome:
        raw = await request.body()
        cost = await service.cost(record)
        limits = _limits(request.app.state.settings, cost)

        @_timed(service, record, "compute_input")
        def decode() -> tuple[Decoded, bool]:
            body: PredictBody | PredictRequest | None = parse_predict(raw)
            if body is None:
                # pydantic and the request models are imported by the first
                # body the fast reader declines, not at start.
                from bnncore_service.inference.schemas import PredictRequest

                body = parse_body(raw, PredictRequest)
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


async def tfs_status(
    request: Request, name: str, version: int | None = None
) -> Response:
    """TensorFlow Serving model status: of one version, or of every
    registered version (latest first)."""
    service = _service(request)
    record = await record_of(request, service, name, version)
    if version is not None:
        return JSONResponse(model_status([record.version]))
    versions = await service.registry.versions(record.name)
    return JSONResponse(model_status(versions or [record.version]))


async def tfs_metadata(
    request: Request, name: str, version: int | None = None
) -> Response:
    """TensorFlow Serving model metadata (the ``serving_default``
    signature)."""
    record = await record_of(request, _service(request), name, version)
    return JSONResponse(model_metadata(record))


# --- an inference replica's own routes ----------------------------------------


@functools.cache
def server_version() -> str:
    """The installed ``bnncore`` distribution's version (the runtime image
    has only ``bnncore-runtime``: its version), looked up once (reading the
    distribution's metadata takes about 2 ms)."""
    # importlib.metadata (~10 ms) is imported by the first lookup, not at start.
    from importlib import metadata

    try:
        return metadata.version("bnncore")
    except metadata.PackageNotFoundError:  # the runtime image: the runtime's
        return metadata.version("bnncore-runtime")


async def live(request: Request) -> dict[str, Any]:
    """The process answers."""
    return {"status": "live"}


async def ready_server(request: Request) -> Response | dict[str, Any]:
    """The registry database answers and every model of ``BNN_PRELOAD`` is
    loaded (503 with the reason otherwise)."""
    preload = getattr(request.app.state, "preload", None)
    if preload is not None and not preload.ready:
        return error(503, preload.reason())
    if not await request.app.state.registry.ping():
        return error(503, "registry database unavailable")
    return {"status": "ready"}


async def server_metadata(request: Request) -> dict[str, Any]:
    """Server metadata (Open Inference Protocol) of an inference replica."""
    settings = request.app.state.settings
    names = ("max_body_bytes", "max_batch", "max_tensor_elements", "max_request_bytes")
    return {
        "name": "bnncore",
        "version": server_version(),
        "extensions": list(EXTENSIONS),
        "role": "inference",
        "limits": {name: getattr(settings, name) for name in names},
    }


def _tensors(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": spec["name"], "datatype": "FP32", "shape": list(spec["shape"])}
        for spec in specs
    ]


async def model_info(
    request: Request, name: str, version: int | None = None
) -> dict[str, Any]:
    """OIP model metadata of one version, or of the latest one with every
    version listed (``versions``), with the registry's fields."""
    service = _service(request)
    record = await record_of(request, service, name, version)
    versions = (
        await service.registry.versions(record.name)
        if version is None
        else [record.version]
    )
    return {
        "name": record.name,
        "versions": [str(v) for v in versions],
        "platform": "bnncore",
        "inputs": _tensors(record.inputs),
        "outputs": _tensors(record.outputs),
        "content_hash": record.content_hash,
        "created_at": record.created_at,
    }
