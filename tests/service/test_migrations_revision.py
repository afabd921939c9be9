"""The registry's revision is read without Alembic, and Alembic is imported
only to migrate: an inference replica on a current database starts without it.

Oracles: Alembic's own reader (``MigrationContext.get_current_revision``) for
the revision; ``sys.modules`` of a fresh process for what was imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from bnncore_service import migrations
from bnncore_service.config import Settings
from bnncore_service.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]
MIGRATION_ONLY = ("alembic", "mako")
UNCONFIGURED = ("boto3", "botocore", "psycopg")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'registry.sqlite3'}"


def _both(url: str) -> tuple[str | None, str | None]:
    """The revision by :func:`migrations.current` and by Alembic."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            ours = migrations.current(connection)
            theirs = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return ours, theirs


def test_current_reads_what_alembic_reads(url: str) -> None:
    assert _both(url) == (None, None)  # empty database
    engine = create_engine(url)
    with engine.begin() as connection:  # the version table, still empty
        connection.execute(
            text("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        )
    assert _both(url) == (None, None)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    assert migrations.upgrade(url) == (None, migrations.HEAD)
    assert _both(url) == (migrations.HEAD, migrations.HEAD)
    assert migrations.upgrade(url) == (migrations.HEAD, migrations.HEAD)


def test_several_revisions_are_refused_naming_them(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    Store(settings).open().close()
    engine = create_engine(settings.resolved_database_url())
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES ('0001')"))
    with (  # Alembic refuses it too
        engine.connect() as connection,
        pytest.raises(Exception, match="more than one head"),
    ):
        MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    for migrate in ("auto", "off"):
        with pytest.raises(StoreError, match=r"several revisions \(0001, 0002\)"):
            Store(settings.model_copy(update={"migrate": migrate})).open()


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys

    from bnncore_service.config import Settings

    async def start(migrate):
        from bnncore_service.inference_app import create_inference_app

        settings = Settings(data_dir=sys.argv[1], migrate=migrate)
        app = create_inference_app(settings)
        async with app.router.lifespan_context(app):
            return app.state.store.ping()

    if sys.argv[2] == "full":  # a full replica's store: it migrates
        from bnncore_service.store import Store

        Store(Settings(data_dir=sys.argv[1])).open().close()
        found = {"ping": []}
    else:
        found = {"ping": [asyncio.run(start(m)) for m in sys.argv[2:]]}
    found["modules"] = sorted({m.split(".")[0] for m in sys.modules})
    print(json.dumps(found))
    """
)


def _start_replica(directory: Path, *migrate: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), *migrate],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_a_replica_on_a_current_database_starts_without_alembic(
    tmp_path: Path,
) -> None:
    # A full replica's store migrates the empty database: Alembic and
    # SQLAlchemy are imported then (the oracle that the check below can fail).
    first = _start_replica(tmp_path, "full")
    assert {*MIGRATION_ONLY, "sqlalchemy"} <= set(first["modules"])  # type: ignore[arg-type]
    # A replica, whether it would migrate (auto) or not (off), only reads: it
    # imports neither Alembic nor SQLAlchemy, nor an unconfigured store's
    # drivers.
    again = _start_replica(tmp_path, "off", "auto")
    assert again["ping"] == [True, True]
    modules = set(again["modules"])  # type: ignore[arg-type]
    assert modules & {*MIGRATION_ONLY, *UNCONFIGURED, "sqlalchemy"} == set()
    assert "sqlite3" in modules  # the registry's reader: the test's oracle ran


def test_a_replica_on_an_empty_data_directory_starts_and_creates_nothing(
    tmp_path: Path,
) -> None:
    # An empty registry until a full replica migrates it; the replica never
    # creates the database (nor anything else) itself.
    data = tmp_path / "data"
    data.mkdir()
    found = _start_replica(data, "auto")
    assert found["ping"] == [True]
    assert list(data.iterdir()) == []
