"""The registry's files in the data directory and in an S3-compatible store.

The store's tests run on both blob stores (``local``: ``BNN_DATA_DIR``;
``s3``: ``BNN_OBJECT_STORE_URL`` on a moto server reached over HTTP with
boto3). Oracles: hashlib and the canonical JSON for keys and contents, the
files or objects themselves listed independently of the code under test
(``rglob`` / the test's own boto3 client), and, for the service, the Keras
model's own forward pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient
from s3_fixture import S3Server, start_s3_server

import bnncore as lq
from bnncore_service.blobs import S3Blobs
from bnncore_service.config import Settings, SettingsError, load_settings
from bnncore_service.main import create_app
from bnncore_service.store import Store, StoreError

IO: list[dict[str, Any]] = [{"name": "x", "shape": [-1, 4]}]
WEIGHTS = b"weights: any bytes; the store does not parse them" * 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(normalized: dict[str, Any]) -> bytes:
    return json.dumps(normalized, sort_keys=True, separators=(",", ":")).encode()


class Backend:
    """One blob store under test, with an independent view of its contents."""

    def __init__(self, kind: str, data_dir: Path, url: str | None, s3: Any) -> None:
        self.kind = kind
        self.settings = Settings(data_dir=data_dir, object_store_url=url)
        self.url = url
        self._s3 = s3

    @property
    def bucket(self) -> str:
        assert self.url is not None
        return self.url.removeprefix("s3://").split("/")[0]

    def _name(self, key: str) -> str:
        return f"registry/{key}"

    def stored(self) -> set[str]:
        """Every definition and weights key stored (listed by the test)."""
        if self.url is None:
            root = self.settings.data_dir
            return {
                str(p.relative_to(root))
                for folder in ("definitions", "weights")
                for p in (root / folder).rglob("*")
                if p.is_file()
            }
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix="registry/"
        )
        return {
            item["Key"].removeprefix("registry/")
            for page in pages
            for item in page.get("Contents", [])
        }

    def get(self, key: str) -> bytes:
        if self.url is None:
            return (self.settings.data_dir / key).read_bytes()
        reply = self._s3.get_object(Bucket=self.bucket, Key=self._name(key))
        return reply["Body"].read()

    def overwrite(self, key: str, data: bytes) -> None:
        """Damages a stored file behind the store's back."""
        if self.url is None:
            (self.settings.data_dir / key).write_bytes(data)
        else:
            self._s3.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend("local", tmp_path / "data", None, None)
    url = request.getfixturevalue("s3_url")
    server: S3Server = request.getfixturevalue("s3_server")
    return Backend("s3", tmp_path / "data", url, server.client())


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = Store(backend.settings).open()
    try:
        yield opened
    finally:
        opened.close()


def _register(store: Store, name: str, normalized: dict[str, Any]) -> Any:
    digest = _sha(_canonical(normalized))
    record, _ = store.register(name, digest, normalized, "Sequential", 1, 4, IO, IO)
    return record


def _upload(store: Store, name: str, version: int, data: bytes) -> Any:
    upload = store.new_upload()
    try:
        upload.write(data)
        upload.finish()
        return store.save_weights(name, version, upload)
    finally:
        upload.discard()


def test_files_are_content_addressed_under_the_same_keys(
    backend: Backend, store: Store
) -> None:
    first, second = {"layers": [1]}, {"layers": [2]}
    _register(store, "m", first)
    _register(store, "m", second)
    stored, previous = _upload(store, "m", 1, WEIGHTS)
    assert previous is None and stored.sha256 == _sha(WEIGHTS)
    h1, h2, hw = _sha(_canonical(first)), _sha(_canonical(second)), _sha(WEIGHTS)
    assert backend.stored() == {
        f"definitions/{h1[:2]}/{h1}.json",
        f"definitions/{h2[:2]}/{h2}.json",
        f"weights/{hw[:2]}/{hw}.safetensors",
    }
    assert backend.get(f"definitions/{h1[:2]}/{h1}.json") == _canonical(first)
    assert backend.get(f"weights/{hw[:2]}/{hw}.safetensors") == WEIGHTS
    # Read back through a second store (another replica's view).
    other = Store(backend.settings).open()
    try:
        assert other.load_definition(h2) == second
        weights = other.weights("m", 1)
        assert weights is not None and weights.read() == WEIGHTS
        assert other.weights("m", 2) is None
    finally:
        other.close()
    # No temporary file is left in the data directory either.
    assert not list((backend.settings.data_dir / "weights").glob(".tmp-*"))


