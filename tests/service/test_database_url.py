"""``BNN_DATABASE_URL`` read without SQLAlchemy (``bnncore_service.database_url``).

Oracle: SQLAlchemy, as the full service reads the same URL: ``make_url`` and
the psycopg dialect's ``create_connect_args`` (the keyword arguments psycopg
receives), and the SQLite file the pysqlite dialect opens.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bnncore_service import database, database_url
from bnncore_service.database_url import DatabaseURLError

ROOT = Path(__file__).resolve().parents[2]


def _sqlalchemy_connect_args(url: str) -> dict[str, Any]:
    parsed = database.check_url(url)
    _args, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    return dict(kwargs)


POSTGRES = [
    pytest.param("postgresql+psycopg://bnn@127.0.0.1:5432/registry", id="plain"),
    pytest.param("postgresql://bnn@127.0.0.1:5432/registry", id="no-driver"),
    pytest.param(
        "postgresql+psycopg://u%40ser:p%40ss%3Aw%2Fo%25rd@db.example:6543/reg%2Fistry",
        id="quoted",
    ),
    pytest.param("postgresql+psycopg://bnn:@db/registry", id="empty-password"),
    pytest.param("postgresql+psycopg://bnn:pw@[::1]:5432/registry", id="ipv6"),
    pytest.param("postgresql+psycopg:///registry", id="socket"),
    pytest.param("postgresql+psycopg://db", id="host-only"),
    pytest.param(
        "postgresql+psycopg://bnn:pw@db/registry?sslmode=require&connect_timeout=5"
        "&application_name=bnn%20replica",
        id="options",
    ),
]


@pytest.mark.parametrize("url", POSTGRES)
def test_postgres_urls_give_psycopg_what_sqlalchemy_gives_it(url: str) -> None:
    pytest.importorskip("psycopg")
    target = database_url.check(url)
    assert target.kind == "postgresql"
    assert target.connect == _sqlalchemy_connect_args(url)
    password = make_url(url).password
    if password:
        assert password not in target.shown and "***" in target.shown


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////srv/bnn/registry.sqlite3",
        "sqlite:///relative/registry.sqlite3",
        "sqlite+pysqlite:////tmp/a b/registry.sqlite3",
    ],
)
def test_sqlite_urls_name_the_file_sqlalchemy_opens(url: str) -> None:
    target = database_url.check(url)
    assert target.kind == "sqlite"
    assert target.path == make_url(url).database


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://u:secret@db/registry", "unknown database 'mysql'"),
        ("postgresql+psycopg2://u:secret@db/registry", "unknown database"),
        ("sqlite://", "an in-memory SQLite database"),
        ("sqlite:///:memory:?cache=shared", "a SQLite URL takes no options"),
        ("sqlite://u:secret@host/file", "a SQLite URL names no user, host or port"),
        ("postgresql://u:secret@db:99999/registry", "port '99999' is not a number"),
        ("postgresql://u:secret@db:five/registry", "port 'five' is not a number"),
        ("postgresql://u:secret@db/r?sslmode=a&sslmode=b", "'sslmode' is given twice"),
        ("postgresql://u:secret@db/r?user=other", "'user' is given twice"),
    ],
)
def test_other_forms_are_refused_naming_the_variable(url: str, why: str) -> None:
    with pytest.raises(DatabaseURLError) as caught:
        database_url.parse(url)
    message = str(caught.value)
    assert message.startswith("BNN_DATABASE_URL='"), message
    assert why in message and "secret" not in message
    assert "an inference replica reads 'sqlite:///" in message


@pytest.mark.parametrize("url", ["", "registry.sqlite3", "://x", "postgres:/db"])
def test_what_is_not_a_url_is_refused(url: str) -> None:
    with pytest.raises(DatabaseURLError, match=r"^BNN_DATABASE_URL: not a database"):
        database_url.parse(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://bnn:secret@127.0.0.1:5432/registry",
        "postgresql://bnn@db/registry?sslmode=require",
        "sqlite:////srv/registry.sqlite3",
    ],
)
def test_shown_hides_the_password_as_the_full_service_does(url: str) -> None:
    assert database_url.shown(url) == database.shown(url)


def test_the_error_is_the_full_services() -> None:
    # One exception class: the full service's handlers catch the replica's.
    assert database.DatabaseURLError is DatabaseURLError


def test_a_replica_with_an_unreadable_url_stops_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    env.update(
        BNN_DATA_DIR=str(tmp_path / "data"),
        BNN_ROLE="inference",
        BNN_DATABASE_URL="mysql://bnn:secret@db/registry",
    )
    done = subprocess.run(
        [sys.executable, "-m", "bnncore_service", "--port", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
    ours = [line for line in done.stderr.splitlines() if "BNN_" in line]
    assert ours == [
        "bnncore service: BNN_DATABASE_URL='mysql://bnn:***@db/registry': unknown "
        "database 'mysql'; an inference replica reads "
        f"{database_url.ALLOWED}"
    ], done.stderr
    assert not (tmp_path / "data").exists()
