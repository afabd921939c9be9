"""Schema migrations of the registry database (Alembic, configured here: no
``alembic.ini``).

:func:`upgrade` brings a database to the newest revision (:data:`HEAD`); the
service runs it at start-up (``BNN_MIGRATE=auto``), ``bnncore db upgrade``
runs it by hand. A database made before migrations existed (the three tables
of revision ``0001``, no ``alembic_version``) is recognised and stamped
``0001`` first, then migrated like any other. Concurrent upgrades (replicas
starting together) take turns: PostgreSQL through an advisory lock held by
the migration's transaction, SQLite through ``BEGIN IMMEDIATE``; either way a
failed migration rolls back whole.

Alembic (and its Mako templates) is imported only to stamp or migrate, or to
look up a revision this code does not name: reading a database's revision is
one query of Alembic's version table (:func:`current`), so a replica whose
database is current (``BNN_MIGRATE=off``, or ``auto`` with nothing to do)
starts without importing Alembic.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from bnncore_service import database

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = ["HEAD", "MigrationError", "current", "head", "require_head", "upgrade"]

HEAD = "0002"
"""The revision this code reads and writes (a test checks it is the head)."""

VERSION_TABLE = "alembic_version"
"""Alembic's table of the database's revision (its default name, one
``version_num`` column, one row on a linear history)."""

LEGACY_TABLES = frozenset({"model_names", "model_versions", "model_weights"})
"""The tables of revision ``0001``, as ``create_all`` made them before."""

_LOCK_KEY = 0x626E6E636F7265  # "bnncore": the advisory lock of migrations

# Alembic announces each of its plugins at INFO on every run: noise in the
# service's start-up log (its "Running upgrade ..." lines are kept). Set here,
# before Alembic is imported, so that it holds whenever Alembic runs.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


class MigrationError(RuntimeError):
    """The database cannot be brought to, or is not at, :data:`HEAD`."""


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision of the migration scripts."""
    found = _script().get_current_head()
    assert found is not None
    return found


def current(connection: Connection) -> str | None:
    """The database's revision (``None``: never migrated), read from Alembic's
    version table with one query, as Alembic's
    ``MigrationContext.get_current_revision`` reads it.

    Raises:
        MigrationError: the table holds more than one revision (branches:
            no release of this code made it).
    """
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    found = [
        str(row[0])
        for row in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    ]
    if len(found) > 1:
        raise MigrationError(
            f"the registry database's {VERSION_TABLE} table holds several "
            f"revisions ({', '.join(sorted(found))}); expected one: not a "
            "database any release created"
        )
    return found[0] if found else None


def _recognise(connection: Connection) -> str | None:
    """The revision of the schema, stamping a pre-migration database ``0001``.

    Raises:
        MigrationError: registry tables exist but not as any release made them,
            or the revision is unknown to this code (made by a newer one).
    """
    revision = current(connection)
    if revision == HEAD:  # the common case: no need to read the scripts
        return revision
    if revision is not None:
        try:
            _script().get_revision(revision)
        except Exception:
            raise MigrationError(
                f"the registry database is at revision {revision!r}, which this "
                f"bnncore does not know (its newest is {head()!r}): it was "
                "migrated by a newer release; run that release"
            ) from None
        return revision
    tables = set(inspect(connection).get_table_names())
    present = tables & LEGACY_TABLES
    if not present:
        return None
    if present != LEGACY_TABLES:
        raise MigrationError(
            "the registry database has some of the registry's tables "
            f"({', '.join(sorted(present))}) but not "
            f"{', '.join(sorted(LEGACY_TABLES - present))}, and no migration "
            "record: not a database any release created"
        )
    from alembic import command

    command.stamp(_config(connection), "0001")
    return "0001"


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrates the database at ``url`` to :data:`HEAD` (idempotent).

    Returns:
        The revision before (``None``: an empty database) and after.

    Raises:
        MigrationError: see :func:`_recognise`; or a migration failed (its
            transaction is rolled back).
        bnncore_service.database.DatabaseURLError: bad URL or missing driver.
    """
    engine = database.create(url, exclusive=True)
    try:  # a server that does not answer: one line, not a migration error
        engine.connect().close()
    except OperationalError as error:
        engine.dispose()
        raise MigrationError(_unreachable(url, error)) from None
    try:
        with engine.begin() as connection:
            if database.is_postgres(engine):
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
                )
            before = _recognise(connection)
            if before != HEAD:
                from alembic import command

                command.upgrade(_config(connection), "head")
            after = current(connection)
    finally:
        engine.dispose()
    assert after is not None
    return before, after


def _unreachable(url: str, error: OperationalError) -> str:
    reason = str(error.orig or error).strip().splitlines()
    return (
        f"cannot connect to the registry database {database.shown(url)}: "
        f"{reason[0] if reason else type(error).__name__}"
    )


def require_head(engine: Engine) -> None:
    """Checks that the database is at :data:`HEAD` (``BNN_MIGRATE=off``).

    Raises:
        MigrationError: naming the revision found and ``bnncore db upgrade``.
    """
    try:
        opened = engine.connect()
    except OperationalError as error:
        raise MigrationError(_unreachable(str(engine.url), error)) from None
    with opened as connection:
        found = current(connection)
        tables = set(inspect(connection).get_table_names())
        if found is None and tables >= LEGACY_TABLES:
            found = "0001 (not stamped: made before migrations)"
    if found != HEAD:
        raise MigrationError(
            f"the registry database is at revision {found or 'none (empty)'}, "
            f"this release needs {HEAD}; run `bnncore db upgrade` (or start "
            "with BNN_MIGRATE=auto)"
        )
