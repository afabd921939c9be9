"""The inference replica's read-only store (``bnncore_service.store_reader``)
against the full service's :class:`~bnncore_service.store.Store`, on SQLite
and on a real PostgreSQL server (``tests/pg_fixture.py``).

Oracle: the full store itself. A registry is filled through ``Store``
(versions under names with quotes, SQL, placeholders and non-ASCII letters,
uploaded weights, a deleted version, a replaced upload), then every read the
replica makes is asked of both and compared: records, versions, weights and
their bytes, model pages, the generation, definitions, and the errors of
unknown names, versions, missing and corrupt files and unsupported schemas.
A fresh process shows what the reader imports (``sys.modules``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from bnncore_service import migrations
from bnncore_service.config import Settings
from bnncore_service.records import StoreError
from bnncore_service.store import Store
from bnncore_service.store_reader import (
    HEAD,
    KNOWN_REVISIONS,
    StoreReader,
    open_reader,
)

ROOT = Path(__file__).resolve().parents[2]
IO = ([{"name": "x", "shape": [-1, 4]}], [{"name": "y", "shape": [-1, 2]}])
NAMES = [
    "plain",
    "it's",
    'say "hi"',
    "x'; DROP TABLE model_versions; --",
    "%s %(name)s ? :name",
    "naïve-ñ_模型",
    "back\\slash",
]
UNKNOWN = ["nothing", "", "PLAIN", "plain ", "%", "_"]


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of an empty registry on each database."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database_url=url)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = Store(settings).open()
    yield opened
    opened.close()


def _digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _register(store: Store, name: str, seed: str) -> int:
    digest = _digest(seed)
    record, _ = store.register(
        name, digest, {"seed": seed}, "Sequential", len(seed), 4 * len(seed), *IO
    )
    return record.version


def _upload(store: Store, name: str, version: int, data: bytes) -> None:
    upload = store.new_upload()
    upload.write(data)
    upload.finish()
    assert store.save_weights(name, version, upload) is not None


def _fill(store: Store) -> None:
    """Three versions of each name (the middle one deleted), weights on some,
    one upload replaced, and one definition shared by two names."""
    for i, name in enumerate(NAMES):
        versions = [_register(store, name, f"{name}/{k}") for k in range(3)]
        _upload(store, name, versions[0], f"weights of {name}".encode())
        _upload(store, name, versions[2], b"first")
        _upload(store, name, versions[2], f"second {i}".encode())
        assert store.delete(name, versions[1])
    _register(store, NAMES[1], f"{NAMES[0]}/0")  # the same definition


def _error(call: Any, *args: Any) -> str:
    with pytest.raises(StoreError) as caught:
        call(*args)
    return str(caught.value)


def _same_reads(store: Store, reader: StoreReader) -> int:
    """Asks every read of both stores; the number of comparisons made."""
    compared = 0
    for name in [*NAMES, *UNKNOWN]:
        assert reader.versions(name) == store.versions(name), name
        for version in [None, *range(0, 6), 2**31 - 1]:
            record = store.get(name, version)
            assert reader.get(name, version) == record, (name, version)
            compared += 1
            if version is None:
                continue
            weights = store.weights(name, version)
            found = reader.weights(name, version)
            assert found == weights, (name, version)
            if weights is not None:
                assert found is not None and found.read() == weights.read()
                assert found.key == weights.key and found.path == weights.path
        if record := store.get(name):
            definition = store.load_definition(record.content_hash)
            assert reader.load_definition(record.content_hash) == definition
    for limit, offset in [(1, 0), (2, 1), (3, 2), (100, 0), (5, 100)]:
        assert reader.list_models(limit, offset) == store.list_models(limit, offset)
    assert reader.generation() == store.generation()
    missing = _digest("never stored")
    assert _error(reader.load_definition, missing) == _error(
        store.load_definition, missing
    )
    return compared


def test_the_reader_reads_what_the_store_reads(
    store: Store, settings: Settings
) -> None:
    _fill(store)
    reader = open_reader(settings)
    try:
        compared = _same_reads(store, reader)
        assert compared == len(NAMES + UNKNOWN) * 8
        # The oracle is not empty: every registered name has its versions
        # 1 and 3, weights on both; the reader found them.
        for name in NAMES:
            assert reader.versions(name) == [1, 3] or name == NAMES[1]
            latest = reader.get(name)
            assert latest is not None and latest.inputs == IO[0]
            assert reader.weights(name, 3) is not None
        assert reader.versions(NAMES[1]) == [1, 3, 4]
        assert reader.ping() and reader.writes == 0
    finally:
        reader.close()


def test_a_version_registered_after_the_reader_opened_is_visible(
    store: Store, settings: Settings
) -> None:
    _register(store, "m", "first")
    reader = open_reader(settings)
    try:
        before = reader.generation()
        assert reader.versions("m") == [1] and reader.get("m", 2) is None
        assert _register(store, "m", "second") == 2
        _upload(store, "m", 2, b"new weights")
        assert reader.generation() == store.generation() == before + 2
        assert reader.get("m") == store.get("m", 2)
        found = reader.weights("m", 2)
        assert found is not None and found.read() == b"new weights"
        assert store.delete("m", 1)
        assert reader.versions("m") == [2] and reader.get("m", 1) is None
    finally:
        reader.close()


def test_file_errors_are_the_stores(store: Store, settings: Settings) -> None:
    _register(store, "m", "first")
    _upload(store, "m", 1, b"weights")
    weights = store.weights("m", 1)
    record = store.get("m")
    assert weights is not None and weights.path is not None and record is not None
    reader = open_reader(settings)
    try:
        found = reader.weights("m", 1)
        assert found is not None
        weights.path.write_bytes(b"WEIGHTS")  # same size, other bytes
        assert _error(found.read) == _error(weights.read)
        assert "is corrupt" in _error(found.read)
        weights.path.unlink()
        assert _error(found.read) == _error(weights.read)
        assert "missing" in _error(found.read)
        definition = store.data_dir / Store._definition_key(record.content_hash)
        definition.write_text("{not json")
        message = _error(reader.load_definition, record.content_hash)
        assert message == _error(store.load_definition, record.content_hash)
        assert message.startswith(f"stored definition {record.content_hash}")
    finally:
        reader.close()


def test_an_empty_database_is_an_empty_registry_until_it_is_migrated(
    settings: Settings,
) -> None:
    reader = open_reader(settings)
    try:
        assert reader.get("m") is None and reader.versions("m") == []
        assert reader.weights("m", 1) is None
        assert reader.list_models(10, 0) == ([], 0)
        assert reader.generation() == -1 and reader.ping()
        if settings.database_url is None:  # SQLite: the reader made no file
            assert not (settings.data_dir / "registry.sqlite3").exists()
            assert not settings.data_dir.exists()
        store = Store(settings).open()  # a full replica migrates it
        try:
            assert reader.generation() == store.generation() == 0
            _register(store, "m", "first")
            assert reader.get("m") == store.get("m")
            assert reader.generation() == 1
        finally:
            store.close()
    finally:
        reader.close()


def _set_revision(url: str, *revisions: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
        for revision in revisions:
            connection.execute(
                text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision}
            )
    engine.dispose()


def _refused(settings: Settings) -> str:
    with pytest.raises(StoreError) as caught:
        open_reader(settings)
    return str(caught.value)


def _refused_by_store(settings: Settings, migrate: str) -> str:
    """The full store's refusal: ``auto`` names what it cannot migrate (it
    raises before changing anything), ``off`` what it would need."""
    with pytest.raises(StoreError) as caught:
        Store(settings.model_copy(update={"migrate": migrate})).open()
    return str(caught.value)


def test_schemas_of_other_releases_are_refused_as_the_store_refuses_them(
    store: Store, settings: Settings
) -> None:
    url = settings.resolved_database_url()
    _set_revision(url, "0099")  # a newer release migrated it
    message = _refused(settings)
    assert message == _refused_by_store(settings, "auto")
    assert message.startswith("the registry database is at revision '0099'")
    _set_revision(url, "0001", "0002")
    assert _refused(settings) == _refused_by_store(settings, "auto")
    assert _refused(settings) == _refused_by_store(settings, "off")
    # An older revision: the store's message, with a replica's advice.
    _set_revision(url, "0001")
    message = _refused(settings)
    needs = "the registry database is at revision 0001, this release needs 0002; "
    assert message.startswith(needs)
    assert _refused_by_store(settings, "off").startswith(needs)
    assert "full replica with BNN_MIGRATE=auto" in message
    _set_revision(url, HEAD)
    open_reader(settings).close()


def test_tables_of_no_release_are_refused_as_the_store_refuses_them(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    with sqlite3.connect(tmp_path / "registry.sqlite3") as connection:
        connection.execute("CREATE TABLE model_versions (id INTEGER)")
    message = _refused(settings)
    assert message == _refused_by_store(settings, "auto")
    assert "model_names, model_weights, and no migration record" in message
    with sqlite3.connect(tmp_path / "registry.sqlite3") as connection:
        connection.execute("CREATE TABLE model_names (name TEXT)")
        connection.execute("CREATE TABLE model_weights (name TEXT)")
    message = _refused(settings)  # revision 0001 as made before migrations
    assert message.startswith(
        "the registry database is at revision 0001 (not stamped: made before "
        "migrations), this release needs 0002"
    ), message
    assert _refused_by_store(settings, "off").startswith(message.split(";")[0])


def test_the_revisions_are_the_migration_scripts() -> None:
    scripts = ScriptDirectory(str(Path(migrations.__file__).parent))
    assert HEAD == migrations.HEAD == scripts.get_current_head()
    assert sorted(KNOWN_REVISIONS) == sorted(
        r.revision for r in scripts.walk_revisions()
    )


def test_an_unreachable_server_is_a_store_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://bnn:secret@127.0.0.1:{port}/registry"
    settings = Settings(data_dir=tmp_path, database_url=url)
    message = _refused(settings)
    assert message.startswith(
        "cannot connect to the registry database "
        f"postgresql+psycopg://bnn:***@127.0.0.1:{port}/registry: "
    ), message
    assert "secret" not in message


def test_a_connection_the_server_dropped_is_replaced(
    postgres_url: str, tmp_path: Path
) -> None:
    import psycopg

    settings = Settings(data_dir=tmp_path, database_url=postgres_url)
    store = Store(settings).open()
    reader = open_reader(settings)
    try:
        _register(store, "m", "first")
        assert reader.versions("m") == [1]  # its connection is pooled now
        database = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(
            postgres_url.replace("+psycopg", ""), autocommit=True
        ) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = '' "
                "AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        assert ended and all(row[0] for row in ended)
        assert reader.versions("m") == [1]  # a new connection, quietly
        assert reader.get("m") == store.get("m")
    finally:
        reader.close()
        store.close()


CHILD = textwrap.dedent(
    """
    import json, sys

    from bnncore_service.config import Settings
    from bnncore_service.registry import Registry
    from bnncore_service.inference.runtime_models import RuntimeInferenceService
    from bnncore_service.store_reader import open_reader

    settings = Settings(data_dir=sys.argv[1], database_url=sys.argv[2] or None)
    reader = open_reader(settings)
    registry = Registry(settings, reader, None)
    record = registry.read_record("m", None)
    weights = registry.read_weights("m", 1)
    print(json.dumps({
        "record": [record.name, record.version, record.content_hash],
        "weights": weights.read().decode(),
        "definition": registry.normalized_of(record.content_hash),
        "modules": sorted({m.split(".")[0] for m in sys.modules}),
    }))
    """
)


def test_reading_a_record_imports_neither_sqlalchemy_nor_alembic(
    store: Store, settings: Settings
) -> None:
    _register(store, "m", "first")
    _upload(store, "m", 1, b"the weights")
    record = store.get("m")
    assert record is not None
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(settings.data_dir),
            settings.database_url or "",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BNN_DATA_DIR": str(settings.data_dir)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["record"] == [record.name, record.version, record.content_hash]
    assert found["weights"] == "the weights"
    assert found["definition"] == store.load_definition(record.content_hash)
    modules = set(found["modules"])
    unwanted = {"sqlalchemy", "alembic", "mako", "fastapi", "tensorflow", "keras"}
    assert modules & unwanted == set()
    driver = "sqlite3" if settings.database_url is None else "psycopg"
    assert driver in modules  # the oracle: the reader's own driver was used
