"""The model registry: metadata in SQL (SQLite by default), definitions as files.

Layout under ``BNN_DATA_DIR``::

    registry.sqlite3                 # default metadata database
    definitions/ab/abcdef....json    # normalized definitions, by content hash
    weights/12/1234....safetensors   # uploaded weights files, by sha256

With ``BNN_OBJECT_STORE_URL=s3://bucket/prefix`` the ``definitions/`` and
``weights/`` files are objects under that prefix instead, same keys
(``bnncore_service/blobs.py``); uploads are still received into a temporary file of
``BNN_DATA_DIR/weights/`` and put from there.

A registration first writes its definition file atomically (temporary file,
fsync, rename; content-addressed, so an existing file is never rewritten),
then commits one database transaction that allocates the version and inserts
its row. The commit is the only point where the new state becomes visible:
a crash before it leaves the old state (plus at most an unreferenced file),
never half of a version. Version numbers are never reused, even after a
delete.

The database's schema is Alembic's (``bnncore_service/migrations``): :meth:`Store.open`
migrates it to the newest revision, or with ``BNN_MIGRATE=off`` checks that it
is there. Every write also increments the one-row ``registry_generation``
counter in its own transaction, so a reader that finds the counter unchanged
knows nothing was registered, replaced or deleted since it last looked, by
this process or any other sharing the database (``bnncore_service/registry_view.py``).

What a crash leaves behind (``.tmp-*`` files, definition and weights files no
committed row refers to) is removed by :meth:`Store.sweep` at start-up, once
it is older than ``BNN_SWEEP_GRACE_S``: a younger file may belong to a write
another replica is making right now.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from bnncore_service import database
from bnncore_service.blobs import BlobInfo, BlobStore, LocalBlobs, open_blobs
from bnncore_service.blobs import atomic_write as atomic_write
from bnncore_service.config import Settings
from bnncore_service.records import (
    MAX_DEFINITION_BYTES,
    TMP_PREFIX,
    StoredWeights,
    StoreError,
    SweepReport,
    Upload,
    VersionRecord,
    definition_key,
    read_definition,
    stored_weights,
    version_record,
    weights_key,
)
from bnncore_service.records import STORED_NAME as _STORED_NAME

__all__ = [
    "MAX_DEFINITION_BYTES",
    "TMP_PREFIX",
    "Store",
    "StoreError",
    "StoredWeights",
    "SweepReport",
    "Upload",
    "VersionRecord",
]

log = logging.getLogger("bnncore_service.store")

_metadata = MetaData()
model_names = Table(
    "model_names",
    _metadata,
    Column("name", String(64), primary_key=True),
    Column("next_version", Integer, nullable=False),
)
model_versions = Table(
    "model_versions",
    _metadata,
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
model_weights = Table(  # uploaded weights: at most one row per version
    "model_weights",
    _metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("uploaded_at", String(40), nullable=False),
)
registry_generation = Table(  # one row (id 1), bumped by every write
    "registry_generation",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),
)


def _record(row: Any) -> VersionRecord:
    return version_record(
        row.name,
        row.version,
        row.content_hash,
        row.kind,
        row.created_at,
        row.params,
        row.memory_bytes,
        row.io_json,
    )


class Store:
    """The registry (open it with :meth:`open`, release it with :meth:`close`)."""

    def __init__(self, settings: Settings) -> None:
        self.data_dir = Path(settings.data_dir).resolve()
        self.url = settings.resolved_database_url()
        self.blobs: BlobStore = open_blobs(settings.object_store_url, self.data_dir)
        """Where the definition and weights files are (``bnncore_service/blobs.py``)."""
        self.upload_dir = self.data_dir / "weights"
        """Where uploads are received (a local temporary file in any case)."""
        self.migrate = settings.migrate
        self._lock = threading.Lock()
        self._engine: Any = None
        self.writes = 0
        """Writes committed through this instance (a cheap local signal for
        :class:`~bnncore_service.registry_view.RegistryView`; other processes' writes
        show in :meth:`generation`)."""

    def open(self) -> Store:
        """Creates the data directory, and migrates the database to the newest
        schema (``BNN_MIGRATE=auto``) or checks that it is there (``off``).

        Raises:
            StoreError: a malformed ``BNN_DATABASE_URL``, its driver missing,
                or the schema not current (one line saying what to do).
        """
        from bnncore_service import migrations

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.upload_dir.mkdir(exist_ok=True)
        self.blobs.open()  # its directories, or a check that the bucket answers
        try:
            if self.migrate == "auto":
                before, after = migrations.upgrade(self.url)
                if before != after:
                    log.info(
                        "registry database %s migrated: %s -> %s",
                        database.shown(self.url),
                        before or "empty",
                        after,
                    )
            self._engine = database.create(self.url)
            if self.migrate != "auto":
                migrations.require_head(self._engine)
        except (database.DatabaseURLError, migrations.MigrationError) as error:
            self.close()
            raise StoreError(str(error)) from None
        return self

    def close(self) -> None:
        """Releases the database and object store connections."""
        self.blobs.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            raise StoreError("the store is not open")
        return self._engine

    def generation(self) -> int:
        """The registry's generation: it grows with every committed write
        (registration, weights upload, delete) of any process."""
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(registry_generation.c.generation).where(
                        registry_generation.c.id == 1
                    )
                ).scalar_one()
            )

    @staticmethod
    def _bump(connection: Any) -> None:
        """Increments the generation inside a write's transaction (last, so
        that the row is locked only until the commit that follows)."""
        connection.execute(
            update(registry_generation)
            .where(registry_generation.c.id == 1)
            .values(generation=registry_generation.c.generation + 1)
        )

    def ping(self) -> bool:
        """Whether the database answers."""
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
            return True
        except Exception:
            return False

    # ------------------------------------------------------------------
    # Definitions (files)
    # ------------------------------------------------------------------

    _definition_key = staticmethod(definition_key)

    def _definition_path(self, content_hash: str) -> Path:
        """The definition's file in the data directory (the local store)."""
        return self.data_dir / self._definition_key(content_hash)

    def save_definition(self, content_hash: str, normalized: dict[str, Any]) -> None:
        """Stores a normalized definition under its hash (atomic, idempotent).

        Reused, its age is refreshed, so that a start-up sweep (of another
        replica) does not take it for a leftover.

        Raises:
            StoreError: the file or object could not be written.
        """
        text = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
        self.blobs.put_bytes(self._definition_key(content_hash), text.encode())

    def load_definition(self, content_hash: str) -> dict[str, Any]:
        """The normalized definition stored under ``content_hash`` (at most
        ``MAX_DEFINITION_BYTES`` are read).

        Raises:
            StoreError: it is missing, larger than that, or not JSON.
        """
        return read_definition(self.blobs, content_hash)

    # ------------------------------------------------------------------
    # Versions (database)
    # ------------------------------------------------------------------

    def find(self, name: str, content_hash: str) -> VersionRecord | None:
        """The version of ``name`` with this content hash, if registered."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(model_versions).where(
                    model_versions.c.name == name,
                    model_versions.c.content_hash == content_hash,
                )
            ).first()
        return None if row is None else _record(row)

    def register(
        self,
        name: str,
        content_hash: str,
        normalized: dict[str, Any],
        kind: str,
        params: int,
        memory_bytes: int,
        inputs: list[dict[str, Any]],
        outputs: list[dict[str, Any]],
    ) -> tuple[VersionRecord, bool]:
        """Registers a definition under ``name``.

        Returns:
            The version and whether it was created (``False``: this exact
            definition was already registered under ``name``).
        """
        io_json = json.dumps({"inputs": inputs, "outputs": outputs})
        for _attempt in range(5):
            existing = self.find(name, content_hash)
            if existing is not None:
                return existing, False
            try:
                with self._lock, self.engine.begin() as connection:
                    # The file is written first: the row that refers to it only
                    # becomes visible at commit.
                    self.save_definition(content_hash, normalized)
                    counter = connection.execute(
                        select(model_names.c.next_version).where(
                            model_names.c.name == name
                        )
                    ).scalar()
                    if counter is None:
                        connection.execute(
                            insert(model_names).values(name=name, next_version=2)
                        )
                        version = 1
                    else:
                        version = counter
                        connection.execute(
                            update(model_names)
                            .where(
                                model_names.c.name == name,
                                model_names.c.next_version == counter,
                            )
                            .values(next_version=counter + 1)
                        )
                    connection.execute(
                        insert(model_versions).values(
                            name=name,
                            version=version,
                            content_hash=content_hash,
                            kind=kind,
                            created_at=datetime.now(UTC).isoformat(),
                            params=params,
                            memory_bytes=memory_bytes,
                            io_json=io_json,
                        )
                    )
                    self._bump(connection)
            except IntegrityError:
                # Another process registered concurrently (the unique
                # constraints on name + version and name + content hash
                # refused the second row, which rolled back): look again.
                continue
            with self._lock:
                self.writes += 1
            # A sweep racing the commit may have taken the file for a leftover:
            # the row now refers to it, so it is written again if it went.
            self.save_definition(content_hash, normalized)
            record = self.get(name, version)
            assert record is not None
            return record, True
        raise StoreError(f"could not register {name!r}: too much contention")

    def get(self, name: str, version: int | None = None) -> VersionRecord | None:
        """A version of ``name`` (the latest when ``version`` is None)."""
        query = select(model_versions).where(model_versions.c.name == name)
        if version is None:
            query = query.order_by(model_versions.c.version.desc()).limit(1)
        else:
            query = query.where(model_versions.c.version == version)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _record(row)

    def versions(self, name: str) -> list[int]:
        """The registered versions of ``name``, ascending."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(model_versions.c.version)
                .where(model_versions.c.name == name)
                .order_by(model_versions.c.version)
            )
            return [row.version for row in rows]

    def list_models(
        self, limit: int, offset: int
    ) -> tuple[list[tuple[str, list[int]]], int]:
        """A page of ``(name, versions)`` ordered by name, and the number of names."""
        with self.engine.connect() as connection:
            total = connection.execute(
                select(func.count(func.distinct(model_versions.c.name)))
            ).scalar_one()
            names = [
                row.name
                for row in connection.execute(
                    select(model_versions.c.name)
                    .distinct()
                    .order_by(model_versions.c.name)
                    .limit(limit)
                    .offset(offset)
                )
            ]
            page: dict[str, list[int]] = {name: [] for name in names}
            if names:
                for row in connection.execute(
                    select(model_versions.c.name, model_versions.c.version)
                    .where(model_versions.c.name.in_(names))
                    .order_by(model_versions.c.name, model_versions.c.version)
                ):
                    page[row.name].append(row.version)
        return list(page.items()), total

    def delete(self, name: str, version: int) -> bool:
        """Deletes one version; ``False`` if it did not exist.

        Its definition file is removed after the commit when no other version
        refers to it.
        """
        with self._lock:
            with self.engine.begin() as connection:
                row = connection.execute(
                    select(model_versions.c.content_hash).where(
                        model_versions.c.name == name,
                        model_versions.c.version == version,
                    )
                ).first()
                if row is None:
                    return False
                connection.execute(
                    delete(model_versions).where(
                        model_versions.c.name == name,
                        model_versions.c.version == version,
                    )
                )
                still_used = connection.execute(
                    select(func.count()).where(
                        model_versions.c.content_hash == row.content_hash
                    )
                ).scalar_one()
                weights_sha = self._drop_weights(connection, name, version)
                self._bump(connection)
            self.writes += 1
            if not still_used:
                self._discard(self._definition_key(row.content_hash))
            self._unlink_unused_weights(weights_sha)
        return True

    # ------------------------------------------------------------------
    # Uploaded weights (files by sha256, one database row per version)
    # ------------------------------------------------------------------

    _weights_key = staticmethod(weights_key)

    def _stored(self, row: Any) -> StoredWeights:
        return stored_weights(
            self.blobs, row.name, row.version, row.sha256, row.size, row.uploaded_at
        )

    def _discard(self, key: str) -> None:
        """Deletes a file no committed row refers to any more (after the
        commit: a failure only leaves it for the start-up sweep)."""
        try:
            self.blobs.delete(key)
        except (StoreError, OSError) as error:
            log.warning("could not delete %s (left for the sweep): %s", key, error)

    def weights(self, name: str, version: int) -> StoredWeights | None:
        """The uploaded weights of ``(name, version)``; ``None``: initial weights.

        This is what serving calls: build the version's model, and when this
        returns weights, load ``.read()`` into it and cache it by ``.sha256``
        (``Runtime.built(plan, weights)`` does both).
        """
        with self.engine.connect() as connection:
            row = connection.execute(
                select(model_weights).where(
                    model_weights.c.name == name, model_weights.c.version == version
                )
            ).first()
        return None if row is None else self._stored(row)

    def new_upload(self) -> Upload:
        """A temporary file in the data directory to receive an upload into."""
        return Upload(self.data_dir / "weights")

    def save_weights(
        self, name: str, version: int, upload: Upload
    ) -> tuple[StoredWeights, str | None] | None:
        """Stores a received and checked upload for a version, replacing any
        previous one.

        The finished temporary file is renamed to its place under its sha256
        (it was fsynced: readers never see half a file), then one transaction
        points the version at it: readers see the previous weights until the
        commit and the new ones after it.

        Args:
            upload: The received file, :meth:`Upload.finish` called.

        Returns:
            The stored weights and the sha256 they replaced (``None``: the
            version had initial weights), or ``None`` if the version does not
            exist (deleted meanwhile).

        Raises:
            StoreError: the file could not be moved into place.
        """
        sha256 = upload.sha256
        key = self._weights_key(sha256)
        local = self.blobs.local_path(key) is not None
        if not local:
            # A network put may take seconds: not under the lock. The upload
            # stays in its temporary file, so if a delete of this process
            # took the object meanwhile, it is put again after the commit.
            self._place(upload, key)
        with self._lock:
            if local:
                self._place(upload, key)
            with self.engine.begin() as connection:
                exists = connection.execute(
                    select(model_versions.c.id).where(
                        model_versions.c.name == name,
                        model_versions.c.version == version,
                    )
                ).first()
                if exists is None:
                    previous = None
                else:
                    previous = self._drop_weights(connection, name, version)
                    connection.execute(
                        insert(model_weights).values(
                            name=name,
                            version=version,
                            sha256=sha256,
                            size=upload.size,
                            uploaded_at=datetime.now(UTC).isoformat(),
                        )
                    )
                    self._bump(connection)
            self.writes += 1
            if exists is None:
                self._unlink_unused_weights(sha256)
                upload.discard()
                return None
            if upload.path.exists() and not self.blobs.exists(key):
                # The identical file reused above was taken for a leftover by a
                # sweep racing the commit; the row now refers to it.
                self._place(upload, key)
            upload.discard()
            if previous != sha256:
                self._unlink_unused_weights(previous)
        stored = self.weights(name, version)
        assert stored is not None
        return stored, previous

    def _place(self, upload: Upload, key: str) -> None:
        """Stores the upload under ``key``: locally a rename, or a refreshed
        age for the identical file already there (content-addressed: never
        rewritten); in an object store a put, checked with a HEAD.

        Raises:
            StoreError: the write failed (nothing is committed then).
        """
        self.blobs.put_file(key, upload.path, upload.size, upload.sha256)

    def _drop_weights(self, connection: Any, name: str, version: int) -> str | None:
        """Deletes the weights row of a version (inside a transaction); its sha256."""
        previous = connection.execute(
            select(model_weights.c.sha256).where(
                model_weights.c.name == name, model_weights.c.version == version
            )
        ).scalar()
        if previous is not None:
            connection.execute(
                delete(model_weights).where(
                    model_weights.c.name == name, model_weights.c.version == version
                )
            )
        return previous

    def _unlink_unused_weights(self, sha256: str | None) -> None:
        """Removes a weights file no version refers to (after a commit)."""
        if sha256 is None:
            return
        with self.engine.connect() as connection:
            used = connection.execute(
                select(func.count()).where(model_weights.c.sha256 == sha256)
            ).scalar_one()
        if not used:
            self._discard(self._weights_key(sha256))

    # ------------------------------------------------------------------
    # Crash leftovers
    # ------------------------------------------------------------------

    def sweep(self, grace_s: float) -> SweepReport:
        """Deletes what interrupted writes left behind (called at start-up).

        Deleted, once their modification time is more than ``grace_s`` seconds
        old: ``.tmp-*`` files under ``definitions/`` and ``weights/``, and
        definition or weights files (named by their hash) that no committed
        version refers to, in the data directory or the object store (listed
        page by page; uploads are received locally in either case, so their
        temporaries are looked for in the data directory too). Anything else,
        and every file a committed row refers to, is never touched. A
        candidate's age is read again after the database is asked, just
        before deleting it, and a registration refreshes the age of a file it
        reuses, so a file that a concurrent registration picks up again is
        kept (and recreated after its commit if it went anyway: see
        :meth:`register`). A store that cannot be listed is skipped (logged).

        Returns:
            What was deleted.
        """
        now = time.time()
        temporary: list[tuple[BlobStore, BlobInfo]] = []
        stored: dict[str, list[tuple[str, BlobInfo]]] = {
            "definitions": [],
            "weights": [],
        }
        kept_young = 0
        sources: list[tuple[BlobStore, bool]] = [(self.blobs, False)]
        if self.blobs.local_path("") is None:
            sources.append((LocalBlobs(self.data_dir), True))  # temporaries only
        for blobs, temporaries_only in sources:
            for kind, pattern in _STORED_NAME.items():
                try:
                    listed = list(blobs.list(kind))
                except StoreError as error:
                    log.warning("sweep: skipped %s/%s: %s", blobs.location, kind, error)
                    continue
                for info in listed:
                    name = info.key.rsplit("/", 1)[-1]
                    is_tmp = name.startswith(TMP_PREFIX)
                    if not is_tmp and (temporaries_only or not pattern.fullmatch(name)):
                        continue
                    if now - info.modified <= grace_s:
                        kept_young += 1
                    elif is_tmp:
                        temporary.append((blobs, info))
                    else:
                        stored[kind].append((name.split(".")[0], info))
        column = {
            "definitions": model_versions.c.content_hash,
            "weights": model_weights.c.sha256,
        }
        unreferenced: list[tuple[BlobStore, BlobInfo]] = []
        with self.engine.connect() as connection:
            for kind, candidates in stored.items():
                for start in range(0, len(candidates), 500):
                    batch = candidates[start : start + 500]
                    used = {
                        row[0]
                        for row in connection.execute(
                            select(column[kind])
                            .distinct()
                            .where(column[kind].in_([h for h, _ in batch]))
                        )
                    }
                    unreferenced += [(self.blobs, i) for h, i in batch if h not in used]
        deleted: dict[str, list[str]] = {"temporary": [], "unreferenced": []}
        total = 0
        for bucket, found in (("temporary", temporary), ("unreferenced", unreferenced)):
            for blobs, info in found:
                try:
                    current = blobs.stat(info.key)
                    if current is None:
                        continue  # another replica swept it first
                    if time.time() - current.modified <= grace_s:
                        continue  # picked up again since it was listed
                    blobs.delete(info.key)
                except (StoreError, OSError) as error:
                    where = blobs.describe(info.key)
                    log.warning("sweep: could not delete %s: %s", where, error)
                    continue
                deleted[bucket].append(info.key)
                total += current.size
        report = SweepReport(
            temporary=deleted["temporary"],
            unreferenced=deleted["unreferenced"],
            kept_young=kept_young,
            bytes=total,
        )
        if report.temporary or report.unreferenced:
            shown = (report.temporary + report.unreferenced)[:20]
            more = len(report.temporary) + len(report.unreferenced) - len(shown)
            log.warning(
                "sweep: deleted %d temporary and %d unreferenced files (%d bytes) "
                "older than %g s left by interrupted writes: %s%s",
                len(report.temporary),
                len(report.unreferenced),
                report.bytes,
                grace_s,
                ", ".join(shown),
                f" and {more} more" if more > 0 else "",
            )
        return report
