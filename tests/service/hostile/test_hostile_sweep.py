"""Crash leftovers (issue 14, finding 7): the start-up sweep.

A data directory is laid out as 31 ``kill -9`` crashes left it: ``.tmp-*``
files of interrupted writes and definition and weights files whose rows were
never committed, all older than ``BNN_SWEEP_GRACE_S``, beside files that
committed rows refer to (made old as well), young leftovers (maybe another
replica's write in progress) and files the store does not name. Starting the
app must delete exactly the old leftovers, and log them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from fastapi.testclient import TestClient
from service_samples import MNIST

from bnncore_service.config import Settings
from bnncore_service.main import create_app
from bnncore_service.store import Store

GRACE_S = 3600.0
OLD = time.time() - 2 * GRACE_S


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.name != "registry.sqlite3" and "-journal" not in p.name
    }


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _make_old(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (OLD, OLD))


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[Settings, set[str], set[str]]:
    """A data directory after crashes: (settings, files to keep, files to go)."""
    settings = Settings(data_dir=tmp_path / "data", sweep_grace_s=GRACE_S)
    with TestClient(create_app(settings)) as client:
        reply = client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
        assert reply.status_code == 201, reply.text
        assert client.get("/v2/models/mnist/versions/1").status_code == 200
    root = settings.data_dir
    committed = _files(root)  # one definition file; registered, referenced
    assert len(committed) == 1 and next(iter(committed)).startswith("definitions/")
    # A committed weights file: uploaded through the store.
    store = Store(settings).open()
    try:
        record = store.get("mnist", 1)
        assert record is not None
        upload = store.new_upload()
        upload.write(b"weights of version 1")
        upload.finish()
        assert store.save_weights("mnist", 1, upload) is not None
    finally:
        store.close()
    keep = _files(root)
    assert len(keep) == 2
    _make_old(root)  # referenced files are old too: age alone never deletes

    go: set[str] = set()
    young: set[str] = set()

    def leave(relative: str, data: bytes, old: bool) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if old:
            os.utime(path, (OLD, OLD))
        (go if old else young).add(relative)

    orphan_def, orphan_w, young_def = _hash("a"), _hash("b"), _hash("c")
    leave(f"definitions/{orphan_def[:2]}/{orphan_def}.json", b"{}", old=True)
    leave(f"weights/{orphan_w[:2]}/{orphan_w}.safetensors", b"\0" * 4096, old=True)
    leave(f"definitions/{orphan_def[:2]}/.tmp-k3j2h1.json", b"{", old=True)
    leave("weights/.tmp-upload-x8y7z6.safetensors", b"\0" * 65536, old=True)
    leave(f"weights/{orphan_w[:2]}/.tmp-q1w2e3.safetensors", b"", old=True)
    leave(f"definitions/{young_def[:2]}/{young_def}.json", b"{}", old=False)
    leave("weights/.tmp-upload-inflight.safetensors", b"\0" * 100, old=False)
    # Not named by the store: never touched, however old.
    for relative in ("definitions/README", "weights/ab/notes.txt", "other/x.json"):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (OLD, OLD))
        keep.add(relative)
    return settings, keep | young, go


def test_startup_sweeps_exactly_the_old_leftovers(
    crashed: tuple[Settings, set[str], set[str]], caplog: pytest.LogCaptureFixture
) -> None:
    settings, keep, go = crashed
    root = settings.data_dir
    assert _files(root) == keep | go
    with (
        caplog.at_level(logging.WARNING, logger="bnncore_service.store"),
        TestClient(create_app(settings)) as client,
    ):
        assert _files(root) == keep
        # The committed version still serves its definition and weights.
        reply = client.get("/v2/models/mnist/versions/1/definition")
        assert reply.status_code == 200
        assert client.app.state.store.weights("mnist", 1).path.exists()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "deleted 3 temporary and 2 unreferenced files" in logged
    for relative in go:
        assert relative in logged
    # A second start finds nothing more to sweep.
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="bnncore_service.store"),
        TestClient(create_app(settings)),
    ):
        pass
    assert _files(root) == keep
    assert not [r for r in caplog.records if "sweep" in r.getMessage()]


def test_grace_zero_sweeps_the_young_leftovers_too(
    crashed: tuple[Settings, set[str], set[str]],
) -> None:
    settings, keep, go = crashed
    store = Store(settings).open()
    try:
        report = store.sweep(0.0)
    finally:
        store.close()
    young = {p for p in keep if ".tmp-upload-inflight" in p or _hash("c") in p}
    assert set(report.temporary) | set(report.unreferenced) == go | young
    assert _files(settings.data_dir) == keep - young


def test_a_reused_leftover_is_refreshed_by_its_registration(tmp_path: Path) -> None:
    """An old unreferenced definition file that a registration picks up again
    (content-addressed: same hash) gets a fresh age, so a sweep starting in
    another replica meanwhile keeps it; and if a sweep took it anyway, the
    registration writes it again after its commit."""
    settings = Settings(data_dir=tmp_path / "data", sweep_grace_s=GRACE_S)
    store = Store(settings).open()
    try:
        normalized = {"kind": "test", "layers": [1, 2, 3]}
        digest = _hash("definition")
        path = store._definition_path(digest)
        store.save_definition(digest, normalized)
        os.utime(path, (OLD, OLD))  # an orphan from a crash long ago
        io: list[dict] = []
        store.register("m", digest, normalized, "sequential", 1, 4, io, io)
        assert time.time() - path.stat().st_mtime < 60
        assert store.sweep(GRACE_S).unreferenced == []
        assert path.exists()
        # Gone anyway (a sweep between the age check and the commit): written
        # again by the next registration of the same content.
        path.unlink()
        store.register("n", digest, normalized, "sequential", 1, 4, io, io)
        assert store.load_definition(digest) == normalized
    finally:
        store.close()


def test_a_crashed_upload_leaves_only_a_temporary_file(tmp_path: Path) -> None:
    """An upload interrupted after its bytes were written (before the rename)
    leaves a ``.tmp-upload-*`` file, which the sweep removes once old; the
    version keeps serving its previous weights."""
    settings = Settings(data_dir=tmp_path / "data", sweep_grace_s=GRACE_S)
    store = Store(settings).open()
    try:
        upload = store.new_upload()
        kernel = np.ones((2, 2), np.float32)
        upload.write(safetensors.numpy.save({"k": kernel}))
        upload.finish()  # ... and the process dies here
        assert upload.path.name.startswith(".tmp-upload-")
        os.utime(upload.path, (OLD, OLD))
        report = store.sweep(GRACE_S)
        assert report.temporary == [str(upload.path.relative_to(store.data_dir))]
        assert report.bytes == len(safetensors.numpy.save({"k": kernel}))
        assert not upload.path.exists()
    finally:
        store.close()
