"""The inference replica is a Starlette app: its process imports no FastAPI,
and it answers as its routes declared to FastAPI do.

Oracles: FastAPI itself (the replica's routes declared to FastAPI,
``routes.inference_role.openapi_app``, serving the same requests on the same
app state), the full service's scope declarations (its key middleware's
table), and a fresh interpreter's ``sys.modules``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.routing import Match, Route
from test_inference_common import FLOAT, SEQ, register, register_with_weights

from bnncore_service import auth, keyauth
from bnncore_service.config import Settings
from bnncore_service.inference_app import ROUTES, create_inference_app
from bnncore_service.main import create_app
from bnncore_service.routes.inference_role import openapi_app

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
X = np.random.default_rng(11).normal(size=(2, 6, 6, 2)).astype(np.float32)
OIP = {"inputs": [{"name": "input", "shape": [2, 6, 6, 2], "datatype": "FP32",
                   "data": X.reshape(-1).tolist()}]}  # fmt: skip
FORBIDDEN = ("fastapi", "tensorflow", "keras", "bnncore")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store a full replica wrote: ``seq`` with uploaded weights (served by
    the replica), ``float`` (no binary layer) and ``unweighted`` (both need a
    full replica)."""
    data_dir = tmp_path_factory.mktemp("replica") / "data"
    with TestClient(create_app(Settings(data_dir=data_dir))) as full:
        register_with_weights(full, "seq", SEQ, 5)
        register(full, "float", FLOAT)
        register(full, "unweighted", SEQ)
    return data_dir


@pytest.fixture(scope="module")
def clients(store: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """The replica, and its routes declared to FastAPI on the replica's state
    (the same inference service, registry, settings and metrics)."""
    settings = Settings(data_dir=store, role="inference")
    with TestClient(create_inference_app(settings)) as replica:
        app: Any = replica.app
        declared = openapi_app(app.title, app.version, app.description)
        declared.state = app.state
        yield replica, TestClient(declared)


def _json(body: Any) -> dict[str, Any]:
    return {
        "content": json.dumps(body),
        "headers": {"Content-Type": "application/json"},
    }


OIP_BINARY = {**OIP, "id": "r1", "parameters": {"binary_data_output": True}}
DUPLICATE = b'{"inputs": [], "inputs": ' + json.dumps(OIP["inputs"]).encode() + b"}"
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("live", "GET", "/v2/health/live", {}),
    ("ready-server", "GET", "/v2/health/ready", {}),
    ("server", "GET", "/v2", {}),
    ("model", "GET", "/v2/models/seq", {}),
    ("version", "GET", "/v2/models/seq/versions/1", {}),
    ("version-lax", "GET", "/v2/models/seq/versions/+1", {}),
    ("version-unknown", "GET", "/v2/models/seq/versions/2", {}),
    ("version-zero", "GET", "/v2/models/seq/versions/0", {}),
    ("version-text", "GET", "/v2/models/seq/versions/one", {}),
    ("version-big", "GET", "/v2/models/seq/versions/2147483648", {}),
    ("name-bad", "GET", "/v2/models/9seq", {}),
    ("both-bad", "GET", "/v2/models/9seq/versions/0", {}),
    ("model-unknown", "GET", "/v2/models/nothing", {}),
    ("infer", "POST", "/v2/models/seq/infer", _json(OIP)),
    ("infer-binary", "POST", "/v2/models/seq/versions/1/infer", _json(OIP_BINARY)),
    ("infer-not-json", "POST", "/v2/models/seq/infer", {"content": b"{not json"}),
    ("infer-duplicate", "POST", "/v2/models/seq/infer", {"content": DUPLICATE}),
    ("infer-extra", "POST", "/v2/models/seq/infer", _json({**OIP, "extra": 1})),
    ("infer-shape", "POST", "/v2/models/seq/infer",
     _json({"inputs": [{**OIP["inputs"][0], "shape": [2, 6, 6, 3]}]})),
    ("infer-name-bad", "POST", "/v2/models/-seq/infer", _json(OIP)),
    ("infer-float", "POST", "/v2/models/float/infer", _json(OIP)),
    ("infer-unweighted", "POST", "/v2/models/unweighted/infer", _json(OIP)),
    ("ready", "GET", "/v2/models/seq/ready", {}),
    ("ready-version", "GET", "/v2/models/seq/versions/1/ready", {}),
    ("ready-float", "GET", "/v2/models/float/ready", {}),
    ("predict", "POST", "/v1/models/seq:predict", _json({"instances": X.tolist()})),
    ("predict-columns", "POST", "/v1/models/seq/versions/1:predict",
     _json({"inputs": X.tolist()})),
    ("predict-bad", "POST", "/v1/models/seq:predict", _json({"instances": "x"})),
    ("predict-version-bad", "POST", "/v1/models/seq/versions/x:predict", _json({})),
    ("tfs-status", "GET", "/v1/models/seq", {}),
    ("tfs-version-status", "GET", "/v1/models/seq/versions/1", {}),
    ("tfs-metadata", "GET", "/v1/models/seq/metadata", {}),
    ("tfs-version-metadata", "GET", "/v1/models/seq/versions/1/metadata", {}),
    ("tfs-unknown", "GET", "/v1/models/nothing/metadata", {}),
]  # fmt: skip


