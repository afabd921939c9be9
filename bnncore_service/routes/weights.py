"""Weight upload: ``PUT /v2/models/{name}/versions/{version}/weights``."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from bnncore_service.auth import ADMIN
from bnncore_service.deps import (
    ModelName,
    SettingsDep,
    VersionNumber,
)
from bnncore_service.errors import error
from bnncore_service.logs import log_event
from bnncore_service.registry import Registry, Upload
from bnncore_service.registry_deps import RegistryDep
from bnncore_service.schemas.errors import ERROR_RESPONSES
from bnncore_service.uploads import TooLargeError, body_stream, receive_into
from bnncore_service.weights import WeightsRefusedError, max_file_bytes

__all__ = ["WEIGHTS_PATH", "router"]

router = APIRouter(prefix="/v2/models", tags=["weights"])

WEIGHTS_PATH = r"/v2/models/[^/]+/versions/[^/]+/weights"
"""Regex of the upload path: its body is left unread by the middleware
(``bnncore_service.uploads.DeferredBody``) and streamed by the route after its checks,
up to ``BNN_MAX_WEIGHTS_BYTES``."""

_ACCEPTED_TYPES = ("application/octet-stream", "")
log = logging.getLogger("bnncore_service.weights")


class WeightsUploaded(BaseModel):
    """The weights now serving for a version."""

    name: str
    version: int
    weights: Literal["uploaded"] = "uploaded"
    sha256: str
    size: int
    format: Literal["bnncore", "float32"]
    tensors: int
    uploaded_at: str
    replaced: str | None = None
    """sha256 of the upload this one replaced (``None``: it replaced the
    initial weights, or was the same file again)."""


class WeightsRefusal(BaseModel):
    """A refused upload: the message, and every difference for a mismatch."""

    error: str
    differences: list[str] = []


_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
            }
        },
        "description": "A safetensors file: bnncore.export.write_weights's "
        "packed format, or plain float32 tensors keyed by weight name.",
    }
}


@router.put(
    "/{name}/versions/{version}/weights",
    dependencies=[ADMIN],
    response_model=WeightsUploaded,
    responses={
        201: {"model": WeightsUploaded, "description": "First upload"},
        400: {"model": WeightsRefusal, "description": "Not a readable file"},
        415: ERROR_RESPONSES[422] | {"description": "Not application/octet-stream"},
        **ERROR_RESPONSES,
        422: {"model": WeightsRefusal, "description": "Does not fit the model"},
    },
    openapi_extra=_BODY,
    summary="Upload the weights of a version (safetensors; replaces earlier ones)",
)
async def upload_weights(
    name: ModelName,
    version: VersionNumber,
    request: Request,
    response: Response,
    settings: SettingsDep,
    registry: RegistryDep,
) -> Any:
    """Checks every tensor name, shape and dtype of the file against the
    version's built model, then stores it atomically: until the new file is
    committed the previous weights (or the initial ones) keep serving, and a
    refused file changes nothing. 201 for a version's first upload, 200 when
    it replaces earlier weights (or is the same file again).

    The content type, the version, the declared length and the number of
    uploads in progress are checked before the body is read; the body is then
    streamed into a temporary file, its size capped as it arrives, and checked
    from there."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type.lower() not in _ACCEPTED_TYPES:
        return error(
            415,
            f"Content-Type: received {content_type[:60]!r}; allowed: "
            "'application/octet-stream' (the safetensors file as the raw body, "
            "e.g. curl --data-binary @weights.safetensors -H 'Content-Type: "
            "application/octet-stream')",
        )
    record = await registry.record(name, version)
    cap = max_file_bytes(record.params, settings.max_weights_bytes)
    limit = (
        f"BNN_MAX_WEIGHTS_BYTES={settings.max_weights_bytes}"
        if cap == settings.max_weights_bytes
        else f"the most a weights file of {name!r} version {version} "
        f"({record.params:,} params) can need: 4 bytes a value plus a header "
        "and a few extra tensors"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return error(
            413,
            f"request body of {int(declared):,} bytes exceeds the limit of "
            f"{cap:,} bytes ({limit})",
        )
    async with registry.upload() as upload:
        return await _receive_check_store(
            name, version, request, response, registry, upload, cap, limit
        )


async def _receive_check_store(
    name: str,
    version: int,
    request: Request,
    response: Response,
    registry: Registry,
    upload: Upload,
    cap: int,
    limit: str,
) -> Any:
    """The body into ``upload``, checked against the built model, then stored."""
    start = time.perf_counter()
    try:
        await receive_into(body_stream(request), upload, cap, limit)
    except TooLargeError as too_large:
        return error(413, str(too_large))
    except ClientDisconnect:
        return error(400, "the client disconnected before the whole body arrived")
    try:
        saved = await registry.save_weights(name, version, upload)
    except WeightsRefusedError as refused:
        listed = {"differences": refused.differences} if refused.differences else None
        return error(refused.status, str(refused), extra=listed)
    stored, previous = saved.stored, saved.previous
    log_event(
        log,
        logging.INFO,
        "weights_uploaded",
        "weights of {model} version {version} uploaded: {bytes} bytes in "
        "{duration_ms} ms",
        model=name,
        version=version,
        bytes=stored.size,
        sha256=stored.sha256,
        format=saved.format,
        tensors=saved.tensors,
        duration_ms=round((time.perf_counter() - start) * 1000, 1),
        replaced=previous,
    )
    response.status_code = 201 if previous is None else 200
    return WeightsUploaded(
        name=name,
        version=version,
        sha256=stored.sha256,
        size=stored.size,
        format=saved.format,  # type: ignore[arg-type]
        tensors=saved.tensors,
        uploaded_at=stored.uploaded_at,
        replaced=previous if previous != stored.sha256 else None,
    )
