"""Scopes are declared on the routes (``dependencies=[INFER]``), and the key
middleware enforces the scope of the route a request reaches, matched as
Starlette matches it: a model named like an endpoint (``ready``, ``infer``,
``metadata``, ``versions``, ``stats``...) gets the scope of the route its URL
reaches, on every route, in both roles.

Oracle: the scope FastAPI writes into the OpenAPI document from each route's
declaration (``security: [{"bearerAuth": [scope]}]``), compared with what the
middleware answers to keys that hold or lack that scope."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from bnncore_service.auth import (
    ADMIN,
    INFER,
    OPEN,
    READ,
    SCOPES,
    ApiKeyAuth,
    ScopeTable,
    include_router,
    require,
    required_scope,
)
from bnncore_service.config import Settings

SCHEME = "bearerAuth"
ONLY = {scope: f"only-{scope}-0123456789" for scope in SCOPES}
WITHOUT = {scope: f"without-{scope}-0123456789" for scope in SCOPES}
API_KEYS = ",".join(
    [f"{key}:{scope}" for scope, key in ONLY.items()]
    + [
        f"{key}:{'+'.join(s for s in SCOPES if s != scope)}"
        for scope, key in WITHOUT.items()
    ]
)
NAMES = (
    "ready",
    "infer",
    "metadata",
    "versions",
    "stats",
    "config",
    "load",
    "unload",
    "index",
    "summary",
    "definition",
    "weights",
    "models",
    "health",
    "predict",
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _full(data_dir: Path) -> FastAPI:
    from bnncore_service.main import create_app

    return create_app(Settings(data_dir=data_dir, api_keys=API_KEYS))


def _replica(data_dir: Path) -> FastAPI:
    from bnncore_service.inference_app import create_inference_app

    return create_inference_app(
        Settings(data_dir=data_dir, api_keys=API_KEYS, role="inference")
    )


@pytest.fixture(scope="module", params=[_full, _replica], ids=["full", "replica"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    factory: Callable[[Path], FastAPI] = request.param
    with TestClient(factory(tmp_path_factory.mktemp("scopes"))) as test_client:
        yield test_client


def declared(client: TestClient) -> list[tuple[str, str, str | None]]:
    """(method, path template, scope or None) of every documented operation."""
    document = client.get("/openapi.json", headers=bearer(ONLY["read"])).json()
    return [
        (method.upper(), path, _scope(operation))
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _scope(operation: dict[str, Any]) -> str | None:
    if "security" not in operation:
        return None
    ((scheme, scopes),) = operation["security"][0].items()
    assert scheme == SCHEME
    (scope,) = scopes
    return str(scope)


def fill(template: str, name: str) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: "1" if m.group(1) == "version" else name, template
    )


def test_models_named_like_endpoints_get_the_declared_scope(
    client: TestClient,
) -> None:
    operations = [op for op in declared(client) if "{name}" in op[1]]
    assert len(operations) >= 8
    checked = 0
    for method, template, scope in operations:
        for name in NAMES:
            url = fill(template, name)
            where = (method, url)
            if scope is None:
                assert client.request(method, url).status_code not in (401, 403)
                continue
            reply = client.request(method, url, json={})
            assert reply.status_code == 401, where
            reply = client.request(method, url, json={}, headers=bearer(WITHOUT[scope]))
            assert reply.status_code == 403, (where, reply.text)
            assert f"lacks the {scope!r} scope" in reply.json()["error"], where
            reply = client.request(method, url, json={}, headers=bearer(ONLY[scope]))
            assert reply.status_code not in (401, 403), (where, reply.text)
            checked += 1
    assert checked >= 8 * len(NAMES)


def test_the_inference_routes_need_infer_and_their_lookups_read(
    client: TestClient,
) -> None:
    """An anchor written out: the inference routes' declared scopes."""
    scopes = {(m, p): s for m, p, s in declared(client)}
    for method, path in (
        ("POST", "/v2/models/{name}/infer"),
        ("POST", "/v2/models/{name}/versions/{version}/infer"),
        ("GET", "/v2/models/{name}/ready"),
        ("POST", "/v1/models/{name}:predict"),
    ):
        assert scopes[(method, path)] == "infer", path
    for method, path in (
        ("GET", "/v2/models/{name}"),
        ("GET", "/v1/models/{name}"),
        ("GET", "/v1/models/{name}/metadata"),
    ):
        assert scopes[(method, path)] == "read", path
    assert scopes[("GET", "/v2/health/live")] is None