def test_replacing_and_deleting_remove_unused_objects_only(
    backend: Backend, store: Store
) -> None:
    shared, replaced = b"shared weights" * 10, b"first weights" * 10
    _register(store, "a", {"layers": ["a"]})
    _register(store, "b", {"layers": ["b"]})
    _upload(store, "a", 1, replaced)
    _, previous = _upload(store, "a", 1, shared)  # replaces: the old one goes
    assert previous == _sha(replaced)
    _upload(store, "b", 1, shared)
    weights_keys = {k for k in backend.stored() if k.startswith("weights/")}
    assert weights_keys == {f"weights/{_sha(shared)[:2]}/{_sha(shared)}.safetensors"}
    assert store.delete("a", 1)
    assert len(backend.stored()) == 2  # b's definition and the shared weights
    assert store.weights("b", 1).read() == shared  # type: ignore[union-attr]
    assert store.delete("b", 1)
    assert backend.stored() == set()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: bytes([data[0] ^ 1]) + data[1:], id="same-size"),
        pytest.param(lambda data: data[:-1], id="truncated"),
        pytest.param(lambda data: data * 50, id="larger"),
    ],
)
def test_a_corrupt_weights_file_is_refused_on_read(
    backend: Backend, store: Store, damage: Any
) -> None:
    _register(store, "m", {"layers": [1]})
    _upload(store, "m", 1, WEIGHTS)
    key = f"weights/{_sha(WEIGHTS)[:2]}/{_sha(WEIGHTS)}.safetensors"
    backend.overwrite(key, damage(WEIGHTS))
    weights = store.weights("m", 1)
    assert weights is not None
    with pytest.raises(StoreError, match=rf"version 1: .*{key} is corrupt") as caught:
        weights.read()
    assert _sha(WEIGHTS) in str(caught.value)


def test_weights_reads_are_bounded_by_the_recorded_size(
    backend: Backend, store: Store
) -> None:
    """An object grown to 50 times its recorded size is not read whole: the
    read asks for (S3: a Range of) the recorded size plus one byte."""
    _register(store, "m", {"layers": [1]})
    _upload(store, "m", 1, WEIGHTS)
    key = f"weights/{_sha(WEIGHTS)[:2]}/{_sha(WEIGHTS)}.safetensors"
    backend.overwrite(key, WEIGHTS * 50)
    assert len(store.blobs.read(key, len(WEIGHTS))) == len(WEIGHTS) + 1
    if backend.kind == "s3":
        assert isinstance(store.blobs, S3Blobs)
        ranges: list[str] = []
        store.blobs.client.meta.events.register(
            "before-send.s3.GetObject",
            lambda request, **_: ranges.append(request.headers["Range"].decode()),
        )
        with pytest.raises(StoreError, match="corrupt"):
            store.weights("m", 1).read()  # type: ignore[union-attr]
        assert ranges == [f"bytes=0-{len(WEIGHTS)}"]


def test_the_sweep_deletes_old_unreferenced_files_only(
    backend: Backend, store: Store
) -> None:
    """Leftovers of crashed writes: objects put without their record, and an
    upload's temporary file. Old ones go; young ones, referenced ones and
    objects the store does not name stay (listing in pages of 2)."""
    if isinstance(store.blobs, S3Blobs):
        store.blobs.page_size = 2
    _register(store, "m", {"layers": [1]})
    _upload(store, "m", 1, WEIGHTS)
    orphan_definition, orphan_weights = _sha(b"d1"), _sha(b"w1")
    store.blobs.put_bytes(
        f"definitions/{orphan_definition[:2]}/{orphan_definition}.json", b"{}"
    )
    store.blobs.put_bytes(
        f"weights/{orphan_weights[:2]}/{orphan_weights}.safetensors", b"w1"
    )
    store.blobs.put_bytes("weights/ab/notes.txt", b"not the store's")
    kept = backend.stored()
    crashed = store.new_upload()
    crashed.write(b"half an upload")
    crashed.finish()  # ... and the process died
    time.sleep(2.1)  # S3 ages have whole seconds
    young = _sha(b"w2")
    store.blobs.put_bytes(f"weights/{young[:2]}/{young}.safetensors", b"w2")

    report = store.sweep(1.5)

    gone = {
        f"definitions/{orphan_definition[:2]}/{orphan_definition}.json",
        f"weights/{orphan_weights[:2]}/{orphan_weights}.safetensors",
    }
    assert set(report.unreferenced) == gone
    assert report.temporary == [str(crashed.path.relative_to(store.data_dir))]
    assert report.bytes == len(b"{}") + len(b"w1") + len(b"half an upload")
    assert not crashed.path.exists()
    assert backend.stored() == (kept - gone) | {
        f"weights/{young[:2]}/{young}.safetensors"
    }
    assert store.weights("m", 1).read() == WEIGHTS  # type: ignore[union-attr]
    assert store.load_definition(_sha(_canonical({"layers": [1]}))) == {"layers": [1]}


