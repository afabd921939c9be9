"""An inference replica logs as a full replica does: the lifecycle lines, a
line per refused, failed or slow request, and the error envelope for an
unexpected failure.

Oracles: a full replica's own lines for the same requests on the same store
(``create_app``), the responses the clients received, ``Settings.model_fields``
for the start-up line, pydantic-settings' reading of the same environment
(``config.load_settings``) against the replica's own reader, and
``bnncore_runtime``'s version.
"""

from __future__ import annotations

import json
import secrets
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from log_capture import logged_client
from starlette.responses import Response
from test_inference_common import SEQ, register_with_weights

import bnncore_runtime
from bnncore_service.config import Settings, load_settings
from bnncore_service.inference_app import create_inference_app
from bnncore_service.keyauth import ScopedRoute
from bnncore_service.logs import settings_fields
from bnncore_service.main import create_app
from bnncore_service.settings_env import EnvSettings, read_settings

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

KEY = "k3y-" + secrets.token_hex(16)
WRONG = "wrong-" + secrets.token_hex(8)
X = np.random.default_rng(5).normal(size=(1, 6, 6, 2)).astype(np.float32)
OIP = {"inputs": [{"name": "input", "shape": [1, 6, 6, 2], "datatype": "FP32",
                   "data": X.reshape(-1).tolist()}]}  # fmt: skip
