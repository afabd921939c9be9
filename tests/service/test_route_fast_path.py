"""The route fast path (bnncore_service/fastpath.py) answers exactly as the
router: the same request with the fast path and with the router's own scan
(the same app, the fast path switched out) gives the same status, headers
(but ``date``), body, metrics labels and log lines; it takes only full
matches of the inference router's POST routes and hands every other request
to the router."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount
from test_inference_common import SEQ, register

from bnncore_service import fastpath
from bnncore_service.config import Settings, SettingsError
from bnncore_service.inference_app import create_inference_app
from bnncore_service.keyauth import flat_routes
from bnncore_service.logs import RequestLog
from bnncore_service.main import create_app
from bnncore_service.metrics import Metrics, MetricsMiddleware
from bnncore_service.routes import inference

KEYS = "reader:read,caller:infer,boss:*"
X = np.random.default_rng(3).normal(size=(2, 6, 6, 2)).astype(np.float32)
OIP = {"inputs": [{"name": "input", "shape": [2, 6, 6, 2], "datatype": "FP32"}]}


class Spy:
    """Counts the requests the router's own matching receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


class Switch:
    """The fast path of an app and the router's matching behind it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.fast = app.router.middleware_stack
        assert isinstance(self.fast, fastpath.RouteFastPath)
        self.spy = Spy(self.fast.app)
        self.fast.app = self.spy

    @contextmanager
    def off(self) -> Iterator[None]:
        self.app.router.middleware_stack = self.spy
        try:
            yield
        finally:
            self.app.router.middleware_stack = self.fast


def _samples(app: Any) -> dict[tuple[str, ...], float]:
    """``bnn_http_requests_total`` by label values."""
    return {
        (
            s.labels["method"],
            s.labels["route"],
            s.labels["model"],
            s.labels["status"],
        ): s.value
        for metric in app.state.metrics.requests.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }


def _delta(app: Any, before: dict[tuple[str, ...], float]) -> dict[Any, float]:
    after = _samples(app)
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k)}


def _answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k, v) for k, v in response.headers.items() if k != "date")
    return response.status_code, headers, response.content


def _both(
    client: TestClient,
    switch: Switch,
    caplog: Any,
    method: str,
    path: str,
    routed: bool = True,
    **kw: Any,
) -> tuple[Any, bool]:
    """The request with the fast path, then through the router; asserts that
    both give the same answer (``/metrics``: the same status, its counts
    change), metrics labels and log lines, and that the second reached the
    router's matching once (``routed``; a request the key check refuses
    reaches no route). Returns the answer and whether the fast path took it
    (the router's matching was not called)."""
    caplog.set_level(logging.DEBUG, logger="service.requests")  # every request
    answers, labels, logs, calls = [], [], [], []
    for mode in ("fast", "router"):
        before, count = _samples(client.app), switch.spy.calls
        caplog.clear()
        if mode == "fast":
            response = client.request(method, path, follow_redirects=False, **kw)
        else:
            with switch.off():
                response = client.request(method, path, follow_redirects=False, **kw)
        answers.append(_answer(response))
        labels.append(_delta(client.app, before))
        logs.append(
            [
                (r.event, {k: v for k, v in r.fields.items() if k != "duration_ms"})
                for r in caplog.records
                if r.name == "service.requests"
            ]
        )
        calls.append(switch.spy.calls - count)
    if path == "/metrics":
        answers = [answer[0] for answer in answers]
    assert answers[0] == answers[1], (method, path)
    assert labels[0] == labels[1] and len(labels[0]) == 1, labels
    assert logs[0] == logs[1], logs
    logged = any(m.cls is RequestLog for m in client.app.user_middleware)
    assert bool(logs[0]) == logged  # a line a request where the app logs
    assert all(fields["route"] for _, fields in logs[0])
    assert calls[1] == int(routed), (method, path)
    return response, calls[0] == 0


@pytest.fixture(scope="module")
def app(tmp_path_factory: Any) -> Iterator[tuple[TestClient, Switch]]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("fastpath") / "data",
        api_keys=KEYS,
        slow_request_ms=60_000,
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = "Bearer boss"
        register(client, "seq", SEQ)
        register(client, "infer", SEQ)  # a model named like the route's end
        yield client, Switch(client.app)


def _oip() -> dict[str, Any]:
    body = {"inputs": [dict(OIP["inputs"][0], data=X.ravel().tolist())]}
    return {"json": body}


def _binary() -> dict[str, Any]:
    header = (
        b'{"inputs":[{"name":"input","shape":[2,6,6,2],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":%d}}]}' % X.nbytes
    )
    return {
        "content": header + X.tobytes(),
        "headers": {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    }


def _predict() -> dict[str, Any]:
    return {"json": {"instances": X.tolist()}}


HOT = [
    ("oip", "/v2/models/seq/infer", _oip, 200),
    ("oip-binary", "/v2/models/seq/infer", _binary, 200),
    ("oip-version", "/v2/models/seq/versions/1/infer", _oip, 200),
    ("oip-model-named-infer", "/v2/models/infer/infer", _oip, 200),
    ("tfs", "/v1/models/seq:predict", _predict, 200),
    ("tfs-version", "/v1/models/seq/versions/1:predict", _predict, 200),
    ("unknown-model", "/v2/models/nothing/infer", _oip, 404),
    ("unknown-version", "/v2/models/seq/versions/9/infer", _oip, 404),
    ("bad-version", "/v2/models/seq/versions/one/infer", _oip, 400),
    ("bad-version-tfs", "/v1/models/seq/versions/-1:predict", _predict, 400),
    ("bad-body", "/v2/models/seq/infer", lambda: {"json": {"inputs": 3}}, 400),
    ("not-json", "/v2/models/seq/infer", lambda: {"content": b"{"}, 400),
    ("tfs-unknown", "/v1/models/nothing:predict", _predict, 404),
]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [case[1:] for case in HOT],
    ids=[case[0] for case in HOT],
)
def test_hot_routes_answer_as_the_router_does(app, caplog, path, body, status):
    client, switch = app
    response, fast = _both(client, switch, caplog, "POST", path, **body())
    assert response.status_code == status, response.text
    assert fast, "the fast path did not take it"


def test_outputs_are_the_model_s(app, caplog):
    client, switch = app
    response, _ = _both(
        client, switch, caplog, "POST", "/v2/models/seq/infer", **_oip()
    )
    json_out = np.asarray(response.json()["outputs"][0]["data"], np.float32)
    response, _ = _both(
        client, switch, caplog, "POST", "/v2/models/seq/infer", **_binary()
    )
    assert response.headers["content-type"].startswith("application/json")
    np.testing.assert_array_equal(
        json_out, np.asarray(response.json()["outputs"][0]["data"], np.float32)
    )


KEYED = [
    ("no-key", None, 401),
    ("wrong-key", "Bearer nobody", 401),
    ("bare-key", "caller", 401),
    ("read-scope", "Bearer reader", 403),
    ("infer-scope", "Bearer caller", 200),
]


@pytest.mark.parametrize(
    ("authorization", "status"),
    [case[1:] for case in KEYED],
    ids=[case[0] for case in KEYED],
)
@pytest.mark.parametrize(
    "path", ["/v2/models/seq/infer", "/v1/models/seq/versions/1:predict"]
)
def test_keys_and_scopes_as_the_router_does(app, caplog, path, authorization, status):
    client, switch = app
    body = _predict() if ":predict" in path else _oip()
    headers = {"Authorization": authorization} if authorization else {}
    saved = client.headers.pop("Authorization")
    try:
        response, fast = _both(
            client, switch, caplog, "POST", path, status == 200, headers=headers, **body
        )
    finally:
        client.headers["Authorization"] = saved
    assert response.status_code == status, response.text
    assert fast  # taken, or refused before routing (neither way routed it)


ROUTED = [
    ("get-on-infer", "GET", "/v2/models/seq/infer", 405),
    ("put-on-predict", "PUT", "/v1/models/seq:predict", 405),
    ("trailing-slash", "POST", "/v2/models/seq/infer/", None),
    ("no-name", "POST", "/v2/models//infer", None),
    ("register", "POST", "/v2/models", 422),
    ("ready", "GET", "/v2/models/seq/ready", 200),
    ("tfs-status", "GET", "/v1/models/seq", 200),
]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [case[1:] for case in ROUTED],
    ids=[case[0] for case in ROUTED],
)
def test_other_requests_go_to_the_router(app, caplog, method, path, status):
    client, switch = app
    kw = {"json": {}} if method in ("POST", "PUT") else {}
    response, fast = _both(client, switch, caplog, method, path, **kw)
    assert not fast
    if status is not None:
        assert response.status_code == status, response.text