# ----------------------------------------------------------------------
# S3 only: faults and start-up errors
# ----------------------------------------------------------------------


def backend_bucket(url: str) -> str:
    return url.removeprefix("s3://").split("/")[0]


def _deny(server: S3Server, url: str, action: str, folder: str) -> None:
    bucket = backend_bucket(url)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": action,
                "Resource": f"arn:aws:s3:::{bucket}/registry/{folder}/*",
            }
        ],
    }
    server.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def test_a_refused_put_commits_nothing(
    s3_server: S3Server, s3_url: str, tmp_path: Path
) -> None:
    store = Store(Settings(data_dir=tmp_path / "data", object_store_url=s3_url)).open()
    try:
        _register(store, "m", {"layers": [1]})
        _deny(s3_server, s3_url, "s3:PutObject", "weights")
        with pytest.raises(StoreError, match=r"storing weights/.*AccessDenied|403"):
            _upload(store, "m", 1, WEIGHTS)
        assert store.weights("m", 1) is None
        _deny(s3_server, s3_url, "s3:PutObject", "definitions")
        with pytest.raises(StoreError, match="storing definitions/"):
            _register(store, "m", {"layers": [2]})
        assert store.versions("m") == [1]
        bucket = s3_url.removeprefix("s3://").split("/")[0]
        listed = s3_server.client().list_objects_v2(Bucket=bucket)
        assert [o["Key"] for o in listed.get("Contents", [])] == [
            f"registry/definitions/{_sha(_canonical({'layers': [1]}))[:2]}/"
            f"{_sha(_canonical({'layers': [1]}))}.json"
        ]
    finally:
        store.close()


def test_the_server_going_away_mid_way_commits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_s3_server(tmp_path)
    try:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        url = server.new_bucket()
        store = Store(Settings(data_dir=tmp_path / "data", object_store_url=url))
        store.open()
        try:
            _register(store, "m", {"layers": [1]})
            server.stop()
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"storing weights/.* failed"):
                _upload(store, "m", 1, WEIGHTS)
            assert time.monotonic() - started < 20
            assert store.weights("m", 1) is None
            assert not list((tmp_path / "data" / "weights").glob(".tmp-*"))
        finally:
            store.close()
    finally:
        server.stop()


def test_startup_names_a_missing_or_unreachable_store(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = s3_url.replace("bnn-test-", "bnn-absent-")
    with pytest.raises(StoreError, match=r"bucket 'bnn-absent-\w+' does not exist"):
        Store(Settings(data_dir=tmp_path, object_store_url=missing)).open()
    with (
        pytest.raises(StoreError, match=r"does not exist"),
        TestClient(create_app(Settings(data_dir=tmp_path, object_store_url=missing))),
    ):
        pass
    with socket_nobody_listens() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        with pytest.raises(StoreError, match=rf"store at {endpoint} is unreachable"):
            Store(Settings(data_dir=tmp_path, object_store_url=s3_url)).open()
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(StoreError, match=r"pip install 'bnncore\[s3\]'"):
        Store(Settings(data_dir=tmp_path, object_store_url=s3_url))


class socket_nobody_listens:  # noqa: N801 (a context manager used like a function)
    """An endpoint on a loopback port nothing listens on."""

    def __enter__(self) -> str:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))  # bound, never listening: refused
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


@pytest.mark.parametrize(
    "value", ["http://bucket/x", "s3://", "s3://UPPER/x", "s3://a/x"], ids=str
)
def test_a_malformed_url_stops_the_start_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BNN_OBJECT_STORE_URL", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"BNN_OBJECT_STORE_URL={value!r}: expected s3://bucket[/prefix]" in message


