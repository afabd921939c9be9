"""What the registry hands out, without the database layer: the records of
versions and weights, the upload being received, the store's errors and the
layout of its files.

Both stores read and return these: :class:`~bnncore_service.store.Store`
(SQLAlchemy, the full service) and the read-only DB-API reader of inference
replicas (``bnncore_service/store_reader.py``), which must not import
SQLAlchemy. This module imports neither.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bnncore_service.blobs import BlobMissingError, BlobStore, StoreError

__all__ = [
    "MAX_DEFINITION_BYTES",
    "STORED_NAME",
    "TMP_PREFIX",
    "RegistryReads",
    "StoreError",
    "StoredWeights",
    "SweepReport",
    "Upload",
    "VersionRecord",
    "definition_key",
    "read_definition",
    "stored_weights",
    "version_record",
    "weights_key",
]

TMP_PREFIX = ".tmp-"
"""Prefix of every temporary file the store (or an upload) writes."""

MAX_DEFINITION_BYTES = 64 * 1024 * 1024
"""Most bytes read of a stored definition (a normalized definition within the
``BNN_MAX_*`` limits is far smaller)."""

STORED_NAME = {
    "definitions": re.compile(r"[0-9a-f]{64}\.json"),
    "weights": re.compile(r"[0-9a-f]{64}\.safetensors"),
}
"""The names of stored files, by folder (anything else is never swept)."""


def definition_key(content_hash: str) -> str:
    """The blob key of the definition stored under ``content_hash``."""
    return f"definitions/{content_hash[:2]}/{content_hash}.json"


def weights_key(sha256: str) -> str:
    """The blob key of the weights file whose sha256 is ``sha256``."""
    return f"weights/{sha256[:2]}/{sha256}.safetensors"


@dataclass(frozen=True)
class VersionRecord:
    """One registered version.

    Attributes:
        inputs / outputs: ``[{"name": ..., "shape": [-1, ...]}]``.
    """

    name: str
    version: int
    content_hash: str
    kind: str
    created_at: str
    params: int
    memory_bytes: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def version_record(
    name: str,
    version: int,
    content_hash: str,
    kind: str,
    created_at: str,
    params: int,
    memory_bytes: int,
    io_json: str,
) -> VersionRecord:
    """A record from the columns of its ``model_versions`` row."""
    io = json.loads(io_json)
    return VersionRecord(
        name=name,
        version=version,
        content_hash=content_hash,
        kind=kind,
        created_at=created_at,
        params=params,
        memory_bytes=memory_bytes,
        inputs=io["inputs"],
        outputs=io["outputs"],
    )


@dataclass(frozen=True)
class StoredWeights:
    """The uploaded weights of one version (see :meth:`Store.weights`).

    Attributes:
        sha256: Hex digest of the file: it identifies the weights (the model
            cache keys on it, so a new upload is never served stale).
        size: File size in bytes.
        key: Its key in the blob store (content-addressed, never rewritten
            with other bytes).
        blobs: The blob store holding it.
    """

    name: str
    version: int
    sha256: str
    size: int
    uploaded_at: str
    key: str
    blobs: BlobStore = field(repr=False, compare=False)

    @property
    def path(self) -> Path | None:
        """The local file, when the store is the data directory; else ``None``."""
        return self.blobs.local_path(self.key)

    def read(self) -> bytes:
        """The file's bytes, checked against the recorded size and sha256
        (never more than the recorded size plus one byte is read).

        Raises:
            StoreError: the file is gone (replaced by a concurrent upload, or
                the store was damaged; retrying reads the new one), or its
                bytes are not the ones recorded (corrupt: refused).
        """
        where = f"weights of {self.name!r} version {self.version}"
        try:
            data = self.blobs.read(self.key, self.size)
        except BlobMissingError:
            raise StoreError(
                f"{where} (sha256 {self.sha256[:12]}) missing at "
                f"{self.blobs.describe(self.key)}; retry"
            ) from None
        except StoreError as error:
            raise StoreError(f"{where} unreadable; retry: {error}") from None
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            shown = f"more than {self.size}" if len(data) > self.size else len(data)
            raise StoreError(
                f"{where}: {self.blobs.describe(self.key)} is corrupt: "
                f"{shown} bytes whose sha256 is not the recorded "
                f"{self.sha256} ({self.size} bytes); refused (upload the "
                "weights again)"
            )
        return data


def stored_weights(
    blobs: BlobStore,
    name: str,
    version: int,
    sha256: str,
    size: int,
    uploaded_at: str,
) -> StoredWeights:
    """The weights of a ``model_weights`` row, in ``blobs``."""
    return StoredWeights(
        name=name,
        version=version,
        sha256=sha256,
        size=size,
        uploaded_at=uploaded_at,
        key=weights_key(sha256),
        blobs=blobs,
    )


def read_definition(blobs: BlobStore, content_hash: str) -> dict[str, Any]:
    """The normalized definition stored under ``content_hash`` (at most
    :data:`MAX_DEFINITION_BYTES` are read).

    Raises:
        StoreError: it is missing, larger than that, or not JSON.
    """
    try:
        data = blobs.read(definition_key(content_hash), MAX_DEFINITION_BYTES)
        if len(data) > MAX_DEFINITION_BYTES:
            raise ValueError(f"larger than {MAX_DEFINITION_BYTES} bytes")
        loaded: dict[str, Any] = json.loads(data)
        return loaded
    except (StoreError, ValueError) as error:
        raise StoreError(
            f"stored definition {content_hash} unreadable: {error}"
        ) from error


class RegistryReads(Protocol):
    """The reads of the registry that inference needs: what both the full
    service's :class:`~bnncore_service.store.Store` and an inference replica's
    read-only :class:`~bnncore_service.store_reader.StoreReader` answer, with
    the same results and errors.

    Attributes:
        writes: Writes committed through this object (always 0 for a reader);
            other processes' writes show in :meth:`generation`.
    """

    writes: int

    def generation(self) -> int:
        """The registry's generation (grows with every committed write)."""
        ...

    def get(self, name: str, version: int | None = None) -> VersionRecord | None:
        """A version of ``name`` (the latest when ``version`` is None)."""
        ...

    def weights(self, name: str, version: int) -> StoredWeights | None:
        """The uploaded weights of ``(name, version)``; ``None``: initial."""
        ...

    def versions(self, name: str) -> list[int]:
        """The registered versions of ``name``, ascending."""
        ...

    def list_models(
        self, limit: int, offset: int
    ) -> tuple[list[tuple[str, list[int]]], int]:
        """A page of ``(name, versions)`` ordered by name, and the number of names."""
        ...

    def load_definition(self, content_hash: str) -> dict[str, Any]:
        """The normalized definition stored under ``content_hash``."""
        ...

    def ping(self) -> bool:
        """Whether the database answers."""
        ...

    def close(self) -> None:
        """Releases the database and object store connections."""
        ...


