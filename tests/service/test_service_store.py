"""The registry store: persistence across restarts, atomic writes, versions."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bnncore_service.config import Settings
from bnncore_service.store import Store, atomic_write

IO = ([{"name": "x", "shape": [-1, 4]}], [{"name": "y", "shape": [-1, 2]}])


def _register(store: Store, name: str, digest: str) -> Any:
    return store.register(name, digest, {"digest": digest}, "Sequential", 10, 40, *IO)


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store = Store(settings).open()
    first, _ = _register(store, "m", "a" * 64)
    _register(store, "m", "b" * 64)
    store.delete("m", 2)
    store.close()

    reopened = Store(settings).open()
    assert reopened.get("m", 1) == first
    assert reopened.versions("m") == [1]
    assert reopened.load_definition("a" * 64) == {"digest": "a" * 64}
    record, created = _register(reopened, "m", "c" * 64)
    assert (record.version, created) == (3, True)  # 2 is never reused
    reopened.close()


def test_default_database_is_sqlite_inside_the_data_dir(tmp_path: Path) -> None:
    store = Store(Settings(data_dir=tmp_path / "fresh")).open()
    assert (tmp_path / "fresh" / "registry.sqlite3").is_file()
    assert store.ping()
    store.close()


def test_failed_replace_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.json"
    atomic_write(target, b"old")

    def crash(*args: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]


def test_a_crash_inside_the_registration_transaction_leaves_the_old_state(
    tmp_path: Path,
) -> None:
    store = Store(Settings(data_dir=tmp_path / "data")).open()
    _register(store, "m", "a" * 64)

    def fail_version_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO model_versions"):
            raise RuntimeError("power cut")

    event.listen(store.engine, "before_cursor_execute", fail_version_insert)
    with pytest.raises(RuntimeError, match="power cut"):
        _register(store, "m", "b" * 64)
    event.remove(store.engine, "before_cursor_execute", fail_version_insert)

    assert store.versions("m") == [1]
    record, created = _register(store, "m", "b" * 64)
    assert (record.version, created) == (2, True)  # the counter rolled back too
    store.close()


def test_concurrent_registrations_of_one_definition_make_one_version(
    tmp_path: Path,
) -> None:
    store = Store(Settings(data_dir=tmp_path / "data")).open()
    results: list[Any] = []

    def worker() -> None:
        results.append(_register(store, "m", "a" * 64))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {record.version for record, _ in results} == {1}
    assert sum(created for _, created in results) == 1
    assert store.versions("m") == [1]
    store.close()


def test_list_pages_and_unknown_lookups(tmp_path: Path) -> None:
    store = Store(Settings(data_dir=tmp_path / "data")).open()
    for name in ("b", "a", "c"):
        _register(store, name, name * 64)
    _register(store, "a", "d" * 64)
    page, total = store.list_models(limit=2, offset=1)
    assert (page, total) == ([("b", [1]), ("c", [1])], 3)
    assert store.get("zzz") is None and store.get("a", 9) is None
    assert store.get("a").version == 2
    assert store.delete("a", 9) is False
    store.close()
