"""Three real replicas (``python -m bnncore_service`` processes) sharing one registry
on a real PostgreSQL and one bucket on a real S3-compatible server (moto's
server mode over HTTP): they agree (issue 17, item 2). Each replica has a data
directory of its own, which holds only its uploads in progress, so everything
they share goes through PostgreSQL and S3.

Checked against the documented bound: a change committed through one replica
is served by every other one at most ``BNN_REGISTRY_POLL_S`` (1 s, the
default) after the commit; metadata reads go to the database and see it at
once. The expected outputs come from the Keras models the weights files were
made from.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import keras
import numpy as np
import pytest

import bnncore as lq

BOUND_S = 1.0
"""BNN_REGISTRY_POLL_S's default: the documented consistency bound."""
SLACK_S = 0.5
"""Scheduling slack on a loaded 2-core machine (a generation read's round
trip, the request reaching the server)."""
OCTETS = {"content-type": "application/octet-stream"}


def _model(seed: int, name: str) -> keras.Model:
    binary = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
    model = keras.Sequential(
        [
            keras.Input((8,), name="features"),
            lq.layers.QuantDense(16, name="dense1", **binary),
            lq.layers.QuantDense(3, input_quantizer="ste_sign", name="d2", **binary),
        ],
        name=name,
    )
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(size=tuple(variable.shape)).astype("float32"))
    return model


X = np.random.default_rng(7).normal(size=(3, 8)).astype("float32")


class Weights:
    """A weights file and the outputs its model computes on :data:`X`."""

    def __init__(self, seed: int) -> None:
        model = _model(seed, "shared")
        self.file = lq.export.to_bytes(model)
        self.expected = keras.ops.convert_to_numpy(model(X, training=False))


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("replicas")
    return [root / f"replica-{i}" for i in range(3)]


@pytest.fixture(scope="module")
def replicas(
    postgres: Any, s3_server: Any, start_service: Any, data_dirs: list[Path]
) -> Iterator[list[Any]]:
    """Three replicas on one PostgreSQL database and one S3 bucket."""
    env = {
        "BNN_DATABASE_URL": postgres.create_database(),
        "BNN_OBJECT_STORE_URL": s3_server.new_bucket(),
        **s3_server.env,
    }
    with ThreadPoolExecutor(3) as pool:  # they start (import TensorFlow) together
        futures = [
            pool.submit(start_service, data_dir, env=env, timeout=300)
            for data_dir in data_dirs
        ]
        started = [future.result() for future in futures]
    try:
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture
def cluster(replicas: list[Any]) -> list[Any]:
    """The replicas still running (one test kills one)."""
    alive = [replica for replica in replicas if not replica.stopped]
    assert len(alive) >= 2
    return alive


@pytest.fixture(scope="module")
def files() -> dict[str, Any]:
    return {
        "definition": lq.export.to_definition(_model(0, "shared")),
        "a": Weights(1),
        "b": Weights(2),
    }


def _infer(base: str, name: str, version: int = 1) -> httpx.Response:
    body = {
        "inputs": [
            {
                "name": "features",
                "shape": list(X.shape),
                "datatype": "FP32",
                "data": X.reshape(-1).tolist(),
            }
        ]
    }
    return httpx.post(
        f"{base}/v2/models/{name}/versions/{version}/infer", json=body, timeout=60
    )


def _outputs(reply: httpx.Response) -> np.ndarray:
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    return np.asarray(output["data"], "float32").reshape(output["shape"])


def _same(outputs: np.ndarray, expected: np.ndarray) -> bool:
    return bool(np.allclose(outputs, expected, rtol=1e-5, atol=1e-5))


def _register(base: str, name: str, definition: Any) -> httpx.Response:
    return httpx.post(
        f"{base}/v2/models", json={"name": name, "definition": definition}, timeout=60
    )


def _upload(base: str, name: str, file: bytes) -> httpx.Response:
    return httpx.put(
        f"{base}/v2/models/{name}/versions/1/weights",
        content=file,
        headers=OCTETS,
        timeout=60,
    )


def test_registered_on_one_is_served_by_the_others(
    cluster: list[Any], files: dict[str, Any]
) -> None:
    a, *others = cluster
    assert _register(a.base, "first", files["definition"]).status_code == 201
    assert _upload(a.base, "first", files["a"].file).status_code == 201
    for replica in others:  # never saw it: metadata and inference at once
        meta = httpx.get(f"{replica.base}/v2/models/first/versions/1").json()
        assert meta["weights_sha256"] is not None
        assert _same(_outputs(_infer(replica.base, "first")), files["a"].expected)