def _probe_path(route: Any) -> str:
    path = route.path_format
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", "nothing")
    return path


def test_every_other_route_goes_to_the_router(app, caplog):
    """Every route of the app, with each of its methods, on an unknown model
    (no side effect): the router decides, and answers as without the fast
    path; the hot routes are taken."""
    client, switch = app
    hot = {id(route) for route in fastpath.hot_routes(inference.router)}
    seen = 0
    for route in flat_routes(client.app.routes):
        methods = ["GET"] if isinstance(route, Mount) else sorted(route.methods)
        for method in methods:
            kw = {"json": {}} if method in ("POST", "PUT") else {}
            path = _probe_path(route)
            response, fast = _both(client, switch, caplog, method, path, **kw)
            assert fast == (id(route) in hot), (method, path)
            assert response.status_code < 500, (method, path, response.text)
            seen += 1
    assert seen > 30


def test_root_path(app, caplog):
    """Under a root path the same route is reached, by the fast path."""
    client, switch = app
    with TestClient(client.app, root_path="/api") as under:
        under.headers["Authorization"] = "Bearer caller"
        response, fast = _both(
            under, switch, caplog, "POST", "/api/v2/models/seq/infer", **_oip()
        )
    assert response.status_code == 200 and fast


def test_inference_replica_takes_its_inference_routes(tmp_path, caplog):
    """The replica (no TensorFlow engine) dispatches the same routes: an
    unknown model and a model of the shared store answer as the router does."""
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as full:
        register(full, "seq", SEQ)
    with TestClient(create_inference_app(settings)) as client:
        switch = Switch(client.app)
        for path, body in [
            ("/v2/models/nothing/infer", _oip()),
            ("/v2/models/seq/infer", _oip()),
            ("/v1/models/seq:predict", _predict()),
        ]:
            response, fast = _both(client, switch, caplog, "POST", path, **body)
            assert fast and response.status_code in (404, 501), response.text
        response, fast = _both(client, switch, caplog, "GET", "/v2/models/seq", **{})
        assert not fast


