"""API-key authentication with scopes (``BNN_API_KEYS``), without FastAPI: the
ASGI middleware :class:`ApiKeyAuth` and the table of the scopes routes declare
(:class:`ScopeTable`). :mod:`bnncore_service.auth` documents the rules and adds
FastAPI's declarations (``dependencies=[INFER]``); the inference replica, a
Starlette app, declares each route's scope on the route itself
(:class:`ScopedRoute`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Collection, Iterable, Iterator, MutableMapping
from typing import Any

from starlette.routing import BaseRoute, Match, Route

from bnncore_service.api_keys import SCOPES
from bnncore_service.errors import send_error

__all__ = [
    "UNDECLARED",
    "ApiKeyAuth",
    "ScopeTable",
    "ScopedRoute",
    "check_scope",
    "declared_scope",
    "default_scope",
    "flat_routes",
]

Scope = dict[str, Any]

UNDECLARED = "undeclared"
"""What :func:`declared_scope` answers for a route that declares nothing."""


def check_scope(scope: str) -> str:
    """``scope`` if it is one of :data:`SCOPES`.

    Raises:
        ValueError: naming the scope received and the allowed ones.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope: received {scope!r}; allowed: {', '.join(SCOPES)}")
    return scope


def default_scope(method: str) -> str:
    """The scope of a route that declares none, and of a request that reaches
    no route: ``read`` for ``GET``/``HEAD``, ``admin`` for anything else."""
    return "read" if method.upper() in ("GET", "HEAD") else "admin"


class ScopedRoute(Route):
    """A Starlette route that declares the scope it needs (``None``: open).

    It serves exactly ``methods`` (a ``GET`` route does not take ``HEAD``, as
    FastAPI's routes do not) and puts itself in the request's scope as
    ``route`` when its path matches, as FastAPI's routes do (the metrics and
    the error log read the route template there).

    Args:
        path: The path template.
        endpoint: ``async def endpoint(request) -> Response``.
        methods: The methods served.
        scope: The scope a key needs (:data:`SCOPES`), or ``None``.
        include_in_schema: Whether the API's document lists it.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Collection[str],
        scope: str | None,
        name: str | None = None,
        include_in_schema: bool = True,
    ) -> None:
        super().__init__(
            path,
            endpoint,
            methods=list(methods),
            name=name,
            include_in_schema=include_in_schema,
        )
        self.methods = {method.upper() for method in methods}
        self.key_scope = None if scope is None else check_scope(scope)

    def matches(
        self, scope: MutableMapping[str, Any]
    ) -> tuple[Match, MutableMapping[str, Any]]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def declared_scope(route: BaseRoute) -> str | None:
    """The scope a :class:`ScopedRoute` declares (``None``: open), or
    :data:`UNDECLARED` for any other route."""
    if isinstance(route, ScopedRoute):
        return route.key_scope
    return UNDECLARED


def flat_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes of a route list in matching order; an included router (which
    this FastAPI lists as one entry holding ``original_router``, its routes
    carrying their full paths) is searched in place."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None and getattr(route, "path", None) is None:
            yield from flat_routes(inner.routes)
        else:
            yield route


class ScopeTable:
    """The scope each request needs, from the scopes declared on ``routes``
    (an app's ``routes``; ``declared`` reads a route's declaration, by
    default :func:`declared_scope`): the request is matched as Starlette
    matches it (the first route whose compiled path pattern and methods fully
    match), so a model named ``infer``, ``ready`` or ``stats`` is read like
    any other.

    Answers are kept for the last :data:`KEPT` (method, path) pairs of paths
    up to :data:`KEPT_PATH` characters (at most about 1 MiB).
    """

    KEPT = 4096
    KEPT_PATH = 256

    def __init__(
        self,
        routes: Iterable[BaseRoute],
        declared: Callable[[BaseRoute], str | None] | None = None,
    ) -> None:
        read = declared or declared_scope
        self._routes: list[tuple[BaseRoute, str | None]] = [
            (route, read(route)) for route in flat_routes(routes)
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
                return default_scope(method) if declared == UNDECLARED else declared
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


def _digest(key: str | bytes) -> bytes:
    raw = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key
    return hashlib.sha256(raw).digest()


class ApiKeyAuth:
    """ASGI middleware enforcing ``BNN_API_KEYS`` (the rules:
    :mod:`bnncore_service.auth`); a subclass reads other declarations by
    overriding :meth:`declared`.

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

    @staticmethod
    def declared(route: BaseRoute) -> str | None:
        """The scope ``route`` declares (:func:`declared_scope`)."""
        return declared_scope(route)

    def _scope_table(self, scope: Scope) -> ScopeTable:
        """The scopes declared on the app's routes (read at its first request,
        when every route is in place)."""
        if self._table is None:
            routes = getattr(scope.get("app"), "routes", ())
            self._table = ScopeTable(routes, self.declared)
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
