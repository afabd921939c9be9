"""The registry read without SQLAlchemy: an inference replica's store.

An inference replica (``BNN_ROLE=inference``) only reads the registry: it
never registers, uploads, deletes, migrates or sweeps. :class:`StoreReader`
answers the reads it needs (:class:`~bnncore_service.records.RegistryReads`:
records, weights, versions, the generation, definitions, a ping) from the
same tables and files as the full service's
:class:`~bnncore_service.store.Store`, with the same results and errors,
through the Python DB-API directly: :mod:`sqlite3` (the standard library)
for the embedded default, psycopg for ``postgresql+psycopg://`` URLs. Neither
it nor its start-up imports SQLAlchemy or Alembic, and the runtime image
installs neither.

Every query is parameterized. SQLite is opened read-only (``mode=ro``: a
replica never creates or changes the file); PostgreSQL connections are in
autocommit, so no read holds a transaction open, and a connection the server
dropped is replaced once, quietly, as SQLAlchemy's ``pool_pre_ping`` does
for the full service.

The schema: the database must be at the revision this release reads
(:data:`HEAD`, checked by one query of Alembic's version table, as
``bnncore_service.migrations.current`` reads it). An older schema (or one
of a newer release) is refused at :meth:`StoreReader.open` with the full
service's messages: a replica cannot migrate; a full replica
(``BNN_MIGRATE=auto``) or ``bnncore db upgrade`` does. An empty database (a
new data directory, or a PostgreSQL database no full replica has migrated
yet) is an empty registry: every lookup finds nothing until the schema
appears, which the next lookup notices.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from bnncore_service import database_url
from bnncore_service.blobs import BlobStore, open_blobs
from bnncore_service.records import (
    StoredWeights,
    StoreError,
    VersionRecord,
    read_definition,
    stored_weights,
    version_record,
)

if TYPE_CHECKING:
    from bnncore_service.config import Settings

__all__ = ["HEAD", "KNOWN_REVISIONS", "StoreReader", "check_url", "open_reader"]

HEAD = "0002"
"""The schema revision this code reads (a test checks it is
``bnncore_service.migrations.HEAD``)."""

KNOWN_REVISIONS = ("0001", "0002")
"""Every revision of ``bnncore_service/migrations/versions`` (a test checks
them against Alembic's script directory): an older one is named as such, any
other was made by a newer release."""

VERSION_TABLE = "alembic_version"
LEGACY_TABLES = frozenset({"model_names", "model_versions", "model_weights"})
"""The tables of revision ``0001``, made before migrations existed."""

SQLITE_TIMEOUT_S = 30
"""How long a read waits for a writer's lock (as the full service's engine)."""

_KEPT_IDLE = 4
"""Idle connections kept for reuse (more are closed when returned)."""

_VERSION_COLUMNS = (
    "name, version, content_hash, kind, created_at, params, memory_bytes, io_json"
)

T = TypeVar("T")
Query = Callable[..., list[tuple[Any, ...]]]
"""``query(sql, *params)``: the rows of one parameterized statement."""


def check_url(url: str) -> None:
    """Checks ``BNN_DATABASE_URL`` for a replica (its form, and psycopg for
    PostgreSQL) without connecting: ``bnncore_service.database.check_url``
    without SQLAlchemy.

    Raises:
        DatabaseURLError: one line naming the variable, the URL (password
            hidden) and what is allowed.
    """
    database_url.check(url)


def open_reader(settings: Settings) -> StoreReader:
    """The read-only store of an inference replica, open.

    Raises:
        StoreError: see :meth:`StoreReader.open`.
    """
    return StoreReader(settings).open()


class StoreReader:
    """The registry, read only (open it with :meth:`open`, release it with
    :meth:`close`).

    Attributes:
        writes: Always 0: nothing is written through a reader (other
            processes' writes show in :meth:`generation`).
        blobs: Where the definition and weights files are.
    """

    writes = 0

    def __init__(self, settings: Settings) -> None:
        self.data_dir = Path(settings.data_dir).resolve()
        self.url = settings.resolved_database_url()
        self.blobs: BlobStore = open_blobs(settings.object_store_url, self.data_dir)
        self._target: database_url.DatabaseTarget | None = None
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._current = False  # the schema was found at HEAD
        self._errors: tuple[type[Exception], ...] = (sqlite3.OperationalError,)

    # -- connections ------------------------------------------------------------

    def open(self) -> StoreReader:
        """Checks that the database answers and is at :data:`HEAD` (or empty),
        and that the object store answers; creates nothing.

        Raises:
            StoreError: a malformed ``BNN_DATABASE_URL``, its driver missing,
                the database unreachable, or its schema not the one this
                release reads (one line saying what to do).
        """
        try:
            self._target = database_url.check(self.url)
        except database_url.DatabaseURLError as error:
            raise StoreError(str(error)) from None
        if self._target.kind == "postgresql":
            psycopg = _psycopg()
            self._errors = (psycopg.OperationalError, psycopg.InterfaceError)
        if self.blobs.local_path("") is None:
            self.blobs.open()  # a check that the bucket answers
        try:
            self._read(lambda query: None, None)  # checks the schema
        except StoreError:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Releases the database and object store connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            _close(connection)
        self.blobs.close()

    @property
    def target(self) -> database_url.DatabaseTarget:
        if self._target is None:
            raise StoreError("the store is not open")
        return self._target

    def _connect(self) -> Any:
        """A new connection, or ``None`` for a SQLite file that does not exist
        yet (an empty registry: a reader never creates it)."""
        target = self.target
        if target.kind == "postgresql":
            return _psycopg().connect(autocommit=True, **target.connect)
        path = os.path.abspath(target.path or "")
        if not os.path.exists(path):
            return None
        return sqlite3.connect(
            f"file:{quote(path)}?mode=ro",
            uri=True,
            timeout=SQLITE_TIMEOUT_S,
            isolation_level=None,  # autocommit: no read holds a transaction
            check_same_thread=False,  # handed between the worker threads
        )

    def _unreachable(self, error: Exception) -> StoreError:
        reason = str(error).strip().splitlines()
        return StoreError(
            f"cannot connect to the registry database {self.target.shown}: "
            f"{reason[0] if reason else type(error).__name__}"
        )

    def _read(self, work: Callable[[Query], T], empty: T) -> T:
        """``work(query)`` on one connection once the schema is at
        :data:`HEAD`; ``empty`` while the database is empty.

        A pooled connection the server has dropped is replaced and the work
        run again (reads only: running twice changes nothing).

        Raises:
            StoreError: the database is unreachable, or its schema is not
                this release's.
        """
        for attempt in range(2):
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            reused = connection is not None
            try:
                if connection is None:
                    connection = self._connect()
                if connection is None:
                    return empty
                result = self._run(connection, work, empty)
            except self._errors as error:
                if connection is not None:
                    _close(connection)
                if reused and attempt == 0:
                    continue
                raise self._unreachable(error) from None
            except BaseException:
                if connection is not None:
                    _close(connection)
                raise
            self._give_back(connection)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, connection: Any, work: Callable[[Query], T], empty: T) -> T:
        """``work`` on ``connection``, the schema checked first until it is
        found current."""

        def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
            return self._execute(connection, sql, params)

        if not self._current and not self._schema(query):
            return empty
        return work(query)

    def _execute(
        self, connection: Any, sql: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        if self.target.kind == "postgresql":
            sql = sql.replace("?", "%s")
        rows: list[tuple[Any, ...]] = connection.execute(sql, params).fetchall()
        return rows

    def _give_back(self, connection: Any) -> None:
        with self._lock:
            if len(self._idle) < _KEPT_IDLE:
                self._idle.append(connection)
                return
        _close(connection)

    # -- the schema ---------------------------------------------------------------

    def _tables(self, query: Query) -> set[str]:
        if self.target.kind == "postgresql":
            rows = query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        else:
            rows = query("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(row[0]) for row in rows}

    def _schema(self, query: Query) -> bool:
        """Whether the schema is at :data:`HEAD` (``False``: the database is
        empty; remembered once true).

        Raises:
            StoreError: another revision, several, or some of the registry's
                tables without a migration record: the full service's messages.
        """
        tables = self._tables(query)
        revision = None
        if VERSION_TABLE in tables:
            rows = query(f"SELECT version_num FROM {VERSION_TABLE}")
            found = [str(row[0]) for row in rows]
            if len(found) > 1:
                raise StoreError(
                    f"the registry database's {VERSION_TABLE} table holds several "
                    f"revisions ({', '.join(sorted(found))}); expected one: not a "
                    "database any release created"
                )
            revision = found[0] if found else None
        if revision == HEAD:
            self._current = True
            return True
        if revision is not None and revision not in KNOWN_REVISIONS:
            raise StoreError(
                f"the registry database is at revision {revision!r}, which this "
                f"bnncore does not know (its newest is {HEAD!r}): it was "
                "migrated by a newer release; run that release"
            )
        present = tables & LEGACY_TABLES
        if revision is None:
            if not present:
                return False  # empty: an empty registry until it is migrated
            if present != LEGACY_TABLES:
                raise StoreError(
                    "the registry database has some of the registry's tables "
                    f"({', '.join(sorted(present))}) but not "
                    f"{', '.join(sorted(LEGACY_TABLES - present))}, and no "
                    "migration record: not a database any release created"
                )
            revision = "0001 (not stamped: made before migrations)"
        raise StoreError(
            f"the registry database is at revision {revision}, this release "
            f"needs {HEAD}; run `bnncore db upgrade`, or start a full replica "
            "with BNN_MIGRATE=auto (an inference replica only reads)"
        )

    # -- reads (the RegistryReads of Store) ----------------------------------------

    def generation(self) -> int:
        """The registry's generation (``-1`` while the database is empty)."""

        def work(query: Query) -> int:
            rows = query("SELECT generation FROM registry_generation WHERE id = ?", 1)
            if len(rows) != 1:
                raise StoreError(
                    "the registry database's registry_generation table has "
                    f"{len(rows)} rows; expected one"
                )
            return int(rows[0][0])

        return self._read(work, -1)

    def ping(self) -> bool:
        """Whether the database answers (an empty SQLite registry does)."""
        try:
            self._read(lambda query: bool(query("SELECT 1")), True)
        except Exception:
            return False
        return True

    def get(self, name: str, version: int | None = None) -> VersionRecord | None:
        """A version of ``name`` (the latest when ``version`` is None)."""

        def work(query: Query) -> VersionRecord | None:
            if version is None:
                rows = query(
                    f"SELECT {_VERSION_COLUMNS} FROM model_versions "
                    "WHERE name = ? ORDER BY version DESC LIMIT 1",
                    name,
                )
            else:
                rows = query(
                    f"SELECT {_VERSION_COLUMNS} FROM model_versions "
                    "WHERE name = ? AND version = ?",
                    name,
                    version,
                )
            return version_record(*rows[0]) if rows else None

        return self._read(work, None)

    def versions(self, name: str) -> list[int]:
        """The registered versions of ``name``, ascending."""

        def work(query: Query) -> list[int]:
            rows = query(
                "SELECT version FROM model_versions WHERE name = ? ORDER BY version",
                name,
            )
            return [int(row[0]) for row in rows]

        return self._read(work, [])

    def list_models(
        self, limit: int, offset: int
    ) -> tuple[list[tuple[str, list[int]]], int]:
        """A page of ``(name, versions)`` ordered by name, and the number of names."""

        def work(query: Query) -> tuple[list[tuple[str, list[int]]], int]:
            total = int(query("SELECT COUNT(DISTINCT name) FROM model_versions")[0][0])
            names = [
                str(row[0])
                for row in query(
                    "SELECT DISTINCT name FROM model_versions ORDER BY name "
                    "LIMIT ? OFFSET ?",
                    limit,
                    offset,
                )
            ]
            page: dict[str, list[int]] = {name: [] for name in names}
            if names:
                marks = ", ".join("?" for _ in names)
                for row in query(
                    "SELECT name, version FROM model_versions "
                    f"WHERE name IN ({marks}) ORDER BY name, version",
                    *names,
                ):
                    page[row[0]].append(int(row[1]))
            return list(page.items()), total

        nothing: tuple[list[tuple[str, list[int]]], int] = ([], 0)
        return self._read(work, nothing)

    def weights(self, name: str, version: int) -> StoredWeights | None:
        """The uploaded weights of ``(name, version)``; ``None``: initial weights."""

        def work(query: Query) -> StoredWeights | None:
            rows = query(
                "SELECT name, version, sha256, size, uploaded_at FROM model_weights "
                "WHERE name = ? AND version = ?",
                name,
                version,
            )
            return stored_weights(self.blobs, *rows[0]) if rows else None

        return self._read(work, None)

    def load_definition(self, content_hash: str) -> dict[str, Any]:
        """The normalized definition stored under ``content_hash``.

        Raises:
            StoreError: it is missing, too large, or not JSON.
        """
        return read_definition(self.blobs, content_hash)


def _psycopg() -> Any:
    """The psycopg module (the ``postgres`` extra; :func:`check_url` has
    already said so at start-up if it is missing)."""
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "BNN_DATABASE_URL names PostgreSQL, whose driver psycopg is not "
            "installed: pip install 'bnncore[postgres]'"
        ) from None
    return psycopg


def _close(connection: Any) -> None:
    with contextlib.suppress(Exception):  # already broken: nothing to release
        connection.close()
