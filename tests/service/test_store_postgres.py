"""The registry on both databases it supports: the embedded SQLite and a real
PostgreSQL server started by the tests (``tests/pg_fixture.py``).

Covers the Alembic migrations (fresh databases, databases made before
migrations existed, ``BNN_MIGRATE=off``, ``bnncore db upgrade``), the
generation counter, two processes racing to register, the registry view's
consistency bound, and a representative run of the service (register, upload
weights, infer, delete) on each database.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
    text,
)

import bnncore as lq
from bnncore import cli
from bnncore_service import migrations
from bnncore_service.config import Settings
from bnncore_service.database import DatabaseURLError, check_url
from bnncore_service.main import create_app
from bnncore_service.registry_view import RegistryView
from bnncore_service.store import Store, StoreError, _metadata

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

logging.getLogger("bnncore").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parents[2]
IO = ([{"name": "x", "shape": [-1, 4]}], [{"name": "y", "shape": [-1, 2]}])


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of an empty registry on each database."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database_url=url)


def _register(store: Store, name: str, digest: str) -> tuple[Any, bool]:
    return store.register(name, digest, {"d": digest}, "Sequential", 10, 40, *IO)


def _old_release_tables() -> MetaData:
    """The schema as releases before migrations created it (``create_all`` of
    these three tables), written out here as the oracle of that past."""
    metadata = MetaData()
    Table(
        "model_names",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("next_version", Integer, nullable=False),
    )
    Table(
        "model_versions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(64), nullable=False, index=True),
        Column("version", Integer, nullable=False),
        Column("content_hash", String(64), nullable=False, index=True),
        Column("kind", String(16), nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("params", BigInteger, nullable=False),
        Column("memory_bytes", BigInteger, nullable=False),
        Column("io_json", Text, nullable=False),
        UniqueConstraint("name", "version", name="uq_name_version"),
        UniqueConstraint("name", "content_hash", name="uq_name_hash"),
    )
    Table(
        "model_weights",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("sha256", String(64), nullable=False, index=True),
        Column("size", BigInteger, nullable=False),
        Column("uploaded_at", String(40), nullable=False),
    )
    return metadata


def _old_release_database(settings: Settings) -> None:
    """A registry made by the previous release: its tables and one version."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url())
    old = _old_release_tables()
    old.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(old.tables["model_names"]).values(name="old", next_version=2)
        )
        connection.execute(
            insert(old.tables["model_versions"]).values(
                name="old",
                version=1,
                content_hash="e" * 64,
                kind="Sequential",
                created_at="2026-01-01T00:00:00+00:00",
                params=10,
                memory_bytes=40,
                io_json=json.dumps({"inputs": IO[0], "outputs": IO[1]}),
            )
        )
    engine.dispose()


def _revision(store: Store) -> str | None:
    with store.engine.connect() as connection:
        return migrations.current(connection)


# ----------------------------------------------------------------------------
# Migrations
# ----------------------------------------------------------------------------


def test_head_is_the_revision_the_code_expects() -> None:
    assert migrations.head() == migrations.HEAD


def test_a_fresh_database_is_migrated_to_the_tables_the_code_uses(
    settings: Settings,
) -> None:
    store = Store(settings).open()
    try:
        assert _revision(store) == migrations.HEAD
        with store.engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection), _metadata
            )
        assert differences == []
        assert store.generation() == 0
    finally:
        store.close()


def test_a_database_of_the_previous_release_is_stamped_and_migrated(
    settings: Settings,
) -> None:
    _old_release_database(settings)
    store = Store(settings).open()
    try:
        assert _revision(store) == migrations.HEAD
        old = store.get("old", 1)
        assert old is not None and old.content_hash == "e" * 64
        record, created = _register(store, "old", "f" * 64)
        assert (record.version, created) == (2, True)  # its counter carried on
        assert store.generation() == 1
    finally:
        store.close()
    # Opening again migrates nothing and keeps everything.
    again = Store(settings).open()
    try:
        assert again.versions("old") == [1, 2]
    finally:
        again.close()


