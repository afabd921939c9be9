"""The JSON error envelope ``{"error": "<message>"}`` of every error response,
built here only: :func:`error` (a response), :func:`error_body` (its bytes,
for the ASGI middlewares that answer before routing) and the handlers that
turn exceptions into it (:func:`install`); its OpenAPI model is
:class:`bnncore_service.schemas.errors.ErrorResponse`. The service's own
exceptions that are not tied to a layer of it live here too:
:class:`NotFoundError` and :class:`BusyError`.

This module imports neither TensorFlow, Keras, ``bnncore``, FastAPI nor
pydantic (the inference replica, a Starlette app, uses it): FastAPI and the
exceptions of the full service's definition and build layers are imported by
:func:`install`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bnncore_service.logs import client_address, log_event, mark_logged
from bnncore_service.records import StoreError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "HANDLERS",
    "BusyError",
    "NotFoundError",
    "error",
    "error_body",
    "format_validation_errors",
    "install",
    "json_error_message",
    "send_error",
]

log = logging.getLogger("service")

_MAX_ERRORS = 5
_DEFINITION_FORMS = ("Sequential", "Graph", "Zoo", "KerasJSON")


class NotFoundError(LookupError):
    """A model or version that does not exist (→ 404)."""


class BusyError(RuntimeError):
    """Too many builds queued, or every upload slot taken (→ 503 with
    ``Retry-After``). Raised by the full replica's build executor
    (``bnncore_service.runtime``); defined here, without Keras, so that the
    routes both roles share can catch it."""


def error_body(message: str) -> bytes:
    """The envelope's bytes: ``{"error": message}`` as JSON."""
    return json.dumps({"error": message}).encode()


