"""``bench/serving.py`` against the real service (``python -m bnncore_service`` with
dynamic batching on): merged batches give each caller its own rows, and what
``wrk`` reports agrees with the service's own request counts."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench import serving

KEY = secrets.token_urlsafe(16)
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[serving.Server, str]]:
    env = {
        "BNN_API_KEYS": KEY,
        "BNN_BATCHING": "true",
        "BNN_BATCH_MAX_WAIT_MS": "5",
        "BNN_MAX_PENDING_INFERENCES": "256",
        "BNN_LOG_LEVEL": "warning",
    }
    with serving.Server(env) as running:
        name = serving.register(running.url, AUTH, serving.mnist_model())
        yield running, name


def _need_wrk() -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk is not installed (Debian package 'wrk'), needed in CI")
        pytest.skip("wrk is not installed (Debian package 'wrk')")


def _successes(url: str) -> int:
    stats = serving._stats(url, AUTH)
    return int(stats["inference_stats"]["success"]["count"])


def test_merged_batches_give_each_caller_its_own_rows(
    server: tuple[serving.Server, str],
) -> None:
    running, name = server
    images = np.random.default_rng(3).normal(size=(12, 28, 28, 1)).astype("float32")
    before = serving.merged_executions(running.url, AUTH)
    correct, problems = serving.check_own_rows(running.url, name, AUTH, images, 8)
    assert correct, problems
    # The batcher did merge requests of different callers (else the check
    # proves nothing about splitting).
    assert serving.merged_executions(running.url, AUTH) - before > 0


def test_own_rows_check_catches_answers_of_another_caller(
    server: tuple[serving.Server, str],
) -> None:
    running, name = server
    images = np.random.default_rng(4).normal(size=(4, 28, 28, 1)).astype("float32")
    sent = images.copy()
    sent[1:] = images[0]  # clients 1-3 send client 0's image
    correct, problems = serving.check_own_rows(
        running.url, name, AUTH, images, 2, sent=sent
    )
    assert not correct
    assert len(problems) == 3 * 2, problems  # clients 1-3, both attempts


@pytest.mark.parametrize("kind", ["json", "binary"])
def test_wrk_counts_agree_with_the_service(
    server: tuple[serving.Server, str], kind: str, tmp_path: Path
) -> None:
    _need_wrk()
    running, name = server
    images = np.random.default_rng(0).random((1, 28, 28, 1), "float32")
    body, headers = serving.bodies(name, images, AUTH)[kind]
    before, cpu = _successes(running.url), running.cpu_seconds()
    found = serving.wrk_run(running.url, body, headers, 4, 1, tmp_path)
    served = _successes(running.url) - before
    assert running.cpu_seconds() > cpu  # the service's own CPU time is read
    assert found["requests"] > 0
    assert found["status"] == found["connect"] == found["read"] == 0
    # wrk counts answers received; the service may finish up to one request
    # per connection that wrk no longer waited for.
    assert found["requests"] <= served <= found["requests"] + 4
    assert 0 < found["p50_us"] <= found["p99_us"]


def test_wrk_counts_refused_requests_as_errors(
    server: tuple[serving.Server, str], tmp_path: Path
) -> None:
    _need_wrk()
    running, name = server
    images = np.zeros((1, 28, 28, 1), "float32")
    body, headers = serving.bodies(name, images, AUTH)["json"]
    found = serving.wrk_run(
        running.url, body, headers | {"Authorization": "Bearer wrong"}, 2, 1, tmp_path
    )
    assert found["requests"] > 0
    assert found["status"] == found["requests"]  # every answer a 401


def test_report_renders_the_runs_and_the_targets() -> None:
    machine = serving.Machine(2, "test CPU", (1.0, 2.0, 3.0))
    runs = [
        serving.Run("json", False, 1, 1, 2.0, 1000, 0, 0.8, 2.0, 1.5, 0.7),
        serving.Run("json", False, 16, 1, 2.0, 2000, 3, 9.0, 20.0, 1.5, 0.6),
    ]
    report = serving.Report(machine, 0.1, runs, True, 0, [])
    text = serving.render(report)
    assert "| json | off | 1 | 500 | 500 | 0.80 | 2.00 | 0 | 0.70 | 1.50 |" in text
    verdicts = dict(serving.verdicts(report))
    assert verdicts[
        "json, 1 connection: p50 0.80 ms (target <= 1.0 ms); HTTP overhead 0.70 "
        "ms over the engine"
    ]
    assert not verdicts["json, 16 connections: 1,000 requests/s (target >= 1,500)"]
    assert not verdicts["errors under load: 3 (target 0)"]
    assert "load average 1.00 / 2.00 / 3.00" in text