def test_migrate_off_refuses_an_old_schema_until_db_upgrade(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    _old_release_database(settings)
    off = settings.model_copy(update={"migrate": "off"})
    with pytest.raises(StoreError, match=r"revision 0001.*bnncore db upgrade"):
        Store(off).open()

    monkeypatch.setenv("BNN_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("BNN_DATABASE_URL", settings.database_url)
    assert cli.main(["db", "upgrade"]) == 0
    assert f"-> {migrations.HEAD}" in capsys.readouterr().out
    assert cli.main(["db", "upgrade"]) == 0  # idempotent
    assert "already" in capsys.readouterr().out

    store = Store(off).open()
    try:
        assert store.versions("old") == [1]
    finally:
        store.close()


def test_migrate_off_on_an_empty_database_names_the_command(
    settings: Settings,
) -> None:
    off = settings.model_copy(update={"migrate": "off"})
    with pytest.raises(StoreError, match=r"none \(empty\).*bnncore db upgrade"):
        Store(off).open()


def test_unrecognised_schemas_are_refused_without_changing_them(
    settings: Settings,
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url())
    partial = _old_release_tables()
    partial.tables["model_names"].create(engine)
    with pytest.raises(StoreError, match=r"some of the registry's tables"):
        Store(settings).open()
    assert set(inspect(engine).get_table_names()) == {"model_names"}

    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        )
        connection.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
    with pytest.raises(StoreError, match=r"revision '9999'.*newer release"):
        Store(settings).open()
    engine.dispose()


def test_database_url_errors_are_one_line_and_hide_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    for url in ("postgresql+psycopg://u:s3cret@db/x", "postgresql://u:s3cret@db/x"):
        with pytest.raises(DatabaseURLError) as caught:
            check_url(url)
        message = str(caught.value)
        assert "pip install 'bnncore[postgres]'" in message
        assert "s3cret" not in message and "\n" not in message
    with pytest.raises(DatabaseURLError, match="unknown database 'oracle9'"):
        check_url("oracle9://u@h/x")
    with pytest.raises(DatabaseURLError, match="not a database URL"):
        check_url("no url at all")


def test_the_server_stops_with_one_line_when_the_driver_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from bnncore_service.main import _app_from_environment

    monkeypatch.setenv("BNN_DATA_DIR", str(tmp_path))
    # pg8000: a PostgreSQL driver SQLAlchemy knows, not installed here
    monkeypatch.setenv("BNN_DATABASE_URL", "postgresql+pg8000://u:s3cret@h:1/x")
    with pytest.raises(SystemExit) as stopped:
        _app_from_environment()
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bnncore service: BNN_DATABASE_URL=")
    assert "pg8000" in lines[0] and "s3cret" not in lines[0]
    assert not tmp_path.joinpath("registry.sqlite3").exists()


# ----------------------------------------------------------------------------
# Registry and generation
# ----------------------------------------------------------------------------


def test_versions_pages_and_deletes(settings: Settings) -> None:
    store = Store(settings).open()
    try:
        assert _register(store, "m", "a" * 64)[0].version == 1
        assert _register(store, "m", "b" * 64)[0].version == 2
        assert _register(store, "m", "a" * 64) == (store.get("m", 1), False)
        _register(store, "n", "a" * 64)
        assert store.versions("m") == [1, 2]
        assert store.get("m").version == 2  # type: ignore[union-attr]
        assert store.list_models(1, 1) == ([("n", [1])], 2)
        assert store.delete("m", 2) and not store.delete("m", 2)
        assert _register(store, "m", "c" * 64)[0].version == 3  # 2 not reused
        assert store.get("m", 2) is None and store.get("zz") is None
    finally:
        store.close()


def test_every_write_and_only_a_write_bumps_the_generation(
    settings: Settings,
) -> None:
    store = Store(settings).open()
    try:
        steps = [
            (lambda: _register(store, "m", "a" * 64), 1),
            (lambda: _register(store, "m", "a" * 64), 0),  # already there
            (lambda: _register(store, "m", "b" * 64), 1),
            (lambda: store.get("m", 1), 0),
            (lambda: store.list_models(10, 0), 0),
            (lambda: store.delete("m", 1), 1),
            (lambda: store.delete("m", 1), 0),  # nothing to delete
        ]
        for step, bump in steps:
            before = store.generation()
            step()
            assert store.generation() == before + bump
    finally:
        store.close()


def test_a_failure_inside_a_registration_rolls_back_counter_and_generation(
    settings: Settings,
) -> None:
    store = Store(settings).open()
    try:
        _register(store, "m", "a" * 64)

        def power_cut(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.startswith("UPDATE registry_generation"):
                raise RuntimeError("power cut")  # the last statement before commit

        event.listen(store.engine, "before_cursor_execute", power_cut)
        with pytest.raises(RuntimeError, match="power cut"):
            _register(store, "m", "b" * 64)
        event.remove(store.engine, "before_cursor_execute", power_cut)

        assert store.versions("m") == [1] and store.generation() == 1
        assert _register(store, "m", "b" * 64)[0].version == 2  # no gap
        assert store.generation() == 2
    finally:
        store.close()


_RACER = """
import json, sys
from bnncore_service.config import Settings
from bnncore_service.store import Store

data_dir, url, me = sys.argv[1], sys.argv[2] or None, sys.argv[3]
store = Store(Settings(data_dir=data_dir, database_url=url)).open()
print("ready", flush=True)
sys.stdin.readline()
results = []
for i in range(8):
    for digest in (f"{me}{i}".ljust(64, "0"), "5" * 64):
        record, created = store.register(
            "race", digest, {"d": digest}, "Sequential", 1, 4, [], []
        )
        results.append([digest, record.version, created])
store.close()
print(json.dumps(results), flush=True)
"""


def test_two_processes_registering_at_once_make_one_version_per_definition(
    settings: Settings,
) -> None:
    # Neither process finds the database migrated: they race for that too.
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RACER,
                str(settings.data_dir),
                settings.database_url or "",
                me,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for me in ("a", "b")
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline() == "ready\n"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
    results = [row for out in outputs for row in json.loads(out)]
    shared = {tuple(row[1:]) for row in results if row[0] == "5" * 64}
    assert {version for version, _ in shared} == {shared.pop()[0]}
    assert sum(row[2] for row in results if row[0] == "5" * 64) == 1
    versions: dict[str, int] = {}
    for digest, version, _ in results:
        assert versions.setdefault(digest, version) == version
    assert sorted(versions.values()) == list(range(1, 18))  # no gap, no repeat
    store = Store(settings).open()
    try:
        assert store.versions("race") == list(range(1, 18))
        assert store.generation() == 17
    finally:
        store.close()


def test_concurrent_upgrades_take_turns(settings: Settings) -> None:
    url = settings.resolved_database_url()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    results: list[Any] = []

    def upgrade() -> None:
        try:
            results.append(migrations.upgrade(url))
        except Exception as error:  # reported below
            results.append(error)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == sorted(
        [(None, migrations.HEAD)] + [(migrations.HEAD, migrations.HEAD)] * 2, key=str
    )


# ----------------------------------------------------------------------------
# The registry view: reused lookups, seen changes
# ----------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_view_sees_another_process_change_within_the_poll_interval(
    settings: Settings,
) -> None:
    here, there = Store(settings).open(), Store(settings).open()  # two replicas
    statements: list[str] = []
    event.listen(
        here.engine,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )
    clock = _Clock()
    view = RegistryView(here, poll_s=1.0, clock=clock)
    try:
        _register(there, "m", "a" * 64)
        assert view.get("m").version == 1  # type: ignore[union-attr]
        assert view.weights("m", 1) is None
        statements.clear()
        for _ in range(5):  # reused: no query at all
            assert view.get("m").version == 1  # type: ignore[union-attr]
            assert view.weights("m", 1) is None
        assert statements == [] and view.polls == 1

        _register(there, "m", "b" * 64)
        clock.now += 0.9  # within the bound: the old answer may still show
        assert view.get("m").version == 1  # type: ignore[union-attr]
        clock.now += 0.1  # the bound: the generation is read again
        assert view.get("m").version == 2  # type: ignore[union-attr]
        assert view.polls == 2

        there.delete("m", 2)
        clock.now += 1.0
        assert view.get("m", 2) is None
        assert view.get("m").version == 1  # type: ignore[union-attr]

        _register(here, "m", "c" * 64)  # through this process: seen at once
        assert view.get("m").version == 3  # type: ignore[union-attr]
    finally:
        here.close()
        there.close()


# ----------------------------------------------------------------------------
# The service on each database
# ----------------------------------------------------------------------------


def _model(seed: int) -> keras.Model:
    binary = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
    model = keras.Sequential(
        [
            keras.Input((8,), name="features"),
            lq.layers.QuantDense(6, name="dense1", **binary),
            lq.layers.QuantDense(3, input_quantizer="ste_sign", name="d2", **binary),
        ],
        name="tiny",
    )
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(size=tuple(variable.shape)).astype("float32"))
    return model


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    a, b = _model(1), _model(2)
    return {
        "definition": lq.export.to_definition(a),
        "a": a,
        "b": b,
        "file_a": lq.export.to_bytes(a),
        "file_b": lq.export.to_bytes(b),
        "x": np.random.default_rng(3).normal(size=(4, 8)).astype("float32"),
    }


