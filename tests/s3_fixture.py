"""An S3-compatible server for the tests: moto's server mode, on loopback.

The server is a separate process (``python -m moto.server``); the code under
test reaches it over HTTP with boto3, exactly as it reaches AWS S3 or MinIO,
through the standard variables of :attr:`S3Server.env`
(``AWS_ENDPOINT_URL_S3``, credentials, region).

Fixtures (registered for every test directory by ``tests/conftest.py``):

- ``s3_server`` (session, once per xdist worker): the running server.
- ``s3_url``: a fresh, empty bucket with the ``AWS_*`` variables of the
  server set in this process; the value for ``BNN_OBJECT_STORE_URL``
  (``s3://<bucket>/registry``).

:func:`start_s3_server` starts a server of one's own (to stop it mid-test).
Without moto the fixtures skip, naming the missing package, or fail when the
``CI`` variable is set.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from server_wait import wait_until_answering

__all__ = ["S3Server", "s3_server", "s3_url", "start_s3_server"]

_ISOLATED = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
"""Variables of the caller's environment that could point boto3 elsewhere."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    """A moto server process.

    Attributes:
        process: The server.
        port: Its port on 127.0.0.1.
        log: Its stdout and stderr.
    """

    process: subprocess.Popen
    port: int
    log: Path
    _stopped: bool = field(default=False, init=False)
    _client: Any = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables that send boto3 (in any process) here, with
        the developer's own AWS configuration files out of the way."""
        nowhere = str(Path(tempfile.gettempdir()) / "bnncore-tests-no-aws-config")
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": nowhere,
            "AWS_SHARED_CREDENTIALS_FILE": nowhere,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        """A boto3 S3 client of this server (for the tests' own checks; made
        once: a client takes a second to create)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
        return self._client

    def new_bucket(self, prefix: str = "registry") -> str:
        """Creates an empty bucket; ``s3://<bucket>/<prefix>``."""
        bucket = f"bnn-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Terminates the server (SIGKILL after 10 s); its objects are gone."""
        if self._stopped:
            return
        self._stopped = True
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _require_moto() -> None:
    missing = [
        name
        for name in ("moto", "flask", "boto3")
        if not importlib.util.find_spec(name)
    ]
    if not missing:
        return
    reason = (
        f"an S3 server for the tests needs {', '.join(missing)} "
        "(pip install -e '.[dev]': moto[server], boto3)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def start_s3_server(log_dir: Path, timeout: float = 30.0) -> S3Server:
    """Starts ``python -m moto.server`` on a free loopback port and waits
    until it answers. The caller stops it (:meth:`S3Server.stop`)."""
    _require_moto()
    port = _free_port()
    log = log_dir / f"moto-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = S3Server(process, port, log)
    wait_until_answering(
        process,
        f"{server.endpoint}/moto-api/",
        what="the moto server",
        timeout=timeout,
        log_tail=server.log_tail,
        stop=server.stop,
    )
    return server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3-compatible server for the session (of this worker)."""
    server = start_s3_server(tmp_path_factory.mktemp("s3-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/registry``, with this process's ``AWS_*``
    variables pointing at :func:`s3_server` (restored afterwards)."""
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server.new_bucket()
