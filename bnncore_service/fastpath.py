"""A dispatch fast path for the hot inference routes, in front of the router.

The app's router tries its routes in order, each through FastAPI's own
matching of an included router (a few microseconds a route): a ``POST
/v2/models/{name}/infer`` was matched after 27 of 42 routes, 160-180 µs of
CPU a request (docs/inference.md, "Where the time goes"). The order of the
routes is the order of the OpenAPI document, so it stays.

:class:`RouteFastPath` sits between the router and its matching (the
router's ``middleware_stack``, where ``Router(middleware=...)`` puts its
middleware: inside the exception handlers, after every app middleware, the
key check included). For a method one of its hot routes accepts, it finds
the first route that fully matches the request by the routes' own compiled
patterns (``path_regex``) and methods, in the router's order; when that is a
hot route, the router's entry holding it is matched (``matches``) and
handled (``handle``) exactly as the router does after its scan. Any other
request, and any request it does not decide (FastAPI's request telemetry,
router form limits), goes to the router unchanged. A pattern is used only if
a probe path built from it is matched by its router entry (an include prefix
changes the path); a route without a readable pattern is matched by its
entry's own ``matches``, and if that is full, the router decides.

``BNN_ROUTE_FAST_PATH=0`` leaves it out (for A/B measurements).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from bnncore_service.settings_env import SettingsError

__all__ = ["ENV", "RouteFastPath", "enabled", "hot_routes", "install"]

ENV = "BNN_ROUTE_FAST_PATH"
"""The environment variable that turns the fast path off (``0``)."""

_Pattern = re.Pattern[str]
# One step of a method's plan: a route's pattern (None: unreadable, its entry
# is matched instead), the router entry that holds it, whether it is hot.
_Step = tuple[_Pattern | None, BaseRoute, bool]

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def enabled() -> bool:
    """Whether the fast path is on (``BNN_ROUTE_FAST_PATH``, default on).

    Raises:
        SettingsError: naming the variable, the value received and what is
            allowed.
    """
    value = os.environ.get(ENV, "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(
        f"invalid configuration: {ENV}: received {value!r}; allowed: 1, true, "
        "on (the default) or 0, false, off"
    )


def hot_routes(router: Any) -> list[BaseRoute]:
    """The routes of ``router`` (an ``APIRouter``, or anything with ``routes``)
    that take ``POST``: for the inference router, OIP ``.../infer`` and TF
    Serving ``...:predict``."""
    return [
        route
        for route in router.routes
        if "POST" in (getattr(route, "methods", None) or ())
    ]


def install(app: Any, routes: Iterable[BaseRoute]) -> RouteFastPath | None:
    """Puts a :class:`RouteFastPath` for ``routes`` in front of ``app``'s
    router, unless ``BNN_ROUTE_FAST_PATH=0``.

    Args:
        app: The app (FastAPI's, or the inference replica's Starlette app),
            its routes included (more may be added later: the plans are made
            at the first request of a method and remade when the number of
            the router's entries changes).
        routes: The declared routes to dispatch directly (their ``APIRoute``
            objects, e.g. :func:`hot_routes` of a router).

    Returns:
        The fast path, or ``None`` when it is off.
    """
    if not enabled():
        return None
    router = app.router
    fast = RouteFastPath(router.middleware_stack, router, routes)
    router.middleware_stack = fast
    return fast


def _leaves(route: BaseRoute) -> Iterator[BaseRoute]:
    """The routes an entry of a route list stands for, in matching order (an
    included router, which FastAPI lists as one entry holding
    ``original_router``, stands for its routes, which carry their full paths)."""
    inner = getattr(route, "original_router", None)
    if inner is not None and getattr(route, "path", None) is None:
        for child in inner.routes:
            yield from _leaves(child)
    else:
        yield route


def _route_path(scope: Scope) -> str:
    """The path below ``root_path``, as Starlette's routes match it."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


def _probe(leaf: BaseRoute, entry: BaseRoute, method: str) -> bool:
    """Whether ``entry`` matches a path built from ``leaf``'s template as
    ``leaf``'s own pattern does (no include prefix in between)."""
    pattern = getattr(leaf, "path_regex", None)
    template = getattr(leaf, "path_format", None) or getattr(leaf, "path", None)
    if pattern is None or not isinstance(template, str):
        return False
    path = _PARAM.sub("1", template)
    if not pattern.match(path):
        return False
    probe = {"type": "http", "method": method, "path": path, "root_path": ""}
    match, _ = entry.matches(probe)
    return match is not Match.NONE


class RouteFastPath:
    """ASGI app between a router and its matching: dispatches the requests of
    ``routes`` without trying every route before them (module docstring).

    Args:
        app: The router's matching (its ``middleware_stack``): every request
            the fast path does not take.
        router: The router whose entries are matched and handled.
        routes: The declared routes to take.
    """

    def __init__(self, app: ASGIApp, router: Any, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self._router = router
        self._hot = list(routes)
        self._methods = frozenset(
            method for route in self._hot for method in getattr(route, "methods", ())
        )
        self._plans: dict[str, list[_Step]] = {}
        self._count = -1

    def _plan(self, method: str) -> list[_Step]:
        """The steps of ``method``: every route that can fully match it, in the
        router's order, each with its pattern and (hot) entry."""
        entries = self._router.routes
        if len(entries) != self._count:  # entries added: plans remade
            self._plans.clear()
            self._count = len(entries)
        plan = self._plans.get(method)
        if plan is not None:
            return plan
        hot = {id(route) for route in self._hot}
        plan = []
        for entry in entries:
            for leaf in _leaves(entry):
                methods = getattr(leaf, "methods", None)
                if methods and method not in methods:
                    continue  # at most a partial match (405): never first
                if isinstance(leaf, WebSocketRoute):
                    continue  # never matches an HTTP request
                pattern = getattr(leaf, "path_regex", None)
                if pattern is not None and not _probe(leaf, entry, method):
                    pattern = None
                plan.append((pattern, entry, id(leaf) in hot))
        self._plans[method] = plan
        return plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "")
        if (
            scope["type"] == "http"
            and method in self._methods
            and "fastapi.telemetry" not in scope  # the router reports the route
            and not getattr(self._router, "form_limits", None)  # the router's
        ):
            path = _route_path(scope)
            for pattern, entry, hot in self._plan(method):
                if pattern is None:  # unreadable: its router entry decides
                    if entry.matches(scope)[0] is not Match.FULL:
                        continue
                elif not pattern.match(path):
                    continue
                # The first route that fully matches: the router's choice.
                if pattern is not None and hot:
                    scope.setdefault("router", self._router)
                    match, child_scope = entry.matches(scope)
                    # FastAPI's own scope entries are the router's to merge.
                    if match is Match.FULL and "fastapi" not in child_scope:
                        scope.update(child_scope)
                        await entry.handle(scope, receive, send)
                        return
                break
        await self.app(scope, receive, send)