def test_weights_replaced_on_one_are_served_by_the_others_within_the_bound(
    cluster: list[Any], files: dict[str, Any]
) -> None:
    b, *others = cluster
    assert _register(b.base, "swap", files["definition"]).status_code == 201
    assert _upload(b.base, "swap", files["a"].file).status_code == 201
    for replica in cluster:  # every replica serves (and caches) weights a
        assert _same(_outputs(_infer(replica.base, "swap")), files["a"].expected)

    assert _upload(b.base, "swap", files["b"].file).status_code == 200
    committed = time.monotonic()
    assert _same(_outputs(_infer(b.base, "swap")), files["b"].expected)  # at once
    for replica in others:
        while True:
            sent = time.monotonic()
            outputs = _outputs(_infer(replica.base, "swap"))
            if _same(outputs, files["b"].expected):
                break
            # Before the bound the previous weights may still serve, whole:
            assert _same(outputs, files["a"].expected)
            assert sent - committed < BOUND_S + SLACK_S, "stale past the bound"
            time.sleep(0.05)
        # and from then on, only the new ones
        assert _same(_outputs(_infer(replica.base, "swap")), files["b"].expected)


def test_a_version_deleted_on_one_is_gone_on_the_others(
    cluster: list[Any], files: dict[str, Any]
) -> None:
    a, b = cluster[:2]
    assert _register(a.base, "gone", files["definition"]).status_code == 201
    assert _infer(b.base, "gone").status_code == 200  # loaded on b
    assert httpx.delete(f"{a.base}/v2/models/gone/versions/1").status_code == 200
    committed = time.monotonic()
    assert httpx.get(f"{b.base}/v2/models/gone/versions/1").status_code == 404
    while (status := _infer(b.base, "gone").status_code) != 404:
        assert status == 200
        assert time.monotonic() - committed < BOUND_S + SLACK_S, "served past delete"
        time.sleep(0.05)
    time.sleep(BOUND_S + SLACK_S)
    assert _infer(b.base, "gone").status_code == 404


def test_concurrent_registrations_of_one_definition_give_one_version(
    cluster: list[Any], files: dict[str, Any]
) -> None:
    for attempt in range(3):
        name = f"raced{attempt}"
        with ThreadPoolExecutor(3) as pool:
            replies = list(
                pool.map(
                    lambda replica, n=name: _register(
                        replica.base, n, files["definition"]
                    ),
                    cluster,
                )
            )
        assert sorted(r.status_code for r in replies) == [200] * (len(cluster) - 1) + [
            201
        ]
        assert {r.json()["version"] for r in replies} == {1}
        versions = httpx.get(f"{cluster[-1].base}/v2/models/{name}").json()
        assert versions["versions"] == ["1"]


def test_a_replica_killed_during_an_upload_leaves_the_others_serving(
    replicas: list[Any],
    cluster: list[Any],
    files: dict[str, Any],
    data_dirs: list[Path],
) -> None:
    if len(cluster) < 3:
        pytest.skip("needs three running replicas")
    a, b, c = cluster
    assert _register(a.base, "crash", files["definition"]).status_code == 201
    assert _upload(a.base, "crash", files["a"].file).status_code == 201
    before = httpx.get(f"{a.base}/v2/models/crash/versions/1").json()

    # c's upload in progress is a file in its own data directory, before S3.
    uploads = data_dirs[replicas.index(c)] / "weights"
    leftovers = set(uploads.glob(".tmp-upload-*"))
    half = len(files["b"].file) // 2
    killed = threading.Event()

    def body() -> Iterator[bytes]:
        yield files["b"].file[:half]
        killed.wait(60)
        yield files["b"].file[half:]

    def upload() -> None:
        with contextlib.suppress(httpx.TransportError):  # c dies under it
            httpx.put(
                f"{c.base}/v2/models/crash/versions/1/weights",
                content=body(),
                headers=OCTETS,
                timeout=60,
            )

    uploader = threading.Thread(target=upload)
    uploader.start()
    deadline = time.monotonic() + 30
    while not set(uploads.glob(".tmp-upload-*")) - leftovers:
        assert time.monotonic() < deadline, "the upload never started on c"
        time.sleep(0.02)
    served: list[bool] = []

    def keep_serving() -> None:
        for replica in (a, b) * 10:
            served.append(
                _same(_outputs(_infer(replica.base, "crash")), files["a"].expected)
            )

    server = threading.Thread(target=keep_serving)
    server.start()
    os.kill(c.process.pid, signal.SIGKILL)
    c.process.wait(timeout=30)
    c.stopped = True
    killed.set()
    uploader.join(timeout=60)
    server.join(timeout=120)
    assert served == [True] * 20  # the old weights, whole, throughout

    # The store is as before the upload: same weights, versions, and the
    # half-received file is a temporary file the next start-up sweeps.
    for replica in (a, b):
        assert httpx.get(f"{replica.base}/v2/models/crash/versions/1").json() == before
    assert set(uploads.glob(".tmp-upload-*")) - leftovers
    assert _register(b.base, "crash", files["definition"]).json()["version"] == 1
