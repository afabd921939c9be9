"""Hostile load against a real server process (issue 14, findings 4 to 6):
memory bounded by configuration, uploads, connections.

One ``python -m bnncore_service`` process (the command ``make serve`` runs) with small
limits serves every test of this module; each test names the attack it
replays from the red-team report, and checks the server afterwards:

* ``evictions``: 40 distinct dry runs through a cache of 4 models; the
  server's RSS after the first fill grows by less than twice the cache's
  worth of weights;
* ``upload_*``: uploads are refused on what their head says (unknown
  version, declared length over what the model can use, too many uploads at
  once) without the body being read, and a large body is streamed to disk
  (the server's peak RSS grows by a fraction of it);
* ``head_*`` and ``slow_*``: a request head over ``BNN_MAX_HEADER_BYTES`` gets
  400 and the connection is closed; a connection that never finishes its head
  is closed after ``BNN_HEADER_TIMEOUT_S``; connections beyond
  ``BNN_MAX_CONNECTIONS`` make room by closing the connection that has waited
  longest for its head, and get 503 when every connection has a request in
  progress.

RSS and peak RSS are read from ``/proc/<pid>/status`` (Linux); the peak is
reset by writing 5 to ``/proc/<pid>/clear_refs``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import safetensors.numpy

MB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads /proc (Linux)"
)

LIMITS = {
    "BNN_MODEL_CACHE_SIZE": "4",
    "BNN_MAX_CONNECTIONS": "12",
    "BNN_HEADER_TIMEOUT_S": "2",
    "BNN_KEEP_ALIVE_S": "1",
    "BNN_MAX_HEADER_BYTES": "16384",
    "BNN_MAX_CONCURRENT_UPLOADS": "2",
    "BNN_MAX_WEIGHTS_BYTES": str(300 * MB),
}


class Server:
    """The server process, its address and its memory figures."""

    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def status(self, field: str) -> int:
        """A ``/proc/<pid>/status`` figure in bytes (``VmRSS``, ``VmHWM``)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.process.pid}/status")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.base + path, timeout=30, **kwargs)

    def alive(self) -> bool:
        return (
            self.process.poll() is None
            and self.get("/v2/health/ready").status_code == 200
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_service) -> Iterator[Server]:
    running = start_service(
        tmp_path_factory.mktemp("data"), env=LIMITS, args=("--log-level", "warning")
    )
    yield Server(running.process, running.port)
    running.stop()


