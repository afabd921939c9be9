"""Structured logs (``BNN_LOG_FORMAT``): what a real app writes, line by line.

The oracles are independent of the logging code: the responses the client
received (a refusal's reason is the ``error`` it was sent), the registration's
content hash, hashlib's sha256 of the uploaded file, the Keras parameter count,
the packed engine's own compile result, ``Settings.model_fields`` for the
start-up line, and the output of a real ``python -m bnncore_service`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import pytest
from fastapi.testclient import TestClient
from log_capture import logged_client

import bnncore as lq
from bnncore import engine
from bnncore.engine import kernels
from bnncore_service.config import Settings
from bnncore_service.logs import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_event,
    logging_configured,
    mark_logged,
    settings_fields,
)
from bnncore_service.main import create_app

KEY = "k3y-" + secrets.token_hex(16)
"""A real API key of the app under test: it must never appear in the log."""
WRONG_KEY = "wrong-" + secrets.token_hex(8)
BODY_MARKER = "BODY-MARKER-" + secrets.token_hex(4)
INPUT_VALUE = 0.7312945
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def small_bnn(units: int) -> keras.Model:
    binary = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            lq.layers.QuantConv2D(4, 3, use_bias=False, name="conv1", **binary),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Flatten(name="flat"),
            lq.layers.QuantDense(
                units, input_quantizer="ste_sign", name="dense1", **binary
            ),
        ],
        name="bnn",
    )


@dataclass
class Run:
    """What a scenario against a real app produced."""

    raw: str
    events: list[dict[str, Any]]
    replies: dict[str, Any]
    model: keras.Model
    weights_file: bytes

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def one(self, event: str, **match: Any) -> dict[str, Any]:
        found = [
            e for e in self.named(event) if all(e.get(k) == v for k, v in match.items())
        ]
        assert len(found) == 1, (event, match, self.named(event))
        return found[0]


def _auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A JSON-logging app at debug level, driven through each logged event."""
    model, other = small_bnn(3), small_bnn(5)
    weights_file = lq.export.to_bytes(model)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("logs") / "data",
        log_format="json",
        log_level="debug",
        api_keys=KEY,
        max_body_bytes=8192,
        max_weights_bytes=64 * 1024,
        model_cache_size=1,
        slow_request_ms=600_000,
    )
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:  # an unexpected error, handled by the real handler
        raise RuntimeError("boom for the log test")

    replies: dict[str, Any] = {}
    with logged_client(app) as (client, stream):
        replies["ready"] = client.get("/v2/health/ready")
        replies["401"] = client.get("/v2/models", headers=_auth(WRONG_KEY))
        # The real key without its scheme: the 401 quotes the header's start.
        replies["no-scheme"] = client.get("/v2/models", headers={"Authorization": KEY})
        replies["404"] = client.get("/v2/models/nope", headers=_auth())
        big = {"name": "big", "definition": {"layers": [BODY_MARKER * 1000]}}
        replies["413"] = client.post("/v2/models", json=big, headers=_auth())
        replies["register"] = client.post(
            "/v2/models",
            json={"name": "bnn", "definition": lq.export.to_definition(model)},
            headers=_auth(),
        )
        assert replies["register"].status_code == 201, replies["register"].text
        replies["upload"] = client.put(
            "/v2/models/bnn/versions/1/weights",
            content=weights_file,
            headers={**_auth(), "content-type": "application/octet-stream"},
        )
        assert replies["upload"].status_code == 201, replies["upload"].text
        name = client.get("/v2/models/bnn", headers=_auth()).json()["inputs"][0]
        tensor = {
            "name": name["name"],
            "shape": [1, 6, 6, 2],
            "datatype": "FP32",
            "data": [INPUT_VALUE] * 72,
        }
        replies["infer"] = client.post(
            "/v2/models/bnn/infer", json={"inputs": [tensor]}, headers=_auth()
        )
        assert replies["infer"].status_code == 200, replies["infer"].text
        replies["unload"] = client.post(
            "/v2/repository/models/bnn/unload", json={}, headers=_auth()
        )
        assert replies["unload"].status_code == 200, replies["unload"].text
        replies["register2"] = client.post(
            "/v2/models",
            json={"name": "other", "definition": lq.export.to_definition(other)},
            headers=_auth(),
        )
        assert replies["register2"].status_code == 201, replies["register2"].text
        replies["500"] = client.get("/boom", headers=_auth())
    raw = stream.getvalue()
    events = [json.loads(line) for line in raw.splitlines()]
    yield Run(raw, events, replies, model, weights_file)