def _answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k, v) for k, v in response.headers.items() if k != "date")
    return response.status_code, headers, response.content


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_replica_answers_as_its_fastapi_declarations(
    clients: tuple[TestClient, TestClient],
    method: str,
    path: str,
    kw: dict[str, Any],
) -> None:
    replica, declared = clients
    served = _answer(replica.request(method, path, **kw))
    assert served == _answer(declared.request(method, path, **kw))
    assert served[0] != 500, served  # 501 and 503 are answers here


def test_the_cases_reach_every_route_and_outcome(
    clients: tuple[TestClient, TestClient],
) -> None:
    """The table above is not vacuous: it reaches every route of the table
    with a success and covers each kind of answer."""
    replica, _ = clients
    statuses: set[int] = set()
    succeeded = set()
    for _, method, path, kw in CASES:
        response = replica.request(method, path, **kw)
        statuses.add(response.status_code)
        if response.status_code == 200:
            succeeded.add((method, _template(replica.app, method, path)))
    assert {200, 400, 404, 501, 503} <= statuses
    assert succeeded == {(method, path) for path, method, _, _ in ROUTES}


def _template(app: Any, method: str, path: str) -> str:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in app.routes:
        if route.matches(scope)[0] is Match.FULL:
            return str(route.path)
    return "unmatched"


def _probe(template: str) -> str:
    return template.replace("{name}", "m").replace("{version}", "1")


def test_each_route_needs_the_scope_the_full_service_declares(
    tmp_path: Path,
) -> None:
    """The replica's declared scopes equal its FastAPI declarations', and for
    every route the full service also serves (same path template and
    method), the full service's."""
    replica: Any = create_inference_app(Settings(data_dir=tmp_path, role="inference"))
    declared = auth.ScopeTable(openapi_app("t", "v", "d").routes)
    full_app = create_app(Settings(data_dir=tmp_path))
    full = auth.ScopeTable(full_app.routes)
    full_leaves = list(keyauth.flat_routes(full_app.routes))
    served = keyauth.ScopeTable(replica.routes)
    shared = 0
    routes = [r for r in replica.routes if isinstance(r, keyauth.ScopedRoute)]
    assert len(routes) == len(ROUTES) + 4  # /metrics, /docs, /redoc, oauth2
    for route in routes:
        (method,) = route.methods
        path = _probe(route.path)
        assert route.key_scope == declared.scope(method, path), route.path
        assert served.scope(method, path) == route.key_scope
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        reached = next(
            (r for r in full_leaves if r.matches(scope)[0] is Match.FULL), None
        )
        if reached is not None and reached.path == route.path:
            assert route.key_scope == full.scope(method, path), route.path
            shared += 1
    assert shared >= len(ROUTES)  # the inference routes at least