def _read_reply(sock: socket.socket, timeout: float = 10) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (or ``timeout``); whether it
    closed."""
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


def _register(server: Server, name: str, units: int, inputs: int) -> dict[str, Any]:
    definition = {
        "input_shape": [inputs],
        "layers": [{"type": "Dense", "units": units, "use_bias": False}],
    }
    reply = httpx.post(
        server.base + "/v2/models",
        json={"name": name, "definition": definition},
        timeout=60,
    )
    assert reply.status_code in (200, 201), reply.text
    return reply.json()


def _put_head(name: str, length: int, version: int = 1) -> bytes:
    return (
        f"PUT /v2/models/{name}/versions/{version}/weights HTTP/1.1\r\n"
        "Host: test\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


# --------------------------------------------------------------------------
# Finding 4: evicted models are freed
# --------------------------------------------------------------------------


def test_evictions_40_distinct_dry_runs_stay_within_the_cache_bound(
    server: Server,
) -> None:
    """Each dry run builds a distinct 4 MB model (1000 x 1000+i float32
    weights); the cache keeps 4. Before the fix every evicted model stayed
    allocated until a garbage collection happened to run."""
    model_bytes = 4 * 1000 * 1040
    cache_size = int(LIMITS["BNN_MODEL_CACHE_SIZE"])

    def dry_run(i: int) -> None:
        definition = {
            "input_shape": [1000],
            "layers": [{"type": "Dense", "units": 1000 + i}],
        }
        reply = httpx.post(server.base + "/v2/summary", json=definition, timeout=60)
        assert reply.status_code == 200, reply.text
        assert json.loads(reply.text)["totals"]["params"] > 1_000_000

    for i in range(cache_size):
        dry_run(i)
    after_fill = server.status("VmRSS")
    highest = after_fill
    for i in range(cache_size, 40):
        dry_run(i)
        highest = max(highest, server.status("VmRSS"))
    bound = 2 * cache_size * model_bytes + 16 * MB
    assert highest - after_fill < bound, (
        f"RSS grew by {(highest - after_fill) / MB:.0f} MiB over 36 evictions "
        f"(bound {bound / MB:.0f} MiB)"
    )
    assert server.alive()


# --------------------------------------------------------------------------
# Finding 5: uploads are checked before their body is read
# --------------------------------------------------------------------------


def test_upload_250mb_to_a_missing_model_is_404_before_the_body(server: Server) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(_put_head("nobody", 250 * MB) + b"\0" * 1000)
        reply, closed = _read_reply(sock, timeout=10)
        elapsed = time.monotonic() - started
    assert _status(reply) == 404, reply[:300]
    assert b"is not registered" in reply
    # ... and closed at once, so the rest of the body is not read either.
    assert closed and b"connection: close" in reply.lower()
    assert elapsed < 3, f"the 404 took {elapsed:.1f} s"
    assert server.alive()


def test_upload_declaring_more_than_the_model_can_use_is_413_before_the_body(
    server: Server,
) -> None:
    _register(server, "small", units=10, inputs=10)  # 100 params
    with server.connect() as sock:
        sock.sendall(_put_head("small", 100 * MB) + b"\0" * 1000)
        reply, _ = _read_reply(sock, timeout=10)
    assert _status(reply) == 413, reply[:300]
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    # 4 bytes a value + 1M values of extra tensors + an 8 MiB header + 8
    cap = 4 * (100 + 1_000_000) + 8 + 8 * MB
    assert f"{100 * MB:,} bytes" in body["error"]
    assert f"limit of {cap:,} bytes" in body["error"]
    assert "100 params" in body["error"]
    assert server.alive()


def test_uploads_beyond_the_concurrent_cap_are_503_with_retry_after(
    server: Server,
) -> None:
    _register(server, "busy", units=10, inputs=10)
    holders = [server.connect() for _ in range(2)]
    try:
        for sock in holders:  # two uploads that keep their slot (body unfinished)
            sock.sendall(_put_head("busy", 4 * MB) + b"\0" * 100)
        time.sleep(1.0)
        with server.connect() as sock:
            started = time.monotonic()
            sock.sendall(_put_head("busy", 4 * MB) + b"\0" * 100)
            reply, _ = _read_reply(sock, timeout=10)
            elapsed = time.monotonic() - started
        assert _status(reply) == 503, reply[:300]
        assert b"retry-after: 1" in reply.lower()
        assert b"BNN_MAX_CONCURRENT_UPLOADS=2" in reply
        assert elapsed < 3
        assert server.alive()  # other routes are not affected
    finally:
        for sock in holders:
            sock.close()
    time.sleep(0.5)  # the route sees the disconnect and frees the slot
    garbage = b"\x07" * 1000
    reply = httpx.put(
        server.base + "/v2/models/busy/versions/1/weights",
        content=garbage,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert reply.status_code == 400, reply.text  # received and checked again


def test_upload_of_40mb_is_streamed_to_disk_not_held_in_memory(
    server: Server, tmp_path: Path
) -> None:
    """A body the model's size allows (3000 x 3000 weights: up to 46 MiB) that
    is not a weights file: before the fix it was held twice in memory before
    being read; now it goes to a temporary file in 1 MiB writes, and its
    header alone refuses it."""
    _register(server, "large", units=3000, inputs=3000)
    body = b"\0" * (40 * MB)
    time.sleep(0.5)
    baseline = server.status("VmRSS")
    server.reset_peak()
    reply = httpx.put(
        server.base + "/v2/models/large/versions/1/weights",
        content=body,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    grown = server.status("VmHWM") - baseline
    assert reply.status_code == 400, reply.text
    assert "header" in reply.json()["error"]
    assert grown < 12 * MB, f"peak RSS grew by {grown / MB:.1f} MiB for a 40 MiB body"
    assert server.alive()


def test_upload_of_a_valid_36mb_file_peaks_at_twice_its_size(
    server: Server, tmp_path: Path
) -> None:
    """A valid plain float32 file for the 3000 x 3000 model: received in 1 MiB
    writes; checking it holds the file's bytes and its decoded tensors once
    each (before the fix: the body twice in the middleware and twice more to
    add the missing metadata, plus the tensors: 4x)."""
    _register(server, "valid", units=3000, inputs=3000)
    kernel = np.random.default_rng(0).standard_normal((3000, 3000)).astype(np.float32)
    path = tmp_path / "w.safetensors"
    safetensors.numpy.save_file({"dense/kernel": kernel}, str(path))
    body = path.read_bytes()
    # The version's model is built (and cached) by the registration.
    time.sleep(0.5)
    baseline = server.status("VmRSS")
    server.reset_peak()
    reply = httpx.put(
        server.base + "/v2/models/valid/versions/1/weights",
        content=body,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    grown = server.status("VmHWM") - baseline
    assert reply.status_code == 201, reply.text
    assert reply.json()["size"] == len(body)
    assert grown < 2.5 * len(body), (
        f"peak RSS grew by {grown / MB:.1f} MiB for a {len(body) / MB:.0f} MiB file"
    )
    assert server.alive()


# --------------------------------------------------------------------------
# Finding 6: request heads, slow and surplus connections
# --------------------------------------------------------------------------


def test_head_over_max_header_bytes_is_400_and_closed(server: Server) -> None:
    rss = server.status("VmRSS")
    with server.connect() as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:  # 1 MiB of one header, never finished
            for _ in range(64):
                sock.sendall(b"a" * 16384)
        except OSError:
            pass  # the server closed while we were sending: refused
        reply, closed = _read_reply(sock, timeout=10)
    assert closed
    assert reply == b"" or _status(reply) in (400, 431), reply[:200]
    assert server.status("VmRSS") - rss < 4 * MB
    assert server.alive()


def test_head_just_under_max_header_bytes_is_served(server: Server) -> None:
    reply = server.get("/v2/health/live", headers={"X-Pad": "a" * 12000})
    assert reply.status_code == 200


def test_slow_head_is_closed_after_the_header_timeout(server: Server) -> None:
    timeout = float(LIMITS["BNN_HEADER_TIMEOUT_S"])
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        closed_after = None
        try:
            while time.monotonic() - started < timeout + 5:
                sock.sendall(b"X-Drip: 1\r\n")  # a header line every 0.2 s
                sock.settimeout(0.2)
                try:
                    if sock.recv(100) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    pass
        except OSError:
            closed_after = time.monotonic() - started
    assert closed_after is not None, "the slow connection was never closed"
    assert timeout - 0.5 < closed_after < timeout + 2.5, closed_after
    assert server.alive()


def test_slow_second_head_on_a_keep_alive_connection_is_closed(server: Server) -> None:
    timeout = float(LIMITS["BNN_HEADER_TIMEOUT_S"])
    with server.connect() as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        first = sock.recv(65536)
        assert _status(first) == 200
        started = time.monotonic()
        closed_after = None
        try:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
            while time.monotonic() - started < timeout + 5:
                sock.sendall(b"X-Drip: 1\r\n")  # keeps the keep-alive timer off
                sock.settimeout(0.2)
                try:
                    if sock.recv(100) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    pass
        except OSError:
            closed_after = time.monotonic() - started
    assert closed_after is not None and closed_after < timeout + 2.5, closed_after


def test_slow_connections_flooding_max_connections_do_not_keep_health_out(
    server: Server,
) -> None:
    """At the cap, a new connection closes the one that has waited longest for
    its request head: 3 x BNN_MAX_CONNECTIONS slow connections, then health
    answers at once, and every slow connection but the newest cap-1 is gone."""
    cap = int(LIMITS["BNN_MAX_CONNECTIONS"])
    slow = []
    try:
        for _ in range(3 * cap):
            sock = server.connect()
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        started = time.monotonic()  # at once: while the room is being made
        reply = server.get("/v2/health/ready")
        assert reply.status_code == 200
        assert time.monotonic() - started < 1
        closed = [_read_reply(sock, timeout=0.05)[1] for sock in slow]
        assert all(closed[: 2 * cap + 1]), closed  # the oldest made room
        assert not any(closed[2 * cap + 1 :]), closed
    finally:
        for sock in slow:
            sock.close()


def test_connections_beyond_max_connections_with_requests_in_progress_get_503(
    server: Server,
) -> None:
    """Connections with a request in progress (a body still arriving) are never
    closed to make room: beyond the cap, a request gets 503 at once; once they
    finish, the server answers again."""
    cap = int(LIMITS["BNN_MAX_CONNECTIONS"])
    busy = []
    try:
        for _ in range(cap):
            sock = server.connect()
            sock.sendall(
                b"POST /v2/estimate HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            busy.append(sock)
        time.sleep(0.5)
        with server.connect() as sock:
            started = time.monotonic()
            sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            reply, _ = _read_reply(sock, timeout=5)
            assert _status(reply) == 503, reply[:200]
            assert time.monotonic() - started < 2
            assert b"retry-after: 1" in reply.lower()
            assert f"BNN_MAX_CONNECTIONS={cap}".encode() in reply
    finally:
        for sock in busy:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if server.get("/v2/health/ready").status_code == 200:
            break
        time.sleep(0.2)
    assert server.get("/v2/health/ready").status_code == 200