def test_every_line_is_one_json_object_with_the_five_keys(run: Run) -> None:
    assert len(run.events) > 15
    for event in run.events:
        assert {"ts", "level", "logger", "event", "message"} <= set(event)
        assert TS.match(event["ts"]), event["ts"]
        assert datetime.fromisoformat(event["ts"]).utcoffset().total_seconds() == 0
        assert event["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert re.fullmatch(r"[a-z][a-z0-9_]*", event["event"]), event


def test_start_up_line_has_every_setting_and_no_secret(run: Run) -> None:
    start = run.one("service_starting")
    assert start["level"] == "INFO" and start["version"] == lq.__version__
    assert {f"BNN_{field.upper()}" for field in Settings.model_fields} <= set(start)
    assert start["BNN_API_KEYS"] == "***"
    # Typed as the settings hold them: ints stay ints.
    assert start["BNN_MAX_BODY_BYTES"] == 8192
    assert start["BNN_MODEL_CACHE_SIZE"] == 1
    assert start["BNN_SLOW_REQUEST_MS"] == 600_000.0
    assert start["BNN_PUBLIC_DOCS"] is True
    assert start["BNN_LOG_FORMAT"] == "json"
    assert KEY[:6] not in run.raw and WRONG_KEY[:6] not in run.raw
    error = run.replies["no-scheme"].json()["error"]
    assert KEY[:6] not in error  # never quoted back, not even to its sender
    logged = run.one("request_refused", reason=error)
    assert (logged["status"], logged["level"]) == (401, "WARNING")
    started = run.one("service_started")
    assert started["engine_isa"] == kernels.isa()
    assert started["startup_ms"] > 0
    assert run.events[-1]["event"] == "service_stopped"


@pytest.mark.parametrize(
    ("reply", "status", "level", "route"),
    [
        ("401", 401, "WARNING", "/v2/models"),
        ("404", 404, "INFO", "/v2/models/{name}"),
        ("413", 413, "WARNING", "/v2/models"),
    ],
    ids=["unauthorized", "not-found", "too-large"],
)
def test_refused_requests_say_code_reason_and_client(
    run: Run, reply: str, status: int, level: str, route: str
) -> None:
    response = run.replies[reply]
    assert response.status_code == status
    line = run.one("request_refused", status=status, reason=response.json()["error"])
    assert line["level"] == level and line["logger"] == "service.requests"
    assert (line["route"], line["client"]) == (route, "testclient")
    assert isinstance(line["duration_ms"], float)


def test_request_bodies_and_tensors_are_never_logged(run: Run) -> None:
    assert BODY_MARKER not in run.raw
    assert str(INPUT_VALUE) not in run.raw


def test_success_is_a_debug_line(run: Run) -> None:
    line = run.one("request_completed", route="/v2/health/ready")
    assert line["level"] == "DEBUG" and line["status"] == 200
    completed = {e["route"] for e in run.named("request_completed")}
    assert "/v2/models/{name}/infer" in completed
    assert not run.named("slow_request")


def test_builds_loads_and_the_engine_are_logged(run: Run) -> None:
    content_hash = run.replies["register"].json()["content_hash"]
    sha = hashlib.sha256(run.weights_file).hexdigest()
    initial = run.one("model_built", key=content_hash[:12], weights="initial")
    weighted = run.one("model_built", key=content_hash[:12], weights=sha[:12])
    for line in (initial, weighted):
        assert line["level"] == "INFO" and line["logger"] == "bnncore_service.runtime"
        assert line["params"] == run.model.count_params()
        assert line["build_ms"] > 0 and isinstance(line["profile_ms"], float)
    loaded = run.one("model_loaded")
    assert (loaded["model"], loaded["version"]) == ("bnn", 1)
    assert (loaded["key"], loaded["weights"]) == (content_hash[:12], sha[:12])
    assert loaded["level"] == "INFO" and loaded["load_ms"] > 0
    chosen = run.one("engine_chosen")
    binary = engine.compile(run.model).binary_layers
    assert binary, "the test model has binary layers: it qualifies"
    assert chosen["engine"] == "packed"
    assert chosen["engine"] == run.replies["infer"].headers["X-BNN-Engine"]
    assert f": {len(binary)} binary layer" in chosen["reason"]
    assert (chosen["model"], chosen["version"], chosen["level"]) == ("bnn", 1, "INFO")


def test_weights_upload_is_logged_with_size_and_hash(run: Run) -> None:
    line = run.one("weights_uploaded")
    body = run.replies["upload"].json()
    assert line["level"] == "INFO"
    assert (line["model"], line["version"]) == ("bnn", 1)
    assert line["bytes"] == len(run.weights_file)
    assert line["sha256"] == hashlib.sha256(run.weights_file).hexdigest()
    assert (line["tensors"], line["format"]) == (body["tensors"], "bnncore")
    assert line["replaced"] is None and line["duration_ms"] > 0


def test_evictions_say_which_cache_and_why(run: Run) -> None:
    content_hash = run.replies["register"].json()["content_hash"]
    unloaded = run.one("model_evicted", cache="serving")
    assert (unloaded["key"], unloaded["reason"]) == (content_hash[:12], "unload")
    # A build cache of 1: the weighted build (inference) evicted the initial
    # one, building the other model evicted the weighted one.
    sha = hashlib.sha256(run.weights_file).hexdigest()
    full = [e for e in run.named("model_evicted") if e["cache"] == "build"]
    assert [(e["key"], e["weights"]) for e in full] == [
        (content_hash[:12], "initial"),
        (content_hash[:12], sha[:12]),
    ]
    for line in full:
        assert (line["reason"], line["size"], line["level"]) == (
            "cache_full",
            1,
            "INFO",
        )


def test_an_unexpected_error_is_one_error_line_with_its_traceback(run: Run) -> None:
    assert run.replies["500"].status_code == 500
    line = run.one("request_failed")
    assert (line["level"], line["status"], line["route"]) == ("ERROR", 500, "/boom")
    assert "RuntimeError: boom for the log test" in line["exc_info"]
    assert line["exc_info"].startswith("Traceback")
    assert not run.named("request_refused") or all(
        e["status"] != 500 for e in run.named("request_refused")
    )


def test_text_format_is_readable_with_key_value_fields(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", log_format="text", slow_request_ms=0.001
    )
    stream = io.StringIO()
    client = TestClient(create_app(settings))
    with contextlib.redirect_stdout(stream):
        client.__enter__()
    try:
        missing = client.get("/v2/models/nope")
        client.get("/v2/health/ready")
    finally:
        client.__exit__(None, None, None)
    lines = stream.getvalue().splitlines()
    head = re.compile(r"^(\S+) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) ([a-z_]+): ")
    for line in lines:
        match = head.match(line)
        assert match and TS.match(match[1]), line
    (refused,) = [line for line in lines if " request_refused: " in line]
    assert refused.split()[1] == "INFO"
    reason = json.dumps(missing.json()["error"])  # spaces: JSON-quoted
    assert " status=404 " in refused and f" reason={reason}" in refused
    (slow,) = [line for line in lines if "route=/v2/health/ready" in line]
    assert " WARNING service.requests slow_request: " in slow
    assert " threshold_ms=0.001" in slow and " status=200 " in slow
    assert not [line for line in lines if " DEBUG " in line]  # level info


def test_text_values_that_could_break_a_line_are_quoted() -> None:
    record = _record(
        "model_evicted",
        "evicted {detail}",
        detail='two\nlines "q"',
        escape="\x1b[31mred",
        size=3,
    )
    line = TextFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line
    assert ": evicted two\\nlines " in line
    assert line.endswith(' detail="two\\nlines \\"q\\"" escape="\\u001b[31mred" size=3')
    data = json.loads(JsonFormatter().format(record))
    assert data["escape"] == "\x1b[31mred" and data["message"].count("\n") == 1


def test_json_fields_keep_their_types_and_never_replace_the_core_keys() -> None:
    record = _record(
        "x_done",
        "done",
        count=3,
        ratio=0.5,
        ok=True,
        none=None,
        names=("a", "b"),
        level="fake",
        path=Path("/tmp/p"),
    )
    data = json.loads(JsonFormatter().format(record))
    assert (data["count"], data["ratio"], data["ok"], data["none"]) == (
        3,
        0.5,
        True,
        None,
    )
    assert data["names"] == ["a", "b"] and data["path"] == "/tmp/p"
    assert data["level"] == "INFO" and data["message"] == "done"


def test_uvicorn_access_lines_get_their_fields() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.7:5123", "GET", "/v2/models", "1.1", 200),
        None,
    )
    data = json.loads(JsonFormatter().format(record))
    assert data["event"] == "http_access"
    assert (data["client"], data["method"], data["path"], data["status"]) == (
        "10.0.0.7:5123",
        "GET",
        "/v2/models",
        200,
    )
    assert data["message"] == '10.0.0.7:5123 - "GET /v2/models HTTP/1.1" 200'


