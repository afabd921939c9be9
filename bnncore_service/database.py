"""Engines of the registry database: the URL checked, the driver found.

``BNN_DATABASE_URL`` is any SQLAlchemy URL; SQLite (the default) and
PostgreSQL through psycopg 3 (``postgresql+psycopg://user:pass@host/db``,
``pip install 'bnncore[postgres]'``) are the ones tested.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bnncore_service.database_url import DatabaseURLError

__all__ = ["DatabaseURLError", "check_url", "create", "is_postgres", "shown"]


def shown(url: str | URL) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable)"


def check_url(url: str) -> URL:
    """Parses the URL and imports its driver (cheap: nothing connects).

    ``postgresql://`` (no driver named) means ``postgresql+psycopg://``.

    Raises:
        DatabaseURLError: one line naming ``BNN_DATABASE_URL``, the URL
            received (password hidden) and what to do.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseURLError(
            "BNN_DATABASE_URL: not a database URL; expected e.g. "
            "'postgresql+psycopg://user:password@host:5432/database' or "
            "'sqlite:////path/registry.sqlite3'"
        ) from None
    if parsed.drivername == "postgresql":  # SQLAlchemy would pick psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        raise DatabaseURLError(
            f"BNN_DATABASE_URL={shown(parsed)!r}: unknown database "
            f"{parsed.drivername!r}; allowed: sqlite, postgresql+psycopg"
        ) from None
    except ImportError as error:
        if parsed.drivername == "postgresql+psycopg":
            advice = "pip install 'bnncore[postgres]'"
        elif parsed.get_backend_name() == "postgresql":
            advice = (
                "install it, or use postgresql+psycopg:// (pip install "
                "'bnncore[postgres]')"
            )
        else:
            advice = "install it"
        raise DatabaseURLError(
            f"BNN_DATABASE_URL={shown(parsed)!r} needs the {error.name or 'driver'} "
            f"module, which is not installed: {advice}"
        ) from None
    return parsed


def is_postgres(engine: Engine) -> bool:
    """Whether ``engine`` talks to PostgreSQL (advisory locks, transactional DDL)."""
    return engine.dialect.name == "postgresql"


def create(url: str, *, exclusive: bool = False) -> Engine:
    """An engine for the registry at ``url``.

    Args:
        exclusive: Make every SQLite transaction ``BEGIN IMMEDIATE`` (the
            write lock at once) with DDL inside it: what migrations need, so
            that two processes do not migrate one file at the same time and
            a failed migration rolls back. PostgreSQL needs nothing: its DDL
            is transactional, and ``bnncore_service.migrations`` takes an advisory
            lock.

    Raises:
        DatabaseURLError: see :func:`check_url`.
    """
    parsed = check_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True  # a restarted server: reconnect quietly
    engine = create_engine(parsed, **kwargs)
    if exclusive and engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
