"""Strict JSON parsing, without FastAPI: duplicate keys, key counts and
nesting depth refused with the path named.

:func:`loads_strict` parses a body with ``json.loads``, refusing a key twice
in one object and nesting deeper than a limit; :func:`check_key_count`
refuses a body with too many keys before it is parsed;
:func:`check_duplicate_keys` finds a repeated key in a body that pydantic's
faster JSON parser has already validated (which keeps the last of two).

The full service's routes use them through
:mod:`bnncore_service.jsonbody` (FastAPI's request and route classes,
validation off the event loop), which re-exports them; the inference
handlers (:mod:`bnncore_service.inference.handlers`) import them from here,
so an inference replica's requests never import FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bnncore_service.errors import json_error_message

__all__ = [
    "JSONBodyError",
    "JSONLimits",
    "check_duplicate_keys",
    "check_key_count",
    "json_limits",
    "loads_strict",
]

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
