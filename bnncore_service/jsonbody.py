"""Strict JSON request bodies, parsed and validated off the event loop.

FastAPI decodes a JSON body with ``json.loads`` on the event loop, lets the
last of two duplicate keys win and validates the result on the loop too: a
2 MB body of 200,000 keys then holds the loop for seconds. Routes of
:class:`StrictJSONRoute` instead:

* refuse a body with more object keys than ``BNN_MAX_DEFINITION_KEYS`` from a
  count of its ``:`` bytes, before it is parsed, on the event loop (a
  fraction of a millisecond; a regular expression that skipped strings took
  250 ms, holding the interpreter lock);
* parse it with :func:`loads_strict` in a worker thread (at most
  ``BNN_VALIDATION_WORKERS`` at once): duplicate keys and nesting deeper than
  ``BNN_MAX_JSON_DEPTH`` are refused, naming their path;
* validate it in that thread too (:func:`validate_off_loop`), through a body
  parameter declared with :func:`documented_as`, which FastAPI documents as
  the model but passes through unvalidated.

Every refusal is a 422 ``{"error": "<path>: <message>"}``.

Routes that parse their bodies with pydantic's faster JSON parser (the
inference routes: large tensors) can refuse duplicate keys after it with
:func:`check_duplicate_keys`, which does not parse the values.

The parsing itself (:func:`loads_strict`, :func:`check_key_count`,
:func:`check_duplicate_keys`, :class:`JSONBodyError`, :class:`JSONLimits`)
lives in :mod:`bnncore_service.strictjson`, which imports no FastAPI (the
inference replica's handlers use it); this module re-exports it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import PlainValidator, TypeAdapter, ValidationError

from bnncore_service.errors import format_validation_errors
from bnncore_service.strictjson import (
    JSONBodyError,
    JSONLimits,
    check_duplicate_keys,
    check_key_count,
    json_limits,
    loads_strict,
)

__all__ = [
    "JSONBodyError",
    "JSONLimits",
    "StrictJSONRequest",
    "StrictJSONRoute",
    "check_duplicate_keys",
    "check_key_count",
    "documented_as",
    "json_limits",
    "loads_strict",
    "run_validation",
    "validate_off_loop",
]

T = TypeVar("T")


def _limiter(request: Request) -> anyio.CapacityLimiter:
    """The app's limiter of validation threads (``BNN_VALIDATION_WORKERS``),
    created on first use (on the event loop, so without a race)."""
    state = request.app.state
    limiter = getattr(state, "validation_limiter", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(state.settings.validation_workers)
        state.validation_limiter = limiter
    return limiter


async def run_validation(request: Request, func: Callable[..., T], *args: Any) -> T:
    """Runs ``func(*args)`` in a validation thread (bounded by
    ``BNN_VALIDATION_WORKERS``), never on the event loop."""
    return await anyio.to_thread.run_sync(func, *args, limiter=_limiter(request))


class StrictJSONRequest(Request):
    """A request whose :meth:`json` is :func:`loads_strict`, in a thread."""

    root: str = ""

    async def body(self) -> bytes:
        # Starlette joins the chunks with the empty end marker, which copies a
        # body that arrived as one chunk (2 MB, milliseconds on the loop).
        if not hasattr(self, "_body"):
            chunks = [chunk async for chunk in self.stream() if chunk]
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            body = await self.body()
            limits = json_limits(self.app.state.settings)
            try:
                # The count on the loop: a hostile body is refused without a
                # thread hop; the parse in a validation thread.
                check_key_count(body, limits, self.root)
                self._strict_json = await run_validation(
                    self, loads_strict, body, limits, self.root
                )
            except JSONBodyError as exc:
                # FastAPI passes an HTTPException raised here through.
                raise HTTPException(422, str(exc)) from None
        return self._strict_json


class _DefinitionRequest(StrictJSONRequest):
    root = "definition"


class StrictJSONRoute(APIRoute):
    """A route whose JSON body FastAPI reads through :class:`StrictJSONRequest`
    (FastAPI's documented extension point for custom body decoding).

    Paths in messages start at the body's fields; use
    :class:`StrictDefinitionRoute` for a body that is a definition.
    """

    request_class: type[StrictJSONRequest] = StrictJSONRequest

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        request_class = self.request_class

        async def route_handler(request: Request) -> Response:
            return await handler(request_class(request.scope, request.receive))

        return route_handler


class StrictDefinitionRoute(StrictJSONRoute):
    """:class:`StrictJSONRoute` for a body that is a definition (paths in
    messages start with ``definition``)."""

    request_class = _DefinitionRequest


def _passthrough(value: Any) -> Any:
    return value


def documented_as(model: Any) -> PlainValidator:
    """Makes a body parameter that OpenAPI documents as ``model`` but that
    FastAPI does not validate: validate it with :func:`validate_off_loop`.

    Example:
        ``body: Annotated[Any, Body(), documented_as(RegisterRequest)]``
    """
    return PlainValidator(_passthrough, json_schema_input_type=model)


def _validate(adapter: TypeAdapter[T], data: Any, loc: tuple[str | int, ...]) -> T:
    from bnncore_service.estimate import DefinitionError

    if isinstance(data, bytes | bytearray):
        # FastAPI hands over the bytes of a body that is not declared JSON.
        raise DefinitionError(
            "body: expected a JSON object (Content-Type: application/json)"
        )
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        located = [{**e, "loc": (*loc, *e["loc"])} for e in errors]
        raise DefinitionError(
            format_validation_errors(located, total=exc.error_count(), body=data)
        ) from None


async def validate_off_loop(
    request: Request,
    adapter: TypeAdapter[T],
    data: Any,
    loc: tuple[str | int, ...] = ("body",),
) -> T:
    """Validates parsed JSON with ``adapter`` in a validation thread.

    Args:
        request: The request (for the app's limiter).
        adapter: The type to validate against.
        data: The parsed body.
        loc: Location prefix of the errors (as FastAPI's ``("body",)``).

    Raises:
        bnncore_service.estimate.DefinitionError: the validation errors in one
            message (422), formatted in the thread, at most a few listed.
    """
    return await run_validation(request, _validate, adapter, data, loc)
