"""API-key authentication with scopes (``BNN_API_KEYS``).

When ``BNN_API_KEYS`` is set, every request except ``/v2/health/*``, the API
documentation (``/docs``, ``/redoc``, ``/openapi.json``; unless
``BNN_PUBLIC_DOCS=false``) and CORS preflights (answered before this runs) must
carry ``Authorization: Bearer <key>``. The key is compared with **every**
configured key by ``hmac.compare_digest`` on SHA-256 digests (equal lengths,
so neither the content nor the length of a configured key shows in the
timing), without stopping at the first match.

Each key has scopes:

========  ============================================================
scope     grants
========  ============================================================
read      ``GET``/``HEAD`` (model list, metadata, summaries, definitions,
          server metadata, ``/metrics``; the documentation when
          ``BNN_PUBLIC_DOCS=false``), and the dry runs
          ``POST /v2/summary`` and ``POST /v2/estimate``, and the model
          repository index ``POST /v2/repository/index``
infer     ``POST .../infer``, ``POST /v1/...:predict``, ``GET .../ready``
admin     every other method: register, upload weights, delete
``*``     all of them
========  ============================================================

``BNN_API_KEYS`` takes either form:

* compact: ``key1:read+infer,key2:admin,key3`` (comma-separated entries
  ``key[:scope+scope...]``; no scope, or ``*``, means all scopes);
* JSON: ``{"key1": ["read", "infer"], "key2": "*"}``.

No configured key (unset or blank) leaves the service open. Refusals are
counted in ``bnn_rejections_total`` with reason ``unauthorized`` (401) or
``forbidden`` (403).

The OpenAPI document declares this as the HTTP bearer scheme ``bearerAuth``
(:data:`BEARER`): :func:`include_router` adds it to every route that
:func:`required_scope` protects, with that scope as the requirement's role
(``"security": [{"bearerAuth": ["read"]}]``, OpenAPI 3.1). The declaration
documents the middleware and checks nothing itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from fastapi import APIRouter, FastAPI, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

__all__ = [
    "BEARER",
    "SCOPES",
    "ApiKeyAuth",
    "include_router",
    "parse_api_keys",
    "required_scope",
]

SCOPES = ("read", "infer", "admin")
"""The scopes a key can hold."""

_KEY = re.compile(r"^[\x21-\x7e]{1,512}$")
_DRY_RUNS = frozenset({"/v2/summary", "/v2/estimate", "/v2/compare"})
_READING_POSTS = _DRY_RUNS | {"/v2/repository/index"}
"""POST routes that only read: the dry runs and the model repository index."""

Scope = dict[str, Any]


def _key_error(message: str) -> ValueError:
    return ValueError(f"BNN_API_KEYS: {message}")


def _scopes(key_label: str, value: Any) -> frozenset[str]:
    items = value.split("+") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise _key_error(
            f"scopes of {key_label}: expected a list of scope names or '*', "
            f"received {value!r}"
        )
    names = [s.strip() for s in items]
    if not names or names == [""] or "*" in names:
        return frozenset(SCOPES)
    unknown = [s for s in names if s not in SCOPES]
    if unknown:
        raise _key_error(
            f"scopes of {key_label}: received {unknown[0]!r}; allowed: "
            f"{', '.join(SCOPES)} or '*'"
        )
    return frozenset(names)


def _check_key(key: Any, position: int) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise _key_error(
            f"key #{position + 1}: keys must be 1 to 512 printable ASCII "
            "characters without spaces"
        )
    return key


def parse_api_keys(text: str | None) -> dict[str, frozenset[str]]:
    """Parses ``BNN_API_KEYS`` into key → scopes.

    Raises:
        ValueError: naming the entry (by position, never by the key itself),
            what was received and what is allowed.
    """
    if text is None or not text.strip():
        return {}
    text = text.strip()
    keys: dict[str, frozenset[str]] = {}
    if text.startswith("{"):
        try:
            pairs = json.loads(text, object_pairs_hook=list)
        except ValueError as error:
            raise _key_error(f"not valid JSON ({error.__class__.__name__})") from None
        for position, (key, value) in enumerate(pairs):
            _check_key(key, position)
            if key in keys:
                raise _key_error(f"key #{position + 1} is given twice")
            keys[key] = _scopes(f"key #{position + 1}", value)
        return keys
    for position, entry in enumerate(text.split(",")):
        key, _, scopes = entry.strip().partition(":")
        _check_key(key, position)
        if key in keys:
            raise _key_error(f"key #{position + 1} is given twice")
        keys[key] = _scopes(f"key #{position + 1}", scopes)
    return keys


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs (``None``: open, i.e. health)."""
    if path == "/v2/health" or path.startswith("/v2/health/"):
        return None
    method = method.upper()
    parts = path.split("/")
    # /v2/models/{name}[/versions/{v}]/(infer|ready): the model name comes
    # first, so a model named "infer" or "ready" is read like any other.
    model_endpoint = len(parts) >= 5 and parts[1:3] == ["v2", "models"]
    if (
        (model_endpoint and parts[-1] in ("infer", "ready"))
        or (path.startswith("/v1/") and path.endswith("/ready"))
        or ":" in parts[-1]  # TF Serving's :predict, :classify...
    ):
        return "infer"
    if method in ("GET", "HEAD"):
        return "read"
    if method == "POST" and path.rstrip("/") in _READING_POSTS:
        return "read"
    return "admin"


BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    description=(
        "An API key from `BNN_API_KEYS`, sent as `Authorization: Bearer <key>`. "
        "Needed only when the service has `BNN_API_KEYS` set (otherwise it is "
        "open). Each key has scopes: `read`, `infer`, `admin`; an operation's "
        "security requirement names the one it needs (401 without a valid key, "
        "403 without that scope)."
    ),
    auto_error=False,
)
"""The OpenAPI declaration of the key :class:`ApiKeyAuth` checks. As a
dependency it only reads the header (``auto_error=False``: it never refuses);
the middleware has already decided before routing."""


def _route_scope(route: APIRoute) -> str | None:
    """The scope every method of ``route`` needs (``None``: open)."""
    methods = sorted(route.methods or ())
    scopes = {required_scope(method, route.path) for method in methods}
    if len(scopes) != 1:
        raise ValueError(
            f"route {route.path}: its methods {methods} need "
            f"different scopes {sorted(map(str, scopes))}; declare one route per "
            "scope"
        )
    return scopes.pop()


def include_router(app: FastAPI, router: APIRouter) -> None:
    """Includes ``router`` in ``app``, declaring :data:`BEARER` on each route
    that :func:`required_scope` protects, with the scope it needs.

    The scope comes from the function the middleware uses, applied to the
    route's path template, so the document follows what is enforced, for
    routes added later too.
    """
    for route in router.routes:
        scope = _route_scope(route) if isinstance(route, APIRoute) else None
        dependencies = None if scope is None else [Security(BEARER, scopes=[scope])]
        app.include_router(APIRouter(routes=[route]), dependencies=dependencies)


def _digest(key: str | bytes) -> bytes:
    raw = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key
    return hashlib.sha256(raw).digest()


class ApiKeyAuth:
    """ASGI middleware enforcing ``BNN_API_KEYS`` (see the module docstring).

    Answers 401 (missing, malformed or unknown key; ``WWW-Authenticate:
    Bearer``) or 403 (a valid key without the route's scope) in the service's
    JSON envelope, before the request body is read.
    """

    def __init__(
        self,
        app: Any,
        keys: dict[str, frozenset[str]],
        open_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self._keys = [(_digest(key), scopes) for key, scopes in keys.items()]
        self._open = open_paths

    def authorize(self, header: bytes | None) -> frozenset[str] | None:
        """The scopes of the presented key; ``None``: no valid key.

        Every configured key is compared (constant time, no early exit).
        """
        if header is None:
            return None
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return None
        presented = _digest(token)
        granted: frozenset[str] = frozenset()
        matched = False
        for digest, scopes in self._keys:
            equal = hmac.compare_digest(digest, presented)
            matched |= equal
            granted = granted | (scopes if equal else frozenset())
        return granted if matched else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._keys:
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope["method"], scope["path"])
        if needed is None or scope["path"] in self._open:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                header = value
                break
        granted = self.authorize(header)
        if granted is None:
            if header is None:
                message = (
                    "authentication required: send 'Authorization: Bearer <key>' "
                    "(the service has BNN_API_KEYS set)"
                )
            elif b" " not in header.strip() and header.strip().lower() != b"bearer":
                # One token, no scheme: most likely a bare key. Never echo it.
                message = (
                    "Authorization: a value without a scheme received (a bare "
                    "key?); allowed: 'Bearer <key>'"
                )
            elif header.partition(b" ")[0].lower() != b"bearer":
                received = header.partition(b" ")[0][:20].decode("latin-1")
                message = (
                    f"Authorization: scheme {received!r} received; allowed: "
                    "'Bearer <key>'"
                )
            else:
                message = "Authorization: the API key is not valid"
            challenge = 'Bearer realm="bnncore"'
            if header is not None:
                challenge += ', error="invalid_token"'
            _count(scope, "unauthorized")
            await _respond(send, 401, message, challenge)
            return
        if needed not in granted:
            _count(scope, "forbidden")
            held = ", ".join(s for s in SCOPES if s in granted) or "none"
            await _respond(
                send,
                403,
                f"this API key lacks the {needed!r} scope that {scope['method']} "
                f"{scope['path'][:200]} requires (its scopes: {held})",
                f'Bearer realm="bnncore", error="insufficient_scope", scope="{needed}"',
            )
            return
        await self.app(scope, receive, send)


def _count(scope: Scope, reason: str) -> None:
    """Counts a refusal in the app's ``bnn_rejections_total`` (if it has one)."""
    metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
    if metrics is not None:
        metrics.reject(reason)


async def _respond(send: Any, status: int, message: str, challenge: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