# ----------------------------------------------------------------------
# The service on S3: register, upload, infer, replace, delete, sweep
# ----------------------------------------------------------------------


def _model(seed: int) -> keras.Model:
    binary = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
    model = keras.Sequential(
        [
            keras.Input((4,), name="features"),
            lq.layers.QuantDense(6, name="dense1", **binary),
            keras.layers.BatchNormalization(name="bn1"),
            lq.layers.QuantDense(3, input_quantizer="ste_sign", name="out", **binary),
        ],
        name="tiny",
    )
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.normal(0.0, 0.7, tuple(variable.shape))
        if variable.path.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        variable.assign(value.astype("float32"))
    return model


def _infer(client: TestClient, x: np.ndarray) -> np.ndarray:
    request = {
        "inputs": [
            {
                "name": "features",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.reshape(-1).tolist(),
            }
        ]
    }
    reply = client.post("/v2/models/tiny/versions/1/infer", json=request)
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    return np.asarray(output["data"], "float32").reshape(output["shape"])


def test_the_service_on_s3(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    first, second = _model(1), _model(2)
    x = np.random.default_rng(3).normal(size=(3, 4)).astype("float32")
    settings = Settings(data_dir=tmp_path / "data", object_store_url=s3_url)
    weights_url = "/v2/models/tiny/versions/1/weights"
    octets = {"content-type": "application/octet-stream"}
    with TestClient(create_app(settings)) as client:
        definition = lq.export.to_definition(first)
        reply = client.post(
            "/v2/models", json={"name": "tiny", "definition": definition}
        )
        assert reply.status_code == 201, reply.text
        reply = client.put(
            weights_url, content=lq.export.to_bytes(first), headers=octets
        )
        assert reply.status_code == 201, reply.text
        np.testing.assert_allclose(_infer(client, x), first(x), rtol=1e-5, atol=1e-6)
        # The bucket refuses the put: 503 naming it, the first weights serve on.
        _deny(s3_server, s3_url, "s3:PutObject", "weights")
        reply = client.put(
            weights_url, content=lq.export.to_bytes(second), headers=octets
        )
        assert reply.status_code == 503, reply.text
        assert "storing weights/" in reply.json()["error"], reply.text
        np.testing.assert_allclose(_infer(client, x), first(x), rtol=1e-5, atol=1e-6)
        s3_server.client().delete_bucket_policy(Bucket=backend_bucket(s3_url))
        reply = client.put(
            weights_url, content=lq.export.to_bytes(second), headers=octets
        )
        assert reply.status_code == 200, reply.text
        np.testing.assert_allclose(_infer(client, x), second(x), rtol=1e-5, atol=1e-6)
    backend = Backend("s3", settings.data_dir, s3_url, s3_server.client())
    sha = _sha(lq.export.to_bytes(second))
    stored = backend.stored()
    assert f"weights/{sha[:2]}/{sha}.safetensors" in stored and len(stored) == 2
    assert not (settings.data_dir / "definitions").exists()  # nothing local

    # A new replica (fresh model cache) serves from the bucket. Its start-up
    # sweep deletes an old object without a record (a crashed write); a
    # damaged object is refused with a clear error, never served.
    backend.overwrite(f"weights/{sha[:2]}/{sha}.safetensors", b"\0" * 64)
    orphan = _sha(b"orphan")
    backend.overwrite(f"weights/{orphan[:2]}/{orphan}.safetensors", b"orphan")
    time.sleep(1.1)  # S3 ages have whole seconds
    replica = settings.model_copy(update={"sweep_grace_s": 1.0})
    with TestClient(create_app(replica)) as client:
        assert backend.stored() == stored
        reply = client.post(
            "/v2/models/tiny/versions/1/infer",
            json={
                "inputs": [
                    {
                        "name": "features",
                        "shape": [1, 4],
                        "datatype": "FP32",
                        "data": [0, 0, 0, 0],
                    }
                ]
            },
        )
        assert reply.status_code == 503, reply.text
        assert "is corrupt" in reply.json()["error"]
        assert client.delete("/v2/models/tiny/versions/1").status_code in (200, 204)
        assert client.get("/v2/models/tiny/versions/1").status_code == 404
    assert backend.stored() == set()
    assert os.listdir(settings.data_dir / "weights") == []  # no temporaries
