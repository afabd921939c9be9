"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pg_fixture import postgres, postgres_url  # noqa: F401  (fixtures)
from s3_fixture import s3_server, s3_url  # noqa: F401  (fixtures)
from server_wait import wait_until_answering

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def unused_port() -> Callable[[], int]:
    """:func:`free_port`, for tests that need a port where nothing listens."""
    return free_port


@dataclass
class ServiceProcess:
    """A running service in its own process, on loopback.

    Attributes:
        process: The server process.
        port: Its port.
        log: The file holding its stdout and stderr.
    """

    process: subprocess.Popen
    port: int
    log: Path
    stopped: bool = field(default=False, init=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGINT (a clean shutdown), then SIGKILL after 20 s."""
        if self.stopped:
            return
        self.stopped = True
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


StartService = Callable[..., ServiceProcess]


@pytest.fixture(scope="session")
def start_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StartService]:
    """Starts the real service in a subprocess and waits until it is ready.

    ``start_service(data_dir, *, env=None, command="service", args=(),
    preexec_fn=None, timeout=120)``: ``command`` is ``"service"``
    (``python -m bnncore_service``, the runner with the connection limits) or
    ``"uvicorn"`` (``uvicorn bnncore_service.main:app``); ``env`` adds ``BNN_*``
    settings to an environment cleared of the caller's. Every process still
    running is stopped at the end of the session.
    """
    started: list[ServiceProcess] = []

    def start(
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        command: str = "service",
        args: Sequence[str] = (),
        preexec_fn: Callable[[], Any] | None = None,
        timeout: float = 120,
    ) -> ServiceProcess:
        port = free_port()
        variables = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
        variables["BNN_DATA_DIR"] = str(data_dir)
        variables.update(env or {})
        program = {
            "service": ["-m", "bnncore_service"],
            "uvicorn": ["-m", "uvicorn", "bnncore_service.main:app"],
        }[command]
        log = tmp_path_factory.mktemp("service-log") / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    *program,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    *args,
                ],
                cwd=ROOT,
                env=variables,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec_fn,
            )
        running = ServiceProcess(process, port, log)
        started.append(running)
        wait_until_answering(
            process,
            f"{running.base}/v2/health/ready",
            what="the service",
            timeout=timeout,
            log_tail=running.log_tail,
            stop=running.stop,
            interval=0.3,
        )
        return running

    yield start
    for running in started:
        running.stop()