def error(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The envelope as a response.

    Args:
        extra: Fields a route documents after ``error`` (a refused weights
            upload's ``differences``).
    """
    body: dict[str, Any] = {"error": message, **(extra or {})}
    return JSONResponse(body, status_code=status, headers=headers)


async def send_error(
    send: Any,
    status: int,
    message: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Sends the envelope from an ASGI middleware (before routing)."""
    body = error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _location(loc: tuple[Any, ...]) -> str:
    """``("body", "definition", "Sequential", "layers", 3, "Dense", "units")`` →
    ``definition.layers[3].units`` (union tags, which are capitalized, dropped)."""
    parts: list[str] = []
    if len(loc) > 1 and loc[0] == "body" and loc[1] in _DEFINITION_FORMS:
        parts.append("definition")  # the body is a definition (dry runs)
    for index, part in enumerate(loc):
        if index == 0 and part in ("body", "query", "path", "header"):
            if part != "body":
                parts.append(str(part))
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif str(part)[:1].isupper() or str(part).startswith("function-"):
            continue
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts).lstrip(".") or "body"


def _received(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _layer_note(loc: Sequence[Any], body: Any) -> str:
    """`` (layer 'conv1', type Conv2D)`` for an error inside a layer of
    ``body`` (the parsed request), found by following ``loc``; ``""`` if
    the error is not inside a layer."""
    node, layer = body, None
    for part, following in zip(loc, (*loc[1:], None), strict=True):
        if isinstance(part, str) and (part[:1].isupper() or part == "body"):
            continue  # union tags and the "body" root are not in the data
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
            if part == "layers" and isinstance(following, int):
                layer = node
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            if layer is not None and node is not None and layer is not node:
                layer = node if isinstance(node, dict) else None
        else:
            break
    if not isinstance(layer, dict):
        return ""
    name, kind = layer.get("name"), layer.get("type")
    parts = [f"layer {str(name)[:64]!r}" if isinstance(name, str) else ""]
    parts.append(f"type {kind[:64]}" if isinstance(kind, str) else "")
    text = ", ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def json_error_message(reason: str, doc: str | bytes | None, pos: int) -> str:
    """``not valid JSON: <reason> at line L column C (character P)``: the
    message of a body that does not parse, on every route.

    Args:
        reason: What the parser says (``json.JSONDecodeError.msg``).
        doc: The text parsed (line and column are counted in it), if known.
        pos: The character offset where parsing failed.
    """
    if isinstance(doc, bytes | bytearray):
        doc = bytes(doc).decode("utf-8", "replace")
    if not doc:
        return f"not valid JSON: {reason} at character {pos}"
    line = doc.count("\n", 0, pos) + 1
    column = pos - doc.rfind("\n", 0, pos)
    return f"not valid JSON: {reason} at line {line} column {column} (character {pos})"


def format_validation_errors(
    errors: Sequence[Mapping[str, Any]], total: int | None = None, body: Any = None
) -> str:
    """One message for pydantic errors: ``path: message (received value)``,
    and the layer (name and type) when the error is inside one.

    Args:
        errors: Pydantic's error dicts; only the first few are formatted.
        total: How many errors there are in all, when ``errors`` is a part
            (``ValidationError.error_count()``); default ``len(errors)``.
        body: The parsed request the errors are about (to name the layer).
    """
    seen: dict[str, str] = {}
    for item in errors[: _MAX_ERRORS * 4]:
        if len(seen) >= _MAX_ERRORS:
            break
        where = _location(tuple(item.get("loc", ())))
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        if (
            "input" in item
            and item.get("type") not in ("missing",)
            and not isinstance(item["input"], dict | list)
        ):
            message += f" (received {_received(item['input'])})"
        if body is not None:
            message += _layer_note(tuple(item.get("loc", ())), body)
        key = f"{where}: {message}"
        seen.setdefault(key, key)
    messages = list(seen)
    text = "; ".join(messages)
    more = max(len(errors) if total is None else total, len(messages)) - len(messages)
    if more > 0:
        text += f"; and {more:,} more"
    return text


async def _http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _not_found(_: Request, exc: Exception) -> Response:
    return error(404, str(exc))


async def _busy(_: Request, exc: Exception) -> Response:
    return error(503, str(exc), {"Retry-After": "1"})


async def _store(_: Request, exc: Exception) -> Response:
    log_event(log, logging.ERROR, "store_error", "store error: {error}", error=str(exc))
    return error(503, f"registry unavailable: {exc}")


async def _unexpected(request: Request, exc: Exception) -> Response:
    from bnncore_service.metrics import route_template

    log_event(
        log,
        logging.ERROR,
        "request_failed",
        "{method} {route} failed with 500: {error}",
        exc_info=exc,
        method=request.method,
        route=route_template(dict(request.scope))[0],
        status=500,
        client=client_address(request.scope),
        error=type(exc).__name__,
    )
    mark_logged(exc)  # uvicorn's copy of the traceback is dropped
    return error(500, "internal server error")


HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    StarletteHTTPException: _http,
    NotFoundError: _not_found,
    BusyError: _busy,
    StoreError: _store,  # logged as ``store_error``
    Exception: _unexpected,  # logged as ``request_failed``, with the traceback
}
"""The handlers both roles register (Starlette's ``exception_handlers``): an
HTTP error, :class:`NotFoundError` (404), :class:`BusyError` (503 with
``Retry-After``), a registry outage (503) and any other exception (500), each
as the envelope."""


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every error of the full service into
    the envelope: :data:`HANDLERS`, and those of its definition routes."""
    from fastapi.exceptions import RequestValidationError

    from bnncore_service.estimate import DefinitionError, LimitError

    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Any:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            # FastAPI's own parse failed (a route without StrictJSONRoute):
            # say where and why, as the strict parser does.
            first = errors[0]
            loc = tuple(first.get("loc", ()))
            pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
            reason = str((first.get("ctx") or {}).get("error", "invalid"))
            body = exc.body if isinstance(exc.body, str | bytes) else None
            return error(422, f"body: {json_error_message(reason, body, pos)}")
        return error(422, format_validation_errors(errors, body=exc.body))

    @app.exception_handler(DefinitionError)
    async def _definition(_: Request, exc: DefinitionError) -> Any:
        return error(422, str(exc))

    @app.exception_handler(LimitError)
    async def _limit(_: Request, exc: LimitError) -> Any:
        return error(413, str(exc))
