"""Where the registry's definition and weights files live: a blob store.

One small interface, :class:`BlobStore`, with two implementations chosen by
``BNN_OBJECT_STORE_URL`` (:func:`open_blobs`):

- :class:`LocalBlobs` (unset, the default): files under ``BNN_DATA_DIR``,
  written atomically (temporary file, fsync, rename).
- :class:`S3Blobs` (``s3://bucket/prefix``): objects in any S3-compatible
  store (AWS S3, MinIO, Ceph RGW, GCS in interoperability mode) through
  boto3, with endpoint, region and credentials from the standard AWS
  environment variables (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``,
  ``AWS_REGION`` or ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ...).

A key is a relative path with the same layout in both:
``definitions/ab/<hash>.json`` and ``weights/12/<sha256>.safetensors``
(under the prefix in a bucket), so ``aws s3 sync data/definitions
s3://bucket/prefix/definitions`` moves a local registry's files. Objects are
content-addressed: a key always holds the same bytes. A put returns once the
object is durable (the file fsynced and renamed; the S3 PUT answered, and
for a file its size and checksum checked with a HEAD); the store commits the
database record that refers to it only after that.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BlobInfo",
    "BlobMissingError",
    "BlobStore",
    "LocalBlobs",
    "S3Blobs",
    "StoreError",
    "atomic_write",
    "open_blobs",
    "parse_s3_url",
]

S3_URL_FORM = "s3://bucket[/prefix] (bucket: 3-63 lowercase letters, digits, . and -)"
"""What ``BNN_OBJECT_STORE_URL`` accepts, in words."""

S3_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[^\s]*)?")
"""``s3://bucket[/prefix]``: group 1 the bucket, group 2 the prefix."""

_COPY_CHUNK = 1024 * 1024


class StoreError(RuntimeError):
    """The store is unavailable or its files are inconsistent."""


class BlobMissingError(StoreError):
    """No object under the key."""


@dataclass(frozen=True)
class BlobInfo:
    """One stored object.

    Attributes:
        key: Its key (``weights/12/1234....safetensors``).
        size: Bytes.
        modified: When it was last written or refreshed (POSIX seconds).
    """

    key: str
    size: int
    modified: float


