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

The middleware and the table are FastAPI-free, in :mod:`bnncore_service.keyauth`
(the inference replica, a Starlette app, uses them with its routes' own
declarations: :class:`~bnncore_service.keyauth.ScopedRoute`); this module
adds FastAPI's declarations and reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Security, params
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.routing import BaseRoute

from bnncore_service import keyauth
from bnncore_service.api_keys import SCOPES, parse_api_keys
from bnncore_service.keyauth import UNDECLARED, check_scope, default_scope

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
    return Security(BEARER, scopes=[check_scope(scope)])


READ = require("read")
INFER = require("infer")
ADMIN = require("admin")


async def _open() -> None:
    """The marker of an open route (:data:`OPEN`); it does nothing."""


OPEN: Any = Depends(_open)
"""The declaration that a route needs no key (the health probes)."""


def declared_scope(route: BaseRoute) -> str | None:
    """The scope ``route`` declares (``None``: open, :data:`OPEN`), or
    ``"undeclared"``; a route without FastAPI declarations is read by
    :func:`bnncore_service.keyauth.declared_scope`.

    Raises:
        ValueError: the route declares more than one scope.
    """
    found: list[str | None] = []
    for dependency in getattr(route, "dependencies", None) or ():
        if isinstance(dependency, params.Security) and dependency.dependency is BEARER:
            found.extend(dependency.scopes or [UNDECLARED])
        elif dependency.dependency is _open:
            found.append(None)
    if len(found) > 1:
        raise ValueError(
            f"route {getattr(route, 'path', route)}: declares {len(found)} scopes "
            f"{[str(s) for s in found]}; declare one"
        )
    return found[0] if found else keyauth.declared_scope(route)


def _route_scope(route: APIRoute) -> str | None:
    """The scope every method of ``route`` needs (``None``: open)."""
    declared = declared_scope(route)
    if declared != UNDECLARED:
        return declared
    methods = sorted(route.methods or ())
    scopes = {default_scope(method) for method in methods}
    if len(scopes) != 1:
        raise ValueError(
            f"route {route.path}: its methods {methods} need "
            f"different scopes {sorted(scopes)}; declare one route per scope"
        )
    return scopes.pop()


class ScopeTable(keyauth.ScopeTable):
    """:class:`bnncore_service.keyauth.ScopeTable` reading FastAPI's
    declarations (:func:`declared_scope`)."""

    def __init__(
        self,
        routes: Iterable[BaseRoute],
        declared: Callable[[BaseRoute], str | None] | None = None,
    ) -> None:
        super().__init__(routes, declared or declared_scope)


class ApiKeyAuth(keyauth.ApiKeyAuth):
    """:class:`bnncore_service.keyauth.ApiKeyAuth` reading FastAPI's
    declarations (:func:`declared_scope`): the full service's middleware."""

    @staticmethod
    def declared(route: BaseRoute) -> str | None:
        return declared_scope(route)


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
            declared_scope(route) == UNDECLARED
        )
        dependencies = [require(scope)] if undeclared and scope is not None else None
        app.include_router(
            APIRouter(routes=[route]), dependencies=dependencies, responses=responses
        )