def test_the_servers_copy_of_a_logged_traceback_is_dropped() -> None:
    stream = io.StringIO()
    with logging_configured("json", "info", stream):
        handled, other = RuntimeError("handled"), RuntimeError("other")
        mark_logged(handled)
        server = logging.getLogger("uvicorn.error")
        server.error("Exception in ASGI application", exc_info=handled)
        server.error("Exception in ASGI application", exc_info=other)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1 and "RuntimeError: other" in lines[0]["exc_info"]


def test_configuration_is_restored_after_the_block() -> None:
    root, access = logging.getLogger(), logging.getLogger("uvicorn.access")
    before = (list(root.handlers), root.level, list(access.handlers), access.propagate)
    marker = logging.NullHandler()
    access.addHandler(marker)
    access.propagate = False
    try:
        with logging_configured("text", "debug", io.StringIO()):
            assert root.level == logging.DEBUG
            assert access.handlers == [] and access.propagate
        assert access.handlers[-1] is marker and not access.propagate
        assert (list(root.handlers), root.level) == before[:2]
    finally:
        access.handlers[:] = before[2]
        access.propagate = before[3]


class _WithSecrets(Settings):
    s3_secret_access_key: str | None = None
    auth_token: str = ""
    object_store_url: str | None = None


def test_settings_hide_secrets_by_name_type_and_url_password() -> None:
    settings = _WithSecrets(
        data_dir=Path("/srv/bnn"),
        api_keys="real-key-123:admin",
        database_url="postgresql+psycopg://bnn:hunter2-pw@db.internal:5432/registry",
        s3_secret_access_key="AKIA-sekrit",
        auth_token="tok-abc",
        object_store_url="s3://minio:minio-pw@minio:9000/bucket",
        cors_origins=["https://a.example"],
    )
    shown = settings_fields(settings)
    assert shown["BNN_DATABASE_URL"] == (
        "postgresql+psycopg://bnn:***@db.internal:5432/registry"
    )
    assert shown["BNN_OBJECT_STORE_URL"] == "s3://minio:***@minio:9000/bucket"
    assert shown["BNN_API_KEYS"] == shown["BNN_S3_SECRET_ACCESS_KEY"] == "***"
    assert shown["BNN_AUTH_TOKEN"] == "***"
    assert shown["BNN_MAX_DEFINITION_KEYS"] == settings.max_definition_keys
    assert shown["BNN_DATA_DIR"] == "/srv/bnn"
    assert shown["BNN_CORS_ORIGINS"] == ["https://a.example"]
    text = json.dumps(shown)
    for secret in ("real-key-123", "hunter2-pw", "AKIA-sekrit", "tok-abc", "minio-pw"):
        assert secret not in text


