"""Inference endpoints: Open Inference Protocol V2 (``/v2/models/.../infer``,
``.../ready``) and TensorFlow Serving REST (``/v1/models/...:predict``, model
status ``GET /v1/models/...`` and metadata ``GET /v1/models/.../metadata``).

The same routes serve both roles: a full replica (``bnncore_service.main``, on
:class:`~bnncore_service.inference.InferenceService`) and an inference replica
(``bnncore_service.inference_app``, on its ``RuntimeInferenceService``, which
refuses a version that needs TensorFlow with 501). The declarations here are
the full service's (its OpenAPI document, scopes and path parameters); what
they answer is :mod:`bnncore_service.inference.handlers`, which the inference
replica, a Starlette app without FastAPI, calls too. Importing this module
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

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypedDict

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from bnncore_service.auth import INFER, READ
from bnncore_service.deps import ModelName, VersionNumber
from bnncore_service.errors import BusyError, error, format_validation_errors
from bnncore_service.inference import InferenceService, handlers
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
from bnncore_service.inference.tensors import InferenceError
from bnncore_service.schemas.errors import error_responses

__all__ = ["NEEDS_FULL_REPLICA", "InferenceDep", "InferenceRoute", "router"]

# The handlers' helpers other routes use (routes/triton.py), by their names here.
_parse = handlers.parse_body
_record = handlers.record_of


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
    full one; :func:`~bnncore_service.inference.handlers.refusal`), and every
    rejection is counted in ``bnn_rejections_total``. The inference replica
    answers the same through
    :func:`~bnncore_service.inference.handlers.endpoint`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return error(400, format_validation_errors(list(exc.errors())))
            except InferenceError as exc:
                return handlers.refusal(request, exc)
            except BusyError:  # a full replica's builds: 503 by its handler
                handlers.count_busy(request)
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

_INFER: _RouteOptions = {
    "response_model": InferenceResponse,
    "responses": _ERRORS,
    "response_class": JSONResponse,
    "openapi_extra": request_body(InferenceRequest, BINARY_BODY),
}


@router.post("/v2/models/{name}/infer", dependencies=[INFER], **_INFER)
async def infer(name: ModelName, request: Request) -> Response:
    """Open Inference Protocol V2 inference on the latest version."""
    return await handlers.infer(request, name)


@router.post(
    "/v2/models/{name}/versions/{version}/infer", dependencies=[INFER], **_INFER
)
async def infer_version(
    name: ModelName, version: VersionNumber, request: Request
) -> Response:
    """Open Inference Protocol V2 inference on one version."""
    return await handlers.infer(request, name, version)


@router.get(
    "/v2/models/{name}/ready",
    dependencies=[INFER],
    response_model=ModelReady,
    responses=_ERRORS,
    response_class=JSONResponse,
)
async def ready(name: ModelName, request: Request) -> Response:
    """Whether the latest version can be served (it is loaded by this call)."""
    return await handlers.ready(request, name)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    dependencies=[INFER],
    response_model=ModelReady,
    responses=_ERRORS,
    response_class=JSONResponse,
)
async def ready_version(
    name: ModelName, version: VersionNumber, request: Request
) -> Response:
    """Whether one version can be served (it is loaded by this call)."""
    return await handlers.ready(request, name, version)


_PREDICT: _RouteOptions = {
    "response_model": PredictResponse,
    "responses": _ERRORS,
    "response_class": JSONResponse,
    "openapi_extra": request_body(PredictRequest),
}


@router.post("/v1/models/{name}:predict", dependencies=[INFER], **_PREDICT)
async def predict(name: ModelName, request: Request) -> Response:
    """TensorFlow Serving REST predict on the latest version."""
    return await handlers.predict(request, name)


@router.post(
    "/v1/models/{name}/versions/{version}:predict", dependencies=[INFER], **_PREDICT
)
async def predict_version(
    name: ModelName, version: VersionNumber, request: Request
) -> Response:
    """TensorFlow Serving REST predict on one version."""
    return await handlers.predict(request, name, version)


_LOOKUP: dict[str, Any] = {
    "response_class": JSONResponse,
    "responses": {status: _ERRORS[status] for status in (400, 404)},
}


@router.get(
    "/v1/models/{name}",
    dependencies=[READ],
    response_model=TFSModelStatus,
    **_LOOKUP,
)
async def tfs_model_status(name: ModelName, request: Request) -> Response:
    """TensorFlow Serving model status of every registered version (latest
    first); each is ``AVAILABLE`` (versions are loaded on first use)."""
    return await handlers.tfs_status(request, name)


@router.get(
    "/v1/models/{name}/versions/{version}",
    dependencies=[READ],
    response_model=TFSModelStatus,
    **_LOOKUP,
)
async def tfs_version_status(
    name: ModelName, version: VersionNumber, request: Request
) -> Response:
    """TensorFlow Serving model status of one version."""
    return await handlers.tfs_status(request, name, version)


@router.get(
    "/v1/models/{name}/metadata",
    dependencies=[READ],
    response_model=TFSModelMetadata,
    **_LOOKUP,
)
async def tfs_model_metadata(name: ModelName, request: Request) -> Response:
    """TensorFlow Serving model metadata (the ``serving_default`` signature) of
    the latest version."""
    return await handlers.tfs_metadata(request, name)


@router.get(
    "/v1/models/{name}/versions/{version}/metadata",
    dependencies=[READ],
    response_model=TFSModelMetadata,
    **_LOOKUP,
)
async def tfs_version_metadata(
    name: ModelName, version: VersionNumber, request: Request
) -> Response:
    """TensorFlow Serving model metadata of one version."""
    return await handlers.tfs_metadata(request, name, version)