def atomic_write(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class BlobStore(ABC):
    """Content-addressed objects under keys (see the module docstring).

    Attributes:
        location: Where the objects are, for messages (a directory or
            ``s3://bucket/prefix``).
    """

    location: str

    @abstractmethod
    def open(self) -> None:
        """Prepares the store (creates directories; checks that the bucket
        answers).

        Raises:
            StoreError: the store is unusable, saying why and what to check.
        """

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Releases connections."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Stores ``data`` under ``key``, durably. An object already there
        holds the same bytes (content-addressed): it may be kept, but its age
        is refreshed, so that a sweep does not take it for a leftover.

        Raises:
            StoreError: the write failed; nothing is visible under ``key``
                that was not there before.
        """

    @abstractmethod
    def put_file(self, key: str, path: Path, size: int, sha256: str) -> None:
        """Stores the finished file ``path`` (``size`` bytes, hex ``sha256``)
        under ``key`` as :meth:`put_bytes` does; the file may be moved (the
        local store renames it) or left in place.

        Raises:
            StoreError: the write failed or the stored object does not have
                the file's size or checksum.
        """

    @abstractmethod
    def read(self, key: str, limit: int) -> bytes:
        """The object's bytes, at most ``limit + 1`` of them (more than
        ``limit`` says the object is larger than the caller allows; the rest
        is never read).

        Raises:
            BlobMissingError: no object under ``key``.
            StoreError: the store failed.
        """

    @abstractmethod
    def stat(self, key: str) -> BlobInfo | None:
        """The object's size and age; ``None`` if there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Deletes the object (nothing happens if there is none)."""

    @abstractmethod
    def list(self, folder: str) -> Iterator[BlobInfo]:
        """Every object under ``folder/`` (``definitions`` or ``weights``)."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        return self.stat(key) is not None

    def local_path(self, key: str) -> Path | None:
        """The file holding the object, for a local store; else ``None``."""
        return None

    def describe(self, key: str) -> str:
        """Where the object is, for messages."""
        return f"{self.location}/{key}"


class LocalBlobs(BlobStore):
    """Files under a directory (the default; today's layout of the data dir).

    Args:
        root: The data directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def open(self) -> None:
        try:
            for folder in ("definitions", "weights"):
                (self.root / folder).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the data directory: {error}") from None

    def local_path(self, key: str) -> Path:
        return self.root / key

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self.local_path(key)
        try:
            os.utime(path)  # already there: refresh its age
        except FileNotFoundError:
            try:
                atomic_write(path, data)
            except OSError as error:
                raise StoreError(f"cannot write {key}: {error}") from None

    def put_file(self, key: str, path: Path, size: int, sha256: str) -> None:
        target = self.local_path(key)
        try:
            try:
                os.utime(target)  # the identical file is there: never rewritten
                return
            except FileNotFoundError:
                pass
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            _fsync_directory(target.parent)
        except OSError as error:
            raise StoreError(f"cannot write the weights file: {error}") from None

    def read(self, key: str, limit: int) -> bytes:
        try:
            with self.local_path(key).open("rb") as handle:
                return handle.read(limit + 1)
        except FileNotFoundError:
            raise BlobMissingError(f"{self.describe(key)} is missing") from None
        except OSError as error:
            raise StoreError(f"cannot read {self.describe(key)}: {error}") from None

    def stat(self, key: str) -> BlobInfo | None:
        try:
            status = self.local_path(key).stat()
        except OSError:
            return None
        return BlobInfo(key, status.st_size, status.st_mtime)

    def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def list(self, folder: str) -> Iterator[BlobInfo]:
        root = self.root / folder
        if not root.is_dir():
            return
        for path in root.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            info = self.stat(str(path.relative_to(self.root)))
            if info is not None:
                yield info


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → ``(bucket, prefix)`` (prefix without slashes
    at its ends; empty for the bucket's root).

    Raises:
        ValueError: not of that form.
    """
    match = S3_URL.fullmatch(url)
    if match is None or ".." in match.group(1):
        raise ValueError(f"BNN_OBJECT_STORE_URL={url!r}: expected {S3_URL_FORM}")
    return match.group(1), (match.group(2) or "").strip("/")


class S3Blobs(BlobStore):
    """Objects in an S3-compatible bucket, through boto3.

    Every write is one ``PutObject`` (atomic: readers see no object or the
    whole one), sent with ``Content-MD5`` and ``x-amz-checksum-sha256`` so
    that a store that checks them refuses damaged bytes; a file's object is
    then checked with a ``HeadObject`` (size, and the SHA-256 checksum when
    the store reports one). An object already there is written again (same
    bytes, fresh age) rather than tested first: one request either way.

    Args:
        url: ``s3://bucket[/prefix]``.
        client: A boto3 S3 client (default: one from the AWS environment).

    Raises:
        StoreError: boto3 is not installed, or the URL is malformed.
    """

    page_size = 1000
    """Keys per ``ListObjectsV2`` page of :meth:`list`."""

    def __init__(self, url: str, client: Any = None) -> None:
        try:
            self.bucket, self.prefix = parse_s3_url(url)
        except ValueError as error:
            raise StoreError(str(error)) from None
        self.location = f"s3://{self.bucket}" + (
            f"/{self.prefix}" if self.prefix else ""
        )
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise StoreError(
                f"BNN_OBJECT_STORE_URL={url} needs boto3, which is not installed: "
                "pip install 'bnncore[s3]'"
            ) from None
        self._client_error: type[Exception] = ClientError
        self._failures: tuple[type[Exception], ...] = (ClientError, BotoCoreError)
        if client is None:
            region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get(
                "AWS_REGION"
            )
            config = Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            )
            # The checksums are sent explicitly (below); botocore's automatic
            # ones (aws-chunked trailers, botocore >= 1.36) are what some
            # S3-compatible stores refuse, so they are only added where an
            # operation requires them. An older botocore adds none.
            with suppress(TypeError):
                config = config.merge(
                    Config(
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                    )
                )
            with _session_lock:  # creating clients is not thread-safe
                client = _boto3_session(boto3).client(
                    "s3", region_name=region or None, config=config
                )
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _code(self, error: Exception) -> str:
        response = getattr(error, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """Turns boto3's errors into a :class:`StoreError` saying ``what``
        failed, where, and the store's answer."""
        try:
            yield
        except self._failures as error:
            raise StoreError(
                f"object store {self.location}: {what} failed: {error}"
            ) from None

    def open(self) -> None:
        endpoint = getattr(self.client.meta, "endpoint_url", "")
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._client_error as error:
            code = self._code(error)
            if code in ("404", "NoSuchBucket"):
                reason = f"the bucket {self.bucket!r} does not exist at {endpoint}"
            elif code in ("403", "AccessDenied", "Forbidden"):
                reason = (
                    f"access to the bucket {self.bucket!r} at {endpoint} is denied "
                    "(check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the role, "
                    "and the bucket policy)"
                )
            else:
                reason = f"the bucket {self.bucket!r} at {endpoint} answered: {error}"
            raise StoreError(
                f"BNN_OBJECT_STORE_URL={self.location}: {reason}"
            ) from None
        except self._failures as error:
            raise StoreError(
                f"BNN_OBJECT_STORE_URL={self.location}: the object store at "
                f"{endpoint} is unreachable (check AWS_ENDPOINT_URL_S3 or "
                f"AWS_ENDPOINT_URL, and AWS credentials): {error}"
            ) from None

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    @staticmethod
    def _content_type(key: str) -> str:
        return (
            "application/json" if key.endswith(".json") else "application/octet-stream"
        )

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._failing(f"storing {key}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=self._content_type(key),
                ContentMD5=_b64(hashlib.md5(data, usedforsecurity=False).digest()),
                ChecksumSHA256=_b64(hashlib.sha256(data).digest()),
            )

    def put_file(self, key: str, path: Path, size: int, sha256: str) -> None:
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(_COPY_CHUNK):
                    md5.update(chunk)
        except OSError as error:
            raise StoreError(f"cannot read the uploaded file: {error}") from None
        checksum = _b64(bytes.fromhex(sha256))
        with self._failing(f"storing {key}"), path.open("rb") as body:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=body,
                ContentLength=size,
                ContentType=self._content_type(key),
                ContentMD5=_b64(md5.digest()),
                ChecksumSHA256=checksum,
                Metadata={"sha256": sha256},
            )
        with self._failing(f"checking {key}"):
            head = self.client.head_object(
                Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED"
            )
        stored_checksum = head.get("ChecksumSHA256")
        if head.get("ContentLength") != size or (
            stored_checksum and stored_checksum != checksum
        ):
            raise StoreError(
                f"object store {self.location}: {key} was stored as "
                f"{head.get('ContentLength')} bytes with checksum {stored_checksum}; "
                f"sent {size} bytes with checksum {checksum}"
            )

    def read(self, key: str, limit: int) -> bytes:
        with self._failing(f"reading {key}"):
            try:
                reply = self.client.get_object(
                    Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{limit}"
                )
            except self._client_error as error:
                code = self._code(error)
                if code in ("NoSuchKey", "404"):
                    raise BlobMissingError(f"{self.describe(key)} is missing") from None
                if code == "InvalidRange":  # an empty object
                    return b""
                raise
            body = reply["Body"]
            try:
                # A store that ignores Range still gives no more than this.
                return body.read(limit + 1)
            finally:
                body.close()

    def stat(self, key: str) -> BlobInfo | None:
        with self._failing(f"looking up {key}"):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except self._client_error as error:
                if self._code(error) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return BlobInfo(
            key, int(head["ContentLength"]), head["LastModified"].timestamp()
        )

    def delete(self, key: str) -> None:
        with self._failing(f"deleting {key}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, folder: str) -> Iterator[BlobInfo]:
        root = self._key(folder) + "/"
        skip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=root,
            PaginationConfig={"PageSize": self.page_size},
        )
        with self._failing(f"listing {folder}/"):
            for page in pages:
                for item in page.get("Contents", []):
                    yield BlobInfo(
                        item["Key"][skip:],
                        int(item["Size"]),
                        item["LastModified"].timestamp(),
                    )


_session_lock = threading.Lock()
_sessions: dict[str, Any] = {}


def _boto3_session(boto3: Any) -> Any:
    """One boto3 session per process (under ``_session_lock``): it caches the
    parsed service models, so a second client takes milliseconds instead of
    most of a second. Endpoint and region are read for each client; the
    credentials once, for the first (refreshable ones, such as a web identity
    role's, refresh themselves)."""
    if "default" not in _sessions:
        _sessions["default"] = boto3.session.Session()
    return _sessions["default"]


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def open_blobs(object_store_url: str | None, data_dir: Path) -> BlobStore:
    """The blob store of the settings: S3 when ``object_store_url`` is set,
    else the data directory (not opened yet: call :meth:`BlobStore.open`).

    Raises:
        StoreError: boto3 is missing or the URL is malformed.
    """
    if object_store_url:
        return S3Blobs(object_store_url)
    return LocalBlobs(data_dir)
