"""The runner's HTTP layer (``bnncore_service/server.py``) with either parser:
httptools (the default when installed) keeps every limit h11 had.

Each implementation gets one real ``python -m bnncore_service --http <impl>``
process (the inference role: it starts without TensorFlow) with small limits,
driven over raw sockets; the same assertions run against both. The checks
that only httptools passes (a complete head over the bound sent in one piece)
say so. ``BNN_WORKERS=2`` is checked on the process tree (/proc).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bnncore_service.config import Settings
from bnncore_service.server import (
    HAVE_HTTPTOOLS,
    LimitedH11Protocol,
    engine_threads,
    parse_args,
    uvicorn_options,
)

LIMITS = {
    "BNN_ROLE": "inference",
    "BNN_MAX_HEADER_BYTES": "2048",
    "BNN_HEADER_TIMEOUT_S": "2",
    "BNN_KEEP_ALIVE_S": "5",
    "BNN_MAX_CONNECTIONS": "4",
    "BNN_MAX_BODY_BYTES": "4096",
    "BNN_LOG_LEVEL": "warning",
}

IMPLEMENTATIONS = ["h11", "httptools"] if HAVE_HTTPTOOLS else ["h11"]


class Running:
    def __init__(self, port: int, http: str) -> None:
        self.port = port
        self.http = http

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    start_service: Any,
) -> Iterator[Running]:
    http = str(request.param)
    running = start_service(
        tmp_path_factory.mktemp("data"), env=LIMITS, args=("--http", http)
    )
    yield Running(running.port, http)
    running.stop()


def _read_until_closed(sock: socket.socket, timeout: float = 5) -> tuple[bytes, bool]:
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:
        return data, True


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else -1


def _get(path: str = "/v2/health/live", extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n"


def test_an_unfinished_head_over_the_limit_is_refused_and_closed(
    server: Running,
) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(8):  # 8 KiB of one header, never finished
                sock.sendall(b"a" * 1024)
                time.sleep(0.01)
        except OSError:
            pass  # closed while sending: refused
        reply, closed = _read_until_closed(sock)
    assert closed
    assert reply == b"" or _status(reply) in (400, 431), reply[:200]
    if server.http == "httptools":
        assert _status(reply) == 431
        body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        assert "2048 bytes (BNN_MAX_HEADER_BYTES)" in body["error"]


def test_a_complete_head_over_the_limit_in_one_piece(server: Running) -> None:
    """httptools counts the parsed head too: refused even when it arrives
    whole. (h11 only bounds an *incomplete* head in its buffer, so it serves
    this one: the bound it always had.)"""
    with server.connect() as sock:
        sock.sendall(_get(extra=b"X-Pad: " + b"a" * 3000 + b"\r\n"))
        reply, closed = _read_until_closed(sock, timeout=2)
    if server.http == "httptools":
        assert _status(reply) == 431 and closed, reply[:200]
    else:
        assert _status(reply) == 200, reply[:200]


def test_heads_under_the_limit_are_served_and_pipelined_in_order(
    server: Running,
) -> None:
    pad = b"X-Pad: " + b"a" * 1500 + b"\r\n"
    with server.connect() as sock:
        sock.sendall(
            _get(extra=pad) + _get("/v2/health/ready") + _get("/v2/no/such/route")
        )
        sock.settimeout(5)
        data = b""
        while data.count(b"HTTP/1.1 ") < 3:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    statuses = [int(part.split(b" ", 1)[0]) for part in data.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [200, 200, 404]


def test_a_slow_head_is_closed_after_the_header_timeout(server: Running) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        closed_after = None
        try:
            while time.monotonic() - started < 8:
                sock.sendall(b"X-Drip: 1\r\n")  # bytes do not extend the deadline
                sock.settimeout(0.1)
                try:
                    if sock.recv(100) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    pass
        except OSError:
            closed_after = time.monotonic() - started
    assert closed_after is not None, "never closed"
    assert 1.5 < closed_after < 4.5, closed_after


def test_a_slow_second_head_on_a_keep_alive_connection_is_closed(
    server: Running,
) -> None:
    with server.connect() as sock:
        sock.sendall(_get())
        sock.settimeout(5)
        first = b""
        while not first.endswith(b'{"status":"live"}'):
            chunk = sock.recv(65536)
            assert chunk, first
            first += chunk
        assert _status(first) == 200
        started = time.monotonic()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        reply, closed = _read_until_closed(sock, timeout=6)
    assert closed and reply == b"", reply[:200]
    assert time.monotonic() - started < 4.5


def test_a_body_over_the_limit_is_413_before_the_app(server: Running) -> None:
    body = b"x" * 5000
    reply = httpx.post(
        f"http://127.0.0.1:{server.port}/v2/models/m/infer",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 413
    assert "4096 bytes (BNN_MAX_BODY_BYTES)" in reply.json()["error"]


def test_slow_connections_at_the_cap_make_room_for_new_ones(server: Running) -> None:
    cap = int(LIMITS["BNN_MAX_CONNECTIONS"])
    slow = []
    try:
        for _ in range(2 * cap):
            sock = server.connect()
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        reply = httpx.get(f"http://127.0.0.1:{server.port}/v2/health/live", timeout=5)
        assert reply.status_code == 200
        closed = [_read_until_closed(sock, timeout=0.05)[1] for sock in slow]
        assert all(closed[: cap + 1]), closed  # the oldest made room
        assert not any(closed[cap + 1 :]), closed
    finally:
        for sock in slow:
            sock.close()


# --------------------------------------------------------------------------
# Choosing the implementation, and the worker processes
# --------------------------------------------------------------------------


def test_the_runner_picks_httptools_and_uvloop_when_installed() -> None:
    pytest.importorskip("httptools")
    pytest.importorskip("uvloop")
    options = uvicorn_options(Settings())
    assert options["loop"] == "uvloop"
    from bnncore_service.server import LimitedHttpToolsProtocol

    assert issubclass(options["http"], LimitedHttpToolsProtocol)
    assert options["http"].max_header_bytes == Settings().max_header_bytes
    fallback = uvicorn_options(Settings(), "h11", "asyncio")
    assert issubclass(fallback["http"], LimitedH11Protocol)
    assert fallback["loop"] == "asyncio"


def test_the_command_line_refuses_an_unknown_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--http", "h2"])
    err = capsys.readouterr().err
    assert "--http" in err and "'h2'" in err


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_two_workers_share_the_port_with_the_cores_split_between_them(
    tmp_path: Path, start_service: Any
) -> None:
    running = start_service(
        tmp_path / "data", env={**LIMITS, "BNN_WORKERS": "2"}, timeout=120
    )
    try:
        for _ in range(20):
            reply = httpx.get(f"{running.base}/v2/health/live", timeout=10)
            assert reply.status_code == 200
        workers = []
        for child in _children(running.process.pid):
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            variables = dict(
                item.decode().split("=", 1) for item in environ if b"=" in item
            )
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                workers.append(variables.get("BNN_ENGINE_THREADS"))
        cores = len(os.sched_getaffinity(0))
        assert workers == [str(max(1, cores // 2))] * 2
        assert engine_threads(2) == max(1, cores // 2)
    finally:
        running.stop()


def test_without_httptools_and_uvloop_the_runner_falls_back_to_h11_and_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bnncore_service import server

    monkeypatch.setattr(server, "HAVE_HTTPTOOLS", False)
    monkeypatch.setattr(server, "_installed", lambda module: False)
    options = uvicorn_options(Settings())
    assert issubclass(options["http"], LimitedH11Protocol)
    assert options["loop"] == "asyncio"
    with pytest.raises(ValueError, match="httptools is not installed"):
        server.http_implementation("httptools")
    with pytest.raises(ValueError, match="uvloop is not installed"):
        server.loop_implementation("uvloop")
