"""A pytest plugin that runs service tests on PostgreSQL + S3 instead of the
embedded default (SQLite and local files).

Enable it with ``-p backend_plugin`` (``tests/`` is on ``sys.path``, as the
rootdir conftest imports ``pg_fixture`` and ``s3_fixture`` the same way)::

    pytest -p backend_plugin --backend-report=report.json tests/service/test_weights.py

For the session it starts one PostgreSQL (``tests/pg_fixture.py``) and one
moto S3 server (``tests/s3_fixture.py``), points this process's ``AWS_*``
variables at the latter, and wraps ``bnncore_service.config.Settings.__init__``: a
``Settings`` made without a ``database_url`` gets a new empty database, one
without an ``object_store_url`` a new empty bucket, both chosen per resolved
``data_dir``. So each app a test builds on a new directory starts from a
clean registry, as the tests assume, while a second app on the same
directory (a restart) finds the same registry again.

Servers started by the ``start_service`` fixture run in their own process,
outside the plugin; their tests are skipped with that reason.

``--backend-report=PATH`` writes, at the end, what the plugin made and what
the tests left in it (JSON: the rows of each database's registry tables and
the object keys of each bucket), so a caller can check the plugin was active.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_fixture import SUPERUSER, PostgresServer, find_binaries
from s3_fixture import _ISOLATED, S3Server, start_s3_server

__all__ = ["Backends"]


class Backends:
    """The session's servers and the database and bucket of each data dir."""

    def __init__(self, postgres: PostgresServer, s3: S3Server) -> None:
        self.postgres = postgres
        self.s3 = s3
        self.databases: dict[Path, str] = {}
        self.buckets: dict[Path, str] = {}

    def database_for(self, data_dir: Path) -> str:
        key = data_dir.resolve()
        if key not in self.databases:
            self.databases[key] = self.postgres.create_database()
        return self.databases[key]

    def bucket_for(self, data_dir: Path) -> str:
        key = data_dir.resolve()
        if key not in self.buckets:
            self.buckets[key] = self.s3.new_bucket()
        return self.buckets[key]

    def report(self) -> dict[str, Any]:
        """What the tests left behind: rows of ``model_versions`` and
        ``model_weights`` per database, object keys per bucket."""
        import psycopg

        rows: dict[str, dict[str, int]] = {}
        for url in sorted(self.databases.values()):
            name = url.rsplit("/", 1)[1]
            with psycopg.connect(
                f"host=127.0.0.1 port={self.postgres.port} user={SUPERUSER} "
                f"dbname={name}"
            ) as connection:
                counts = {}
                for table in ("model_versions", "model_weights"):
                    found = connection.execute(
                        "SELECT to_regclass(%s) IS NOT NULL", (table,)
                    ).fetchone()
                    if found and found[0]:
                        row = connection.execute(
                            f"SELECT count(*) FROM {table}"
                        ).fetchone()
                        counts[table] = int(row[0]) if row else 0
                rows[url] = counts
        objects: dict[str, list[str]] = {}
        client = self.s3.client()
        for url in sorted(self.buckets.values()):
            bucket = url.removeprefix("s3://").split("/", 1)[0]
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            objects[url] = [
                o["Key"] for page in pages for o in page.get("Contents", [])
            ]
        return {"databases": rows, "buckets": objects, "s3_endpoint": self.s3.endpoint}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend-report",
        default=None,
        help="backend_plugin: write the databases and buckets it made (JSON) here",
    )


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"backend_plugin needs {reason}")
    pytest.skip(f"backend_plugin needs {reason}")


@pytest.fixture(scope="session")
def _backends(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Backends]:
    bindir = find_binaries()
    if bindir is None:
        _missing("PostgreSQL (initdb/pg_ctl under /usr/lib/postgresql/*/bin)")
    assert bindir is not None
    postgres = PostgresServer(bindir)
    s3: S3Server | None = None
    saved = {name: os.environ.get(name) for name in (*_ISOLATED, *_AWS_NAMES)}
    try:
        postgres.start()
        s3 = start_s3_server(tmp_path_factory.mktemp("backend-s3"))
        for name in _ISOLATED:
            os.environ.pop(name, None)
        os.environ.update(s3.env)
        backends = Backends(postgres, s3)
        yield backends
        path = pytestconfig.getoption("--backend-report")
        if path:
            Path(path).write_text(json.dumps(backends.report(), indent=1))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if s3 is not None:
            s3.stop()
        postgres.stop()


_AWS_NAMES = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_EC2_METADATA_DISABLED",
)


@pytest.fixture(scope="session", autouse=True)
def _settings_on_backends(_backends: Backends) -> Iterator[None]:
    """Every ``Settings`` without a database or object store gets the
    session's PostgreSQL and S3 (a database and a bucket per data dir)."""
    from bnncore_service.config import Settings

    original = Settings.__init__

    def on_backends(self: Settings, **values: Any) -> None:
        original(self, **values)
        extra: dict[str, str] = {}
        if not self.database_url:
            extra["database_url"] = _backends.database_for(self.data_dir)
        if not self.object_store_url:
            extra["object_store_url"] = _backends.bucket_for(self.data_dir)
        if extra:
            # Validated like any other value (and keeps model_fields_set true).
            original(self, **values, **extra)

    Settings.__init__ = on_backends  # type: ignore[method-assign]
    try:
        yield
    finally:
        Settings.__init__ = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _skip_subprocess_servers(request: pytest.FixtureRequest) -> None:
    """A server in its own process would not see the wrapped ``Settings``."""
    if "start_service" in request.fixturenames:
        pytest.skip(
            "backend_plugin: start_service runs the service in a subprocess, "
            "outside the plugin's Settings wrapper (it would use SQLite)"
        )