def test_the_document_lists_exactly_the_routes_served(tmp_path: Path) -> None:
    replica: Any = create_inference_app(Settings(data_dir=tmp_path, role="inference"))
    document = replica.openapi()
    assert document["info"]["title"] == replica.title
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
    }
    served = {
        (method, route.path)
        for route in replica.routes
        if isinstance(route, Route) and route.include_in_schema
        for method in route.methods
    }
    assert documented == served
    assert served == {(method, path) for path, method, _, _ in ROUTES} | {
        ("GET", "/metrics")
    }


CHILD = """
import json, sys
from starlette.testclient import TestClient
from bnncore_service.settings_env import read_settings

FORBIDDEN = {forbidden!r}
SETTINGS = ("pydantic_settings", "bnncore_service.config")  # pydantic-settings

def loaded():
    return sorted(
        m for m in sys.modules if m.split(".")[0] in FORBIDDEN or m in SETTINGS
    )

seen = {{}}
from bnncore_service.inference_app import create_inference_app
from bnncore_service.inference.schemas import InferenceRequest, PredictRequest
seen["import"] = loaded()
RESPONSES = "bnncore_service.inference.responses"  # the response models
REQUESTS = (InferenceRequest, PredictRequest)
seen["deferred"] = [RESPONSES in sys.modules] + [
    m.__pydantic_complete__ for m in REQUESTS
]
bodies = json.loads(sys.stdin.read())
body, fallback = bodies["oip"], json.dumps(bodies["oip"] | {{"id": "r\\\\1"}})
from bnncore_service.inference.oip import parse_oip
assert parse_oip(fallback.encode()) is None  # pydantic's validation parses it
settings = read_settings()  # BNN_DATA_DIR, BNN_ROLE=inference
with TestClient(create_inference_app(settings)) as client:
    for method, path, status, kw in [
        ("GET", "/v2/health/ready", 200, {{}}),
        ("POST", "/v2/models/seq/infer", 200, {{"json": body}}),
        ("POST", "/v2/models/seq/infer", 200, {{"content": fallback}}),
        ("POST", "/v1/models/seq:predict", 200, {{"json": bodies["tfs"]}}),
        ("POST", "/v1/models/seq:predict", 400, {{"content": '{{"instances": 3}}'}}),
        ("GET", "/v2/models/seq/ready", 200, {{}}),
        ("GET", "/v2/models/seq", 200, {{}}),
        ("GET", "/v2/models/9seq", 400, {{}}),
        ("GET", "/v1/models/seq/metadata", 200, {{}}),
        ("GET", "/metrics", 200, {{}}),
        ("GET", "/v2/models", 404, {{}}),
    ]:
        reply = client.request(method, path, **kw)
        assert reply.status_code == status, (path, reply.text)
    seen["served"] = loaded()
    seen["built"] = [RESPONSES in sys.modules] + [
        m.__pydantic_complete__ for m in REQUESTS
    ]
    assert client.get("/openapi.json").status_code == 200
    seen["documented"] = loaded()
    seen["documents"] = RESPONSES in sys.modules
print(json.dumps(seen))
"""


def test_serving_imports_no_fastapi(store: Path) -> None:
    """A fresh interpreter: importing the replica and serving an OIP request
    (one taking orjson's fast path, one that pydantic's validation parses),
    TF Serving predicts (one read without pydantic, one that pydantic
    refuses) and their neighbours imports neither FastAPI,
    TensorFlow, Keras nor bnncore, nor pydantic-settings (the settings read
    from the environment, as a replica reads them), nor the response models; the request
    models are built when a body is first validated; the first request for
    the document imports FastAPI and the response models (so the checks see
    them when they are there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    env |= {"BNN_DATA_DIR": str(store), "BNN_ROLE": "inference"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(forbidden=FORBIDDEN)],
        input=json.dumps({"oip": OIP, "tfs": {"instances": X.tolist()}}),
        capture_output=True, text=True, cwd=ROOT, env=env,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["import"] == [] and seen["served"] == []
    # The response models (documentation only) are not imported to serve, and
    # the request models are built by their first validation, not at start.
    assert seen["deferred"] == [False, False, False]
    assert seen["built"] == [False, True, True]
    assert seen["documents"]
    assert "fastapi" in seen["documented"]
    assert not {"tensorflow", "keras", "bnncore"} & set(seen["documented"])