def _infer(client: TestClient, x: np.ndarray, version: int = 1) -> Any:
    body = {
        "inputs": [
            {
                "name": "features",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.reshape(-1).tolist(),
            }
        ]
    }
    return client.post(f"/v2/models/tiny/versions/{version}/infer", json=body)


def _outputs(reply: Any) -> np.ndarray:
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    return np.asarray(output["data"], "float32").reshape(output["shape"])


def _expected(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


OCTETS = {"content-type": "application/octet-stream"}


@pytest.fixture
def replicas(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps sharing one registry (and data directory), as two replicas."""
    fast = settings.model_copy(update={"registry_poll_s": 0.2})
    with (
        TestClient(create_app(fast)) as a,
        TestClient(create_app(fast)) as b,
    ):
        yield a, b


def test_register_upload_infer_and_delete_across_two_replicas(
    replicas: tuple[TestClient, TestClient], models: dict[str, Any]
) -> None:
    import time

    a, b = replicas
    x = models["x"]
    reply = a.post(
        "/v2/models", json={"name": "tiny", "definition": models["definition"]}
    )
    assert reply.status_code == 201, reply.text
    assert b.get("/v2/models/tiny").json()["versions"] == ["1"]

    put = b.put(
        "/v2/models/tiny/versions/1/weights", content=models["file_a"], headers=OCTETS
    )
    assert put.status_code == 201, put.text
    expected_a = _expected(models["a"], x)
    np.testing.assert_allclose(_outputs(_infer(b, x)), expected_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_outputs(_infer(a, x)), expected_a, rtol=1e-5, atol=1e-5)

    put = a.put(
        "/v2/models/tiny/versions/1/weights", content=models["file_b"], headers=OCTETS
    )
    assert put.status_code == 200, put.text
    expected_b = _expected(models["b"], x)
    np.testing.assert_allclose(_outputs(_infer(a, x)), expected_b, rtol=1e-5, atol=1e-5)
    time.sleep(0.25)  # BNN_REGISTRY_POLL_S=0.2: B has seen the change by now
    np.testing.assert_allclose(_outputs(_infer(b, x)), expected_b, rtol=1e-5, atol=1e-5)

    assert a.delete("/v2/models/tiny/versions/1").status_code in (200, 204)
    time.sleep(0.25)
    assert _infer(b, x).status_code == 404
    assert b.get("/v2/models/tiny/versions/1").status_code == 404


def test_an_unreachable_database_is_one_line_naming_it(
    tmp_path: Path, unused_port: Any
) -> None:
    url = f"postgresql+psycopg://bnn:s3cret@127.0.0.1:{unused_port()}/registry"
    for migrate in ("auto", "off"):
        settings = Settings(data_dir=tmp_path, database_url=url, migrate=migrate)
        with pytest.raises(StoreError) as caught:
            Store(settings).open()
        message = str(caught.value)
        assert message.startswith("cannot connect to the registry database ")
        assert "127.0.0.1" in message and "s3cret" not in message
        assert "\n" not in message