def test_python_m_service_writes_every_line_in_the_format(
    start_service: Any, tmp_path: Path
) -> None:
    server = start_service(
        tmp_path / "data",
        env={"BNN_LOG_FORMAT": "json", "BNN_API_KEYS": KEY},
    )
    import httpx

    try:
        refused = httpx.get(f"{server.base}/v2/models", headers=_auth(WRONG_KEY))
        listed = httpx.get(f"{server.base}/v2/models", headers=_auth())
    finally:
        server.stop()
    assert (refused.status_code, listed.status_code) == (401, 200)
    text = server.log.read_text()
    assert KEY not in text and WRONG_KEY not in text
    # uvicorn's own format ("INFO:     ...") must be gone; TensorFlow's C++
    # runtime writes to stderr itself, outside Python's logging.
    others = [line for line in text.splitlines() if not line.startswith("{")]
    assert not [line for line in others if re.match(r"(INFO|WARNING|ERROR):  ", line)]
    for python_side in ("Uvicorn running", "startup complete", "HTTP/1.1"):
        assert not [line for line in others if python_side in line], others
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    by_event = {e["event"] for e in events}
    lifecycle = {"service_starting", "service_started", "service_stopped"}
    assert lifecycle <= by_event, text[-3000:]
    # Configured once, by the runner: the lifespan leaves it as it is.
    (start,) = [e for e in events if e["event"] == "service_starting"]
    assert start["BNN_API_KEYS"] == "***" and start["BNN_LOG_FORMAT"] == "json"
    # (A readiness probe of the fixture may have had a 503 while starting.)
    (refusal,) = [
        e for e in events if e["event"] == "request_refused" and e["status"] == 401
    ]
    assert refusal["level"] == "WARNING"
    assert refusal["reason"] == refused.json()["error"]
    assert refusal["client"] == "127.0.0.1"
    access = [e for e in events if e["event"] == "http_access"]
    assert [(e["path"], e["status"]) for e in access][-2:] == [
        ("/v2/models", 401),
        ("/v2/models", 200),
    ]
    assert all(e["logger"] == "uvicorn.access" for e in access)
    server_lines = [e["message"] for e in events if e["logger"] == "uvicorn.error"]
    assert any("Application startup complete" in m for m in server_lines)
    assert any("Finished server process" in m for m in server_lines), server_lines


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BNN_LOG_FORMAT", "xml", "text or json"),
        ("BNN_LOG_LEVEL", "loud", "debug, info, warning, error or critical"),
        ("BNN_SLOW_REQUEST_MS", "0", "a number > 0"),
    ],
)
def test_a_bad_log_setting_stops_the_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variable: str,
    value: str,
    expected: str,
) -> None:
    # What importing bnncore_service.main runs (python -m bnncore_service, uvicorn
    # bnncore_service.main:app); test_service_startup_config.py runs it in a process.
    from bnncore_service.main import _app_from_environment

    monkeypatch.setenv("BNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        _app_from_environment()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"bnncore service: invalid configuration: {variable}={value!r}: "
        f"expected {expected}"
    ]