def _toy_app(keys: str = "r:read,i:infer,a:admin") -> FastAPI:
    """Routes whose paths would fool a reader of URL strings: an ``infer``
    segment that is a read, a GET that is admin, a POST that is a read."""
    router = APIRouter()

    @router.get("/things/{name}/infer", dependencies=[READ])
    def things_infer(name: str) -> dict[str, str]:
        return {"route": "things_infer", "name": name}

    @router.get("/things/{name}", dependencies=[ADMIN])
    def thing(name: str) -> dict[str, str]:
        return {"route": "thing", "name": name}

    @router.post("/things/{name}:run", dependencies=[INFER])
    def run(name: str) -> dict[str, str]:
        return {"route": "run", "name": name}

    @router.post("/search", dependencies=[READ])
    def search() -> dict[str, str]:
        return {"route": "search"}

    @router.get("/open", dependencies=[OPEN])
    def open_() -> dict[str, str]:
        return {"route": "open"}

    @router.delete("/undeclared")
    def undeclared() -> dict[str, str]:
        return {"route": "undeclared"}

    app = FastAPI()
    include_router(app, router)
    from bnncore_service.config import Settings

    app.add_middleware(ApiKeyAuth, keys=Settings(api_keys=keys).api_key_scopes())
    return app


@pytest.mark.parametrize(
    ("method", "path", "scope", "route"),
    [
        ("GET", "/things/infer/infer", "read", "things_infer"),
        ("GET", "/things/infer", "admin", "thing"),
        ("GET", "/things/ready", "admin", "thing"),
        ("POST", "/things/infer:run", "infer", "run"),
        ("POST", "/search", "read", "search"),
        ("GET", "/open", None, "open"),
        ("DELETE", "/undeclared", "admin", "undeclared"),
    ],
    ids=[
        "infer-segment",
        "model-infer",
        "model-ready",
        "colon",
        "post-read",
        "open",
        "undeclared-delete",
    ],
)
def test_the_route_reached_decides(
    method: str, path: str, scope: str | None, route: str
) -> None:
    app = _toy_app()
    assert required_scope(method, path, app.routes) == scope
    holders = {"read": "r", "infer": "i", "admin": "a"}
    with TestClient(app) as client:
        if scope is None:
            assert client.request(method, path).json()["route"] == route
            return
        assert client.request(method, path).status_code == 401
        for held, key in holders.items():
            reply = client.request(method, path, headers=bearer(key))
            if held == scope:
                assert reply.json()["route"] == route
            else:
                assert reply.status_code == 403, (held, path)
                assert f"lacks the {scope!r} scope" in reply.json()["error"]


def test_unrouted_requests_need_the_methods_default() -> None:
    """404 and 405 are answered only to a key: GET/HEAD need read, the rest
    admin."""
    app = _toy_app()
    assert required_scope("GET", "/nowhere", app.routes) == "read"
    assert required_scope("POST", "/nowhere", app.routes) == "admin"
    assert required_scope("PUT", "/search", app.routes) == "admin"  # 405
    with TestClient(app) as client:
        assert client.get("/nowhere").status_code == 401
        assert client.get("/nowhere", headers=bearer("r")).status_code == 404
        assert client.get("/nowhere", headers=bearer("i")).status_code == 403
        assert client.put("/search", headers=bearer("a")).status_code == 405


def test_paths_below_a_root_path_and_long_paths_match_as_starlette_does() -> None:
    app = _toy_app()
    table = ScopeTable(app.routes)
    assert table.scope("GET", "/api/things/infer/infer", "/api") == "read"
    assert table.scope("GET", "/api/things/infer", "/api") == "admin"
    assert table.scope("GET", "/apix/things/infer", "/api") == "read"  # unrouted
    long_name = "n" * (ScopeTable.KEPT_PATH + 10)
    assert table.scope("GET", f"/things/{long_name}/infer") == "read"
    assert table.scope("GET", f"/things/{long_name}") == "admin"
    with TestClient(app, root_path="/api") as client:
        assert client.get("/api/things/x", headers=bearer("r")).status_code == 403
        assert client.get("/api/things/x", headers=bearer("a")).json() == {
            "route": "thing",
            "name": "x",
        }


def test_a_route_declaring_two_scopes_is_refused() -> None:
    router = APIRouter()

    @router.get("/both", dependencies=[READ, ADMIN])
    def both() -> None:
        return None

    with pytest.raises(ValueError, match="declares 2 scopes"):
        include_router(FastAPI(), router)


def test_require_names_the_allowed_scopes() -> None:
    with pytest.raises(ValueError, match="received 'write'; allowed: read, infer"):
        require("write")
