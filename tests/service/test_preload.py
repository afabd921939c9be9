"""``BNN_PRELOAD``: models loaded at start-up, and the readiness they decide.

Against the real app (its lifespan through ``TestClient``, and once as a real
``python -m bnncore_service`` process): the replica is live at once, not ready (503,
the reason naming each model) until every preloaded model is in the served
cache, which the repository index (``state: READY``) confirms without any
request having loaded it. A model that is not registered keeps the replica
not ready, naming it, until it is registered. A malformed value stops the
start with one line naming the variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from service_samples import MNIST

from bnncore_service.config import Settings, SettingsError, load_settings
from bnncore_service.main import create_app
from bnncore_service.preload import PreloadTarget, parse_preload

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        (" , ", ()),
        ("mnist", (PreloadTarget("mnist"),)),
        (
            "mnist:3, quick-net_2 ,mnist:3",
            (PreloadTarget("mnist", 3), PreloadTarget("quick-net_2")),
        ),
        ("_a:1,B", (PreloadTarget("_a", 1), PreloadTarget("B"))),
    ],
    ids=["empty", "blank-entries", "one", "version-and-repeat", "underscore"],
)
def test_parse_accepts_names_with_optional_versions(
    text: str, expected: tuple[PreloadTarget, ...]
) -> None:
    assert parse_preload(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mnist:zero", "entry #1 'mnist:zero': the version is not an integer"),
        ("mnist:0", "entry #1 'mnist:0': the version is not an integer"),
        ("a,mnist:", "entry #2 'mnist:': the version is not an integer"),
        ("a,,b", "entry #2 '': not a model name"),
        ("9lives", "entry #1 '9lives': not a model name"),
        ("a/b", "entry #1 'a/b': not a model name"),
        ("x" * 65, "not a model name"),
        ("m:1:2", "entry #1 'm:1:2': the version is not an integer"),
    ],
    ids=[
        "word",
        "zero",
        "empty-version",
        "empty-entry",
        "digit",
        "slash",
        "long",
        "two",
    ],
)
def test_parse_refuses_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_preload(text)
    assert message in str(caught.value)


def test_malformed_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNN_PRELOAD", "mnist:latest")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert "BNN_PRELOAD='mnist:latest': expected model names separated by commas" in (
        message
    )


def test_malformed_value_stops_the_process_with_one_line(tmp_path: Path) -> None:
    # The inference role (the KServe pods') reads the settings the same way
    # and starts without importing TensorFlow, which keeps this test quick.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    env.update(
        BNN_DATA_DIR=str(tmp_path / "data"),
        BNN_PRELOAD="mnist,no/such",
        BNN_ROLE="inference",
    )
    done = subprocess.run(
        [sys.executable, "-m", "bnncore_service", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    ours = [line for line in done.stderr.splitlines() if "BNN_" in line]
    assert len(ours) == 1, done.stderr
    assert ours[0].startswith(
        "bnncore service: invalid configuration: BNN_PRELOAD='mnist,no/such': "
        "expected model names"
    ), ours


def _registered_data_dir(path: Path, *names: str) -> Path:
    """A data directory with the MNIST BNN registered under ``names``, written
    by one app as a replica finds it when it starts."""
    with TestClient(create_app(Settings(data_dir=path))) as client:
        for name in names:
            response = client.post(
                "/v2/models", json={"name": name, "definition": MNIST}
            )
            assert response.status_code == 201, response.text
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _registered_data_dir(tmp_path_factory.mktemp("preload") / "data", "mnist")


def _wait(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _loaded(client: Any) -> list[tuple[str, str]]:
    """(name, version) of the versions in the served-model cache, as the
    repository index reports them."""
    index = client.post("/v2/repository/index", json={"ready": True})
    assert index.status_code == 200, index.text
    return [(entry["name"], entry["version"]) for entry in index.json()]


def test_not_ready_until_the_preloaded_model_is_loaded(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, preload="mnist")
    with TestClient(create_app(settings)) as client:
        # Live at once; the model takes a build (hundreds of ms) to load.
        assert client.get("/v2/health/live").status_code == 200
        first = client.get("/v2/health/ready")
        assert first.status_code == 503, first.text
        assert first.json()["error"] == (
            "preloading models (BNN_PRELOAD): 0 of 1 ready; mnist is loading"
        )
        _wait(lambda: client.get("/v2/health/ready").status_code == 200)
        assert client.get("/v2/health/ready").json() == {"status": "ready"}
        # Loaded by the preload itself: nothing else asked for the model.
        assert _loaded(client) == [("mnist", "1")]
        assert client.app.state.preload.states() == {"mnist": "ready"}


def test_without_preload_ready_at_once(data_dir: Path) -> None:
    with TestClient(create_app(Settings(data_dir=data_dir))) as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert _loaded(client) == []


def test_unregistered_model_keeps_not_ready_until_registered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _registered_data_dir(tmp_path / "data", "mnist")
    settings = Settings(data_dir=path, preload="mnist,late", preload_retry_s=0.2)
    with TestClient(create_app(settings)) as client:
        preload = client.app.state.preload
        _wait(lambda: preload.states() == {"mnist": "ready", "late": "failed"})
        response = client.get("/v2/health/ready")
        assert response.status_code == 503
        message = response.json()["error"]
        assert message.startswith(
            "preloading models (BNN_PRELOAD): 1 of 2 ready; late failed to load "
            "(model 'late' is not registered; attempt "
        ), message
        assert "mnist" not in message
        assert client.get("/v2/health/live").status_code == 200
        # Retried; the same failure is a warning once.
        _wait(lambda: preload.attempts()["late"] >= 3)
        warnings = [
            r
            for r in caplog.records
            if getattr(r, "event", "") == "preload_failed" and r.levelname == "WARNING"
        ]
        assert [r.fields["attempt"] for r in warnings] == [1]

        registered = client.post(
            "/v2/models", json={"name": "late", "definition": MNIST}
        )
        assert registered.status_code == 201, registered.text
        _wait(lambda: client.get("/v2/health/ready").status_code == 200)
        assert sorted(_loaded(client)) == [("late", "1"), ("mnist", "1")]


def test_unknown_version_names_it_and_shutdown_does_not_wait_for_retries(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=data_dir, preload="mnist:7", preload_retry_s=600)
    client = TestClient(create_app(settings))
    with client:
        preload = client.app.state.preload
        _wait(lambda: preload.states() == {"mnist:7": "failed"})
        response = client.get("/v2/health/ready")
        assert response.status_code == 503
        assert (
            "mnist:7 failed to load ('mnist' version 7 is not registered"
            in (response.json()["error"])
        )
        # Logged as a warning event with its fields (bnncore_service/logs.py).
        (failed,) = [
            r for r in caplog.records if getattr(r, "event", "") == "preload_failed"
        ]
        assert failed.levelname == "WARNING"
        assert failed.fields == {
            "model": "mnist:7",
            "attempt": 1,
            "retry_s": 600.0,
            "error": "'mnist' version 7 is not registered",
        }
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 10  # the 600 s retry wait was cancelled


def test_real_process_preloads_before_ready(
    tmp_path: Path, start_service: Callable[..., Any]
) -> None:
    path = _registered_data_dir(tmp_path / "data", "mnist")
    # start_service returns once /v2/health/ready answers 200.
    service = start_service(path, env={"BNN_PRELOAD": "mnist:1"})
    try:
        index = httpx.post(f"{service.base}/v2/repository/index", json={"ready": True})
        assert [(e["name"], e["state"]) for e in index.json()] == [("mnist", "READY")]
    finally:
        service.stop()


def test_names_are_the_routes_model_names() -> None:
    """BNN_PRELOAD accepts exactly the names the model routes accept."""
    from typing import get_args

    from bnncore_service.deps import ModelName
    from bnncore_service.preload import NAME_PATTERN

    (path,) = get_args(ModelName)[1:]
    patterns = [getattr(m, "pattern", None) for m in path.metadata]
    assert NAME_PATTERN.pattern in patterns