def _record(event: str, message: str, **fields: Any) -> logging.LogRecord:
    """The record :func:`log_event` makes, caught by a handler."""
    caught: list[logging.LogRecord] = []
    logger = logging.getLogger("test.service_logs")
    handler = logging.Handler()
    handler.emit = caught.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        log_event(logger, logging.INFO, event, message, **fields)
    finally:
        logger.removeHandler(handler)
    (record,) = caught
    return record


def test_the_formatters_refuse_unknown_formats() -> None:
    with pytest.raises(ValueError, match="received 'xml'"):
        configure_logging("xml", "info", io.StringIO())


def test_the_runners_connection_cap_logs_its_503() -> None:
    from bnncore_service.server import ConnectionCap, LimitedH11Protocol

    class Full(LimitedH11Protocol):
        max_connections = 2

        @classmethod
        def active_connections(cls) -> int:
            return 3

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def never_called(*_: Any) -> None:
        raise AssertionError("the app must not run")

    scope = {"type": "http", "method": "GET", "client": ("10.1.2.3", 4567)}
    stream = io.StringIO()
    with logging_configured("json", "info", stream):
        asyncio.run(ConnectionCap(never_called, Full)(scope, None, send))
    assert sent[0]["status"] == 503
    error = json.loads(sent[1]["body"])["error"]
    assert error.startswith("3 connections are open")
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["event"], line["level"], line["status"]) == (
        "request_refused",
        "WARNING",
        503,
    )
    assert (line["client"], line["connections"]) == ("10.1.2.3", 3)
    assert line["reason"] == error
