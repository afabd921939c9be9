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
          ``BNN_PUBLIC_DOCS=false``), the dry runs ``POST /v2/summary``,
          ``POST /v2/estimate`` and ``POST /v2/compare``, and the model
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

Each route declares the scope it needs, in its decorator:
``dependencies=[INFER]`` (:func:`require`, a FastAPI ``Security`` requirement
on the HTTP bearer scheme ``bearerAuth``, :data:`BEARER`) or ``[OPEN]`` for an
open route. The declarations are the one table: FastAPI writes each one into
the OpenAPI document (``"security": [{"bearerAuth": ["infer"]}]``), and the
middleware matches a request to the app's routes with Starlette's own route
matching (:class:`ScopeTable`) and enforces the scope of the route it reaches,
before the body is read. A route that declares nothing, or a request that
reaches no route (404, 405), needs ``read`` for ``GET``/``HEAD`` and ``admin``
otherwise (:func:`default_scope`). The dependency itself checks nothing
(``auto_error=False``): the middleware has decided before routing.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Security, params
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.routing import BaseRoute, Match

from bnncore_service.api_keys import SCOPES, parse_api_keys
from bnncore_service.errors import send_error

__all__ = [
    "ADMIN",
    "BEARER",
    "INFER",
    "OPEN",
    "READ",
    "SCOPES",
    "ApiKeyAuth",
    "ScopeTable",
    "declared_scope",
    "default_scope",
    "include_router",
    "parse_api_keys",
    "require",
    "required_scope",
]

Scope = dict[str, Any]


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


def require(scope: str) -> Any:
    """The declaration that a route needs ``scope``, for its decorator's
    ``dependencies`` (:data:`READ`, :data:`INFER`, :data:`ADMIN`).

    Raises:
        ValueError: ``scope`` is not one of :data:`SCOPES`.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope: received {scope!r}; allowed: {', '.join(SCOPES)}")
    return Security(BEARER, scopes=[scope])


READ = require("read")
INFER = require("infer")
ADMIN = require("admin")


async def _open() -> None:
    """The marker of an open route (:data:`OPEN`); it does nothing."""


OPEN: Any = Depends(_open)
"""The declaration that a route needs no key (the health probes)."""

_UNDECLARED = "undeclared"


def default_scope(method: str) -> str:
    """The scope of a route that declares none, and of a request that reaches
    no route: ``read`` for ``GET``/``HEAD``, ``admin`` for anything else."""
    return "read" if method.upper() in ("GET", "HEAD") else "admin"


def declared_scope(route: BaseRoute) -> str | None:
    """The scope ``route`` declares (``None``: open, :data:`OPEN`), or
    ``"undeclared"``.

    Raises:
        ValueError: the route declares more than one scope.
    """
    found: list[str | None] = []
    for dependency in getattr(route, "dependencies", None) or ():
        if isinstance(dependency, params.Security) and dependency.dependency is BEARER:
            found.extend(dependency.scopes or [_UNDECLARED])
        elif dependency.dependency is _open:
            found.append(None)
    if len(found) > 1:
        raise ValueError(
            f"route {getattr(route, 'path', route)}: declares {len(found)} scopes "
            f"{[str(s) for s in found]}; declare one"
        )
    return found[0] if found else _UNDECLARED


def _route_scope(route: APIRoute) -> str | None:
    """The scope every method of ``route`` needs (``None``: open)."""
    declared = declared_scope(route)
    if declared != _UNDECLARED:
        return declared
    methods = sorted(route.methods or ())
    scopes = {default_scope(method) for method in methods}
    if len(scopes) != 1:
        raise ValueError(
            f"route {route.path}: its methods {methods} need "
            f"different scopes {sorted(scopes)}; declare one route per scope"
        )
    return scopes.pop()


def _flat(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes of a route list in matching order; an included router (which
    this FastAPI lists as one entry holding ``original_router``, its routes
    carrying their full paths) is searched in place."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None and getattr(route, "path", None) is None:
            yield from _flat(inner.routes)
        else:
            yield route


class ScopeTable:
    """The scope each request needs, from the scopes declared on ``routes``
    (an app's ``routes``): the request is matched as Starlette matches it (the
    first route whose compiled path pattern and methods fully match), so a
    model named ``infer``, ``ready`` or ``stats`` is read like any other.

    Answers are kept for the last :data:`KEPT` (method, path) pairs of paths
    up to :data:`KEPT_PATH` characters (at most about 1 MiB).
    """

    KEPT = 4096
    KEPT_PATH = 256

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._routes: list[tuple[BaseRoute, str | None]] = [
            (route, declared_scope(route)) for route in _flat(routes)
        ]
        self._scope = functools.lru_cache(maxsize=self.KEPT)(self._match)

    def _match(self, method: str, path: str) -> str | None:
        request = None
        for route, declared in self._routes:
            pattern = getattr(route, "path_regex", None)
            if pattern is not None:
                methods = getattr(route, "methods", None)
                full = pattern.match(path) and (not methods or method in methods)
            else:  # a route kind without a compiled path: its own matching
                request = request or {"type": "http", "method": method, "path": path}
                full = route.matches(request)[0] is Match.FULL
            if full:
                return default_scope(method) if declared == _UNDECLARED else declared
        return default_scope(method)

    def scope(self, method: str, path: str, root_path: str = "") -> str | None:
        """The scope a request needs (``None``: open); ``path`` is taken below
        ``root_path`` as Starlette's routing takes it."""
        if root_path and path.startswith(root_path):
            rest = path[len(root_path) :]
            if not rest or rest.startswith("/"):
                path = rest
        if len(path) > self.KEPT_PATH:
            return self._match(method, path)
        return self._scope(method, path)


def required_scope(method: str, path: str, routes: Iterable[BaseRoute]) -> str | None:
    """The scope a request needs (``None``: open), as declared on the route it
    reaches among ``routes`` (the full service's:
    :func:`bnncore_service.main.required_scope`)."""
    return ScopeTable(routes).scope(method, path)


def include_router(
    app: FastAPI,
    router: APIRouter,
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> None:
    """Includes ``router`` in ``app``; a route that declares no scope is
    given :func:`default_scope` of its methods, declared the same way, so
    that the document shows what the middleware enforces.

    Args:
        app: The app.
        router: Its routes, in matching order.
        responses: More responses to document on each of them.

    Raises:
        ValueError: a route declares more than one scope, or declares none and
            its methods need different default scopes.
    """
    for route in router.routes:
        scope = _route_scope(route) if isinstance(route, APIRoute) else None
        undeclared = isinstance(route, APIRoute) and (
            declared_scope(route) == _UNDECLARED
        )
        dependencies = [require(scope)] if undeclared and scope is not None else None
        app.include_router(
            APIRouter(routes=[route]), dependencies=dependencies, responses=responses
        )


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
        self._table: ScopeTable | None = None

    def _scope_table(self, scope: Scope) -> ScopeTable:
        """The scopes declared on the app's routes (read at its first request,
        when every route is in place)."""
        if self._table is None:
            self._table = ScopeTable(getattr(scope.get("app"), "routes", ()))
        return self._table

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
        needed = self._scope_table(scope).scope(
            scope["method"], scope["path"], scope.get("root_path", "")
        )
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
    await send_error(send, status, message, [(b"www-authenticate", challenge.encode())])