AUTH = {"Authorization": f"Bearer {KEY}"}
# (label, method, path, request keywords): refused the same way by both roles.
REFUSED: list[tuple[str, str, str, dict[str, Any]]] = [
    ("401", "GET", "/v2/models/seq", {"headers": {"Authorization": f"Bearer {WRONG}"}}),
    ("404", "GET", "/v2/models/nothing", {"headers": AUTH}),
    ("413", "POST", "/v2/models/seq/infer",
     {"headers": AUTH, "content": b"[" + b"0," * 6000 + b"0]"}),
    ("400", "POST", "/v2/models/seq/infer", {"headers": AUTH, "content": b"{no"}),
]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``seq`` registered with uploaded weights by a full replica."""
    data_dir = tmp_path_factory.mktemp("replica-logs") / "data"
    with TestClient(create_app(Settings(data_dir=data_dir))) as full:
        register_with_weights(full, "seq", SEQ, 7)
    return data_dir


def _settings(store: Path, role: str) -> Settings:
    return Settings(
        data_dir=store,
        role=role,
        log_format="json",
        log_level="debug",
        api_keys=KEY,
        max_body_bytes=8192,
        slow_request_ms=600_000,
    )


def _run(app: Any, requests: list[tuple[str, str, str, dict[str, Any]]]) -> tuple[
    list[dict[str, Any]], dict[str, Any], str
]:  # fmt: skip
    """Starts ``app`` with its stdout captured, sends ``requests``, stops it:
    its log lines (parsed), the replies by label and the raw log."""
    replies: dict[str, Any] = {}
    with logged_client(app) as (client, stream):
        for label, method, path, kw in requests:
            replies[label] = client.request(method, path, **kw)
    raw = stream.getvalue()
    return [json.loads(line) for line in raw.splitlines()], replies, raw


def _one(events: list[dict[str, Any]], event: str, **match: Any) -> dict[str, Any]:
    found = [
        e
        for e in events
        if e["event"] == event and all(e.get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, (event, match, [e for e in events if e["event"] == event])
    return found[0]


@pytest.fixture(scope="module")
def replica_run(store: Path) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """A JSON-logging replica at debug level: served, refused and failed
    requests (an error raised where the registry is read)."""
    app: Any = create_inference_app(_settings(store, "inference"))

    async def boom(request: Any) -> Response:
        raise RuntimeError("boom for the replica's log test")

    app.router.routes.append(ScopedRoute("/boom", boom, methods=["GET"], scope="read"))
    requests = [
        ("ready", "GET", "/v2/health/ready", {}),
        ("infer", "POST", "/v2/models/seq/infer", {"json": OIP, "headers": AUTH}),
        *REFUSED,
        ("500", "GET", "/boom", {"headers": AUTH}),
    ]
    return _run(app, requests)


def test_the_replica_logs_its_start_settings_and_stop(replica_run: Any) -> None:
    events, _, raw = replica_run
    start = _one(events, "service_starting")
    assert start["level"] == "INFO" and start["logger"] == "service"
    assert start["version"] == bnncore_runtime.__version__
    assert {f"BNN_{field.upper()}" for field in Settings.model_fields} <= set(start)
    assert start["BNN_ROLE"] == "inference" and start["BNN_API_KEYS"] == "***"
    assert start["BNN_MAX_BODY_BYTES"] == 8192  # typed as the settings hold it
    assert KEY[:8] not in raw and WRONG[:8] not in raw
    started = _one(events, "service_started")
    assert started["engine_isa"] in ("portable", "avx2", "avx512")
    assert started["startup_ms"] >= 0
    assert events[-1]["event"] == "service_stopped"


def test_refusals_are_logged_as_a_full_replica_logs_them(
    store: Path, replica_run: Any
) -> None:
    events, replies, _ = replica_run
    full_events, full_replies, _ = _run(create_app(_settings(store, "full")), REFUSED)
    for label, _method, _path, _kw in REFUSED:
        status = int(label)
        assert replies[label].status_code == full_replies[label].status_code == status
        reason = replies[label].json()["error"]
        assert reason == full_replies[label].json()["error"]
        mine = _one(events, "request_refused", status=status, reason=reason)
        theirs = _one(full_events, "request_refused", status=status, reason=reason)
        keys = ("level", "logger", "method", "route", "client", "model")
        assert {k: mine.get(k) for k in keys} == {k: theirs.get(k) for k in keys}
        assert isinstance(mine["duration_ms"], float)


def test_success_is_a_debug_line_with_the_route_and_model(replica_run: Any) -> None:
    events, replies, _ = replica_run
    assert replies["infer"].status_code == 200, replies["infer"].text
    line = _one(events, "request_completed", route="/v2/models/{name}/infer")
    assert (line["level"], line["status"], line["model"]) == ("DEBUG", 200, "seq")
    assert _one(events, "request_completed", route="/v2/health/ready")["status"] == 200


def test_an_unexpected_error_is_the_envelope_and_one_line_with_traceback(
    replica_run: Any,
) -> None:
    events, replies, _ = replica_run
    reply = replies["500"]
    assert reply.status_code == 500
    assert reply.json() == {"error": "internal server error"}
    line = _one(events, "request_failed")
    assert (line["level"], line["status"], line["route"]) == ("ERROR", 500, "/boom")
    assert line["exc_info"].startswith("Traceback")
    assert "RuntimeError: boom for the replica's log test" in line["exc_info"]
    assert all(e["status"] != 500 for e in events if e["event"] == "request_refused")


ENVIRONMENT = {
    "BNN_ROLE": "inference",
    "BNN_API_KEYS": f"{KEY}:read+infer",
    "BNN_DATABASE_URL": "postgresql+psycopg://bnn:pw-" + secrets.token_hex(4)
    + "@db:5432/registry",
    "BNN_CORS_ORIGINS": "https://a.example, https://b.example",
    "BNN_MAX_BATCH": "64",
    "BNN_PUBLIC_DOCS": "false",
    "BNN_REGISTRY_POLL_S": "0.5",
}  # fmt: skip


def test_the_start_up_line_reads_the_replica_settings_as_pydantic_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The replica's own reader (no pydantic) and pydantic-settings read the
    same environment: the start-up line shows the same values, secrets and a
    URL's password hidden."""
    for name, value in {**ENVIRONMENT, "BNN_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    fast, slow = read_settings(), load_settings()
    assert isinstance(fast, EnvSettings) and isinstance(slow, Settings)
    shown = settings_fields(fast)
    assert shown == settings_fields(slow)
    assert set(shown) == {f"BNN_{field.upper()}" for field in Settings.model_fields}
    assert shown["BNN_API_KEYS"] == "***"
    assert shown["BNN_DATABASE_URL"] == "postgresql+psycopg://bnn:***@db:5432/registry"
    assert shown["BNN_CORS_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert (shown["BNN_MAX_BATCH"], shown["BNN_PUBLIC_DOCS"]) == (64, False)
    assert shown["BNN_REGISTRY_POLL_S"] == 0.5
    text = json.dumps(shown)
    assert KEY not in text and ENVIRONMENT["BNN_DATABASE_URL"][20:32] not in text
