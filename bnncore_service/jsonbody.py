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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import PlainValidator, TypeAdapter, ValidationError

from bnncore_service.errors import format_validation_errors, json_error_message

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

_CONTAINERS = frozenset({dict, list})


class JSONBodyError(ValueError):
    """A body that is not strict JSON within the limits.

    Attributes:
        path: Where in the body (``definition.layers[2].units``; ``body`` for
            the whole body).
        message: What is wrong, with the value received and what is allowed.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class JSONLimits:
    """Caps of :func:`loads_strict`.

    Attributes:
        max_keys: Most object keys in the whole body.
        max_depth: Deepest nesting of objects and arrays (the body itself is
            level 1); ``None``: not walked (only Python's recursion limit).
        keys_setting: Setting named when ``max_keys`` is exceeded.
        depth_setting: Setting named when ``max_depth`` is exceeded.
    """

    max_keys: int
    max_depth: int | None
    keys_setting: str = "BNN_MAX_DEFINITION_KEYS"
    depth_setting: str = "BNN_MAX_JSON_DEPTH"


def json_limits(settings: Any) -> JSONLimits:
    """The :class:`JSONLimits` of a :class:`bnncore_service.config.Settings`."""
    return JSONLimits(settings.max_definition_keys, settings.max_json_depth)


def _path(root: str, parts: Sequence[str | int]) -> str:
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text or "body"


_WINDOW = 256 * 1024


def _over_key_limit(raw: bytes, limit: int) -> bool:
    """Whether a JSON text may hold more than ``limit`` object keys, from its
    ``:`` bytes (each key takes one): C scans of 256 KiB windows, stopping as
    soon as the count passes the limit. A text shorter than 4 bytes a key
    (``"":0,``) is not scanned. The count is exact for a definition: no
    string of the definition language may contain ``:``."""
    if len(raw) < 4 * limit:
        return False
    count = 0
    for start in range(0, len(raw), _WINDOW):
        count += raw.count(b":", start, start + _WINDOW)
        if count > limit:
            return True
    return False


def _find(
    root: Any, max_depth: int | None, target: int | None
) -> tuple[str, list[str | int]] | None:
    """Walks the containers of a parsed body (iteratively, arrays of scalars
    skipped in C): ``("deep", path)`` for the first spot deeper than
    ``max_depth``, ``("duplicate", path)`` for the object whose ``id`` is
    ``target``, else ``None``."""
    stack: list[tuple[Any, list[str | int]]] = [(root, [])]
    while stack:
        node, path = stack.pop()
        if id(node) == target:
            return "duplicate", path
        if max_depth is not None and len(path) + 1 > max_depth:
            return "deep", path
        if type(node) is dict:
            items: Any = node.items()
        elif any(map(_CONTAINERS.__contains__, map(type, node))):
            items = enumerate(node)
        else:
            continue
        children = [
            (value, [*path, key]) for key, value in items if type(value) in _CONTAINERS
        ]
        stack.extend(reversed(children))
    return None


def check_key_count(raw: bytes, limits: JSONLimits, root: str = "") -> None:
    """Refuses a body with more ``:`` than ``limits.max_keys`` without parsing
    it (a 2 MB body of 200,000 keys: the first 600 kB are scanned, a fraction
    of a millisecond; cheap enough for the event loop).

    Raises:
        JSONBodyError: naming the count, the limit and its setting.
    """
    if _over_key_limit(raw, limits.max_keys):
        raise JSONBodyError(
            root or "body",
            f"more than {limits.max_keys:,} object keys ({limits.keys_setting}; "
            "counted by the ':' characters, one for each key)",
        )


def loads_strict(raw: bytes | str, limits: JSONLimits, root: str = "") -> Any:
    """Parses a JSON body strictly.

    Args:
        raw: The body.
        limits: Key and depth caps.
        root: Prefix of the paths in messages (``"definition"`` for a body that
            is a definition; ``""`` for one whose keys are field names).

    Returns:
        The parsed value (``dict``, ``list`` and scalars, as ``json.loads``).

    Raises:
        JSONBodyError: not JSON; more ``:`` than ``limits.max_keys`` (counted
            before parsing; a string holding ``:`` counts too, which no string
            of a definition may); a key twice in one object; nesting deeper
            than ``limits.max_depth``.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    check_key_count(data, limits, root)
    duplicate: list[Any] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs) and not duplicate:
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    duplicate.extend((id(result), key))
                    break
                seen.add(key)
        return result

    try:
        value = json.loads(data, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise JSONBodyError(
            root or "body", json_error_message(exc.msg, exc.doc, exc.pos)
        ) from None
    except UnicodeDecodeError:
        raise JSONBodyError(root or "body", "not valid UTF-8 text") from None
    except RecursionError:
        raise JSONBodyError(
            root or "body",
            f"nested deeper than {limits.max_depth} levels ({limits.depth_setting})",
        ) from None
    if duplicate:
        found = _find(value, None, duplicate[0])
        where = _path(root, found[1] if found else [])
        raise JSONBodyError(
            f"{where}.{duplicate[1]}" if where != "body" else duplicate[1],
            f"duplicate key {duplicate[1]!r}: a key may appear once in an object",
        )
    if limits.max_depth is not None and type(value) in _CONTAINERS:
        found = _find(value, limits.max_depth, None)
        if found is not None:
            raise JSONBodyError(
                _path(root, found[1]),
                f"nested deeper than {limits.max_depth} levels "
                f"({limits.depth_setting})",
            )
    return value


_QUOTE, _OPEN, _CLOSE, _BACKSLASH, _COLON = b'"{}\\:'
_SPACE = frozenset(b" \t\r\n")


def _structure(raw: bytes) -> list[int]:
    """Positions of ``"``, ``{`` and ``}`` (NumPy compares the bytes without
    the interpreter lock; a tensor's numbers hold none of them)."""
    import numpy as np

    data = np.frombuffer(raw, np.uint8)
    found = (data == _QUOTE) | (data == _OPEN) | (data == _CLOSE)
    positions: list[int] = np.flatnonzero(found).tolist()
    return positions


def check_duplicate_keys(raw: bytes, root: str = "") -> None:
    """Refuses a body that repeats a key in one object, without parsing its
    values: for bodies that pydantic's JSON parser has already validated
    (``model_validate_json``, which keeps the last of duplicate keys and is
    several times faster than ``json.loads`` on large tensors). Only the
    quotes and braces are visited (a 20 MB tensor body: tens of
    milliseconds); a body with a duplicate is parsed again, to name its path.

    Args:
        raw: A valid JSON text.
        root: Prefix of the path in the message (as :func:`loads_strict`).

    Raises:
        JSONBodyError: naming the duplicate key's path.
    """
    stack: list[set[bytes]] = []
    start = -1  # the opening quote of the string being read, or -1
    for at in _structure(raw):
        byte = raw[at]
        if start >= 0:
            if byte != _QUOTE:
                continue
            before = at - 1
            while raw[before] == _BACKSLASH:
                before -= 1
            if (at - 1 - before) % 2:  # an escaped quote
                continue
            key, start = raw[start + 1 : at], -1
            after = at + 1
            while after < len(raw) and raw[after] in _SPACE:
                after += 1
            if after == len(raw) or raw[after] != _COLON or not stack:
                continue  # a value, not a key
            if _BACKSLASH in key:  # compare what the escapes mean
                key = json.loads(b'"%s"' % key).encode("utf-8", "surrogatepass")
            if key in stack[-1]:
                # The path needs the parse: loads_strict names it.
                loads_strict(raw, JSONLimits(len(raw), None), root)
                shown = key.decode("utf-8", "replace")
                raise JSONBodyError(root or "body", f"duplicate key {shown!r}")
            stack[-1].add(key)
        elif byte == _QUOTE:
            start = at
        elif byte == _OPEN:
            stack.append(set())
        elif stack:
            stack.pop()


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
