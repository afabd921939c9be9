"""The OpenAPI document declares the bearer keys that ``ApiKeyAuth`` enforces:
the scheme, and on every protected operation the scope it needs. Expectations
come from the app's routes and ``required_scope``; each documented requirement
is then checked against the middleware's answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from bnncore_service.auth import SCOPES, include_router
from bnncore_service.config import Settings
from bnncore_service.main import create_app, required_scope

SCHEME = "bearerAuth"
# One key per scope, and one lacking each scope (holding the two others).
ONLY = {scope: f"only-{scope}-0123456789" for scope in SCOPES}
WITHOUT = {scope: f"without-{scope}-0123456789" for scope in SCOPES}
API_KEYS = ",".join(
    [f"{key}:{scope}" for scope, key in ONLY.items()]
    + [
        f"{key}:{'+'.join(s for s in SCOPES if s != scope)}"
        for scope, key in WITHOUT.items()
    ]
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("openapi") / "data", api_keys=API_KEYS
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    reply = client.get("/openapi.json", headers=bearer(ONLY["read"]))
    assert reply.status_code == 200
    return reply.json()


def api_routes(routes: Any) -> Iterator[APIRoute]:
    """The APIRoutes of a route list. This FastAPI lists an included router as
    one entry holding ``original_router`` (its routes carry their full paths);
    older ones copy its routes in (as bnncore_service/metrics.py also assumes)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif getattr(route, "original_router", None) is not None:
            yield from api_routes(route.original_router.routes)


def operations(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every documented operation of ``app``."""
    return sorted(
        (method, route.path)
        for route in api_routes(app.routes)
        if route.include_in_schema
        for method in route.methods
    )


def concrete(template: str) -> str:
    """A request path for a template: every parameter filled with a value the
    route accepts (``name`` is a model that is not registered)."""
    return re.sub(
        r"\{(\w+)\}", lambda m: "1" if m.group(1) == "version" else "m", template
    )


def test_the_scheme_is_http_bearer(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert list(schemes) == [SCHEME]
    assert schemes[SCHEME]["type"] == "http"
    assert schemes[SCHEME]["scheme"] == "bearer"
    assert "BNN_API_KEYS" in schemes[SCHEME]["description"]
    # No global requirement: it is per operation (the health probes are open).
    assert "security" not in document


def test_protected_operations_name_their_scope_and_open_ones_do_not(
    client: TestClient, document: dict[str, Any]
) -> None:
    routes = operations(client.app)  # type: ignore[arg-type]
    documented = sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
    )
    assert documented == routes  # every route is documented, nothing else
    open_ = set()
    for method, path in routes:
        operation = document["paths"][path][method.lower()]
        scope = required_scope(method, path)
        if scope is None:
            open_.add((method, path))
            assert "security" not in operation, (method, path)
        else:
            assert operation["security"] == [{SCHEME: [scope]}], (method, path)
    # An anchor that does not come from required_scope: only health is open.
    assert open_ == {("GET", "/v2/health/live"), ("GET", "/v2/health/ready")}
    scopes = {
        operation["security"][0][SCHEME][0]
        for item in document["paths"].values()
        for operation in item.values()
        if "security" in operation
    }
    assert scopes == set(SCOPES)


def test_the_documented_requirements_are_what_the_middleware_enforces(
    client: TestClient, document: dict[str, Any]
) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            url = concrete(path)
            if "security" not in operation:
                reply = client.request(method, url)
                assert reply.status_code == 200, (method, path)
                continue
            (scope,) = operation["security"][0][SCHEME]
            reply = client.request(method, url, json={})
            assert reply.status_code == 401, (method, path)
            assert reply.json()["error"].startswith("authentication required")
            reply = client.request(method, url, json={}, headers=bearer(WITHOUT[scope]))
            assert reply.status_code == 403, (method, path)
            assert f"lacks the {scope!r} scope" in reply.json()["error"]
            reply = client.request(method, url, json={}, headers=bearer(ONLY[scope]))
            assert reply.status_code not in (401, 403), (method, path, reply.text)


def test_swagger_ui_offers_authorize(client: TestClient) -> None:
    # The documentation is public by default even with keys set, so a browser
    # can load it and then use Authorize; the operations still need keys.
    reply = client.get("/docs")
    assert reply.status_code == 200
    assert "/openapi.json" in reply.text  # the UI reads the schemes from there
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 200
    assert client.get("/v2/models").status_code == 401


def test_private_docs_need_a_read_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_keys=API_KEYS, public_docs=False)
    with TestClient(create_app(settings)) as private:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert private.get(path).status_code == 401, path
            assert private.get(path, headers=bearer(WITHOUT["read"])).status_code == 403
            assert private.get(path, headers=bearer(ONLY["read"])).status_code == 200


def test_without_keys_the_same_document_and_every_operation_is_open(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as open_:
        assert open_.get("/openapi.json").json() == document
        for path, item in document["paths"].items():
            for method in item:
                for headers in ({}, bearer("anything"), {"Authorization": "Basic x"}):
                    reply = open_.request(
                        method, concrete(path), json={}, headers=headers
                    )
                    assert reply.status_code not in (401, 403), (method, path)


def test_the_declaration_does_not_refuse_anything() -> None:
    """The scheme is declared with auto_error=False: without the middleware, a
    protected route answers whatever the header."""
    router = APIRouter()

    @router.get("/v2/models")
    def listing() -> dict[str, str]:
        return {"ok": "yes"}

    app = FastAPI()
    include_router(app, router)
    assert app.openapi()["paths"]["/v2/models"]["get"]["security"] == [
        {SCHEME: ["read"]}
    ]
    with TestClient(app) as bare:
        for headers in ({}, bearer("x"), {"Authorization": "Basic x"}):
            assert bare.get("/v2/models", headers=headers).json() == {"ok": "yes"}


def test_a_route_whose_methods_need_different_scopes_is_refused() -> None:
    router = APIRouter()

    @router.api_route("/v2/things", methods=["GET", "DELETE"])
    def things() -> None:
        return None

    with pytest.raises(ValueError, match="need different scopes"):
        include_router(FastAPI(), router)