@dataclass(frozen=True)
class SweepReport:
    """What :meth:`Store.sweep` deleted (paths relative to the data directory).

    Attributes:
        temporary: ``.tmp-*`` files of interrupted writes.
        unreferenced: Definition and weights files no committed version
            refers to.
        kept_young: Candidates left alone because they are younger than the
            grace period.
        bytes: Total size of what was deleted.
    """

    temporary: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)
    kept_young: int = 0
    bytes: int = 0


class Upload:
    """An uploaded file being received into a temporary file of the data
    directory (``weights/.tmp-upload-*``), hashed as it is written.

    :meth:`Store.save_weights` moves it into place (a rename, no copy);
    :meth:`discard` deletes it. A crash leaves the temporary file, which the
    start-up sweep removes.
    """

    def __init__(self, directory: Path) -> None:
        """
        Raises:
            StoreError: the temporary file cannot be created.
        """
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                dir=directory, prefix=f"{TMP_PREFIX}upload-", suffix=".safetensors"
            )
        except OSError as error:
            raise StoreError(f"cannot write the weights file: {error}") from None
        self.path = Path(name)
        self.size = 0
        self._file: Any = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.sha256 = ""

    def write(self, data: bytes) -> None:
        """Appends ``data`` (blocking file I/O: call it off the event loop).

        Raises:
            StoreError: the disk refused the write (full, read-only).
        """
        try:
            self._file.write(data)
        except OSError as error:
            raise StoreError(f"cannot write the weights file: {error}") from None
        self._hash.update(data)
        self.size += len(data)

    def finish(self) -> str:
        """Flushes the file to disk and closes it; its sha256 (hex).

        Raises:
            StoreError: the disk refused the write.
        """
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as error:
            raise StoreError(f"cannot write the weights file: {error}") from None
        self.sha256 = self._hash.hexdigest()
        return self.sha256

    def discard(self) -> None:
        """Deletes the temporary file (nothing happens once it was saved)."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)