@pytest.mark.parametrize(
    ("value", "on"), [("0", False), ("off", False), ("1", True), ("", True)]
)
def test_switch(monkeypatch, value, on):
    monkeypatch.setenv(fastpath.ENV, value)
    app = create_inference_app(Settings(data_dir="/nonexistent"))
    assert isinstance(app.router.middleware_stack, fastpath.RouteFastPath) == on


def test_bad_switch_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(fastpath.ENV, "maybe")
    with pytest.raises(SettingsError, match="BNN_ROUTE_FAST_PATH: received 'maybe'"):
        fastpath.enabled()


def test_hot_routes_are_the_inference_calls():
    assert sorted(route.path for route in fastpath.hot_routes(inference.router)) == [
        "/v1/models/{name}/versions/{version}:predict",
        "/v1/models/{name}:predict",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    ]


def _toy(first: APIRouter, prefix: str) -> tuple[FastAPI, list[Any]]:
    """An app whose router includes ``first`` (under ``prefix``) before the
    hot routes, and has a hot route declared on the app itself."""
    app = FastAPI()
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(first, prefix=prefix)
    hot = APIRouter()

    @hot.post("/m/{name}/infer")
    async def infer(name: str) -> dict[str, str]:
        return {"route": "infer", "name": name}

    @hot.post("/h/{name}")
    async def h(name: str) -> dict[str, str]:
        return {"route": "h", "name": name}

    app.include_router(hot)

    @app.post("/direct/{n:int}")
    async def direct(n: int) -> dict[str, int]:
        return {"n": n}

    return app, [*hot.routes, app.router.routes[-1]]


def test_an_earlier_route_that_matches_wins_as_in_the_router(caplog):
    """Only the first full match is taken: a route before a hot one that
    matches the same request (a pattern, or a prefixed include whose
    pattern the fast path cannot read) gets it, through the router."""
    shadow = APIRouter()

    @shadow.post("/m/{name}/{action}")
    async def action(name: str, action: str) -> dict[str, str]:
        return {"route": "action", "name": name}

    @shadow.post("/{name}")
    async def prefixed(name: str) -> dict[str, str]:
        return {"route": "prefixed", "name": name}

    for prefix, path, route, taken in [
        ("", "/m/a/infer", "action", False),  # the shadow matches first
        ("", "/h/x", "h", True),
        ("/h", "/h/x", "prefixed", False),  # read by its entry's matches
        ("/h", "/m/a/infer", "infer", True),
    ]:
        app, hot = _toy(shadow, prefix)
        fast = fastpath.install(app, hot)
        assert fast is not None
        with TestClient(app) as client:
            switch = Switch(app)
            response, fast_taken = _both(client, switch, caplog, "POST", path)
            assert response.json()["route"] == route
            assert fast_taken == taken, (prefix, path)
            response, fast_taken = _both(client, switch, caplog, "POST", "/direct/7")
            assert response.json() == {"n": 7} and fast_taken
            response, fast_taken = _both(client, switch, caplog, "POST", "/direct/x")
            assert response.status_code == 404 and not fast_taken
