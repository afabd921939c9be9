"""The server runner: ``python -m bnncore_service`` serves the app with the connection
limits of :class:`~bnncore_service.config.Settings`.

``uvicorn bnncore_service.main:app`` still works, but with uvicorn's defaults, which
leave a server open to a few cheap attacks: with httptools (picked by
``--http auto`` when installed) a request head of any size is read into
memory, and a connection that never finishes its request head is held for
ever. This runner serves with uvloop and httptools when they are installed
(``uvicorn[standard]``; else asyncio and h11) and passes:

* ``BNN_MAX_HEADER_BYTES``: a longer request head is refused and the
  connection closed; with httptools by counting the head's bytes
  (:class:`LimitedHttpToolsProtocol`, 431), with h11 through
  ``h11_max_incomplete_event_size`` (400);
* ``BNN_MAX_CONNECTIONS``: a new connection at the cap closes the one that
  has waited longest for its request head (:class:`ConnectionLimits`);
  when none is waiting, requests get 503 at once (:class:`ConnectionCap`);
* ``BNN_KEEP_ALIVE_S`` → ``timeout_keep_alive``;
* ``BNN_HEADER_TIMEOUT_S`` → a header-read deadline uvicorn does not have
  (see :class:`ConnectionLimits`).

``BNN_WORKERS`` worker processes share the port (uvicorn's supervisor
restarts one that dies); each has its own model cache, and the limits above
apply per process. Unless ``BNN_ENGINE_THREADS`` is set, each process's
packed engine gets ``cores // workers`` threads, so that the processes do not
oversubscribe the cores (docs/inference.md, "Workers and threads").

It configures logging (``BNN_LOG_FORMAT``, ``BNN_LOG_LEVEL``) before uvicorn
starts and passes ``log_config=None``, so that uvicorn's own lines, from
start-up to exit, have the service's format (``bnncore_service/logs.py``).

An inference replica (``BNN_ROLE=inference``) runs NumPy's OpenBLAS on one
thread unless the environment chooses (:func:`default_blas_threads`), and
imports its modules with the cyclic garbage collector off, then freezes them
(:func:`startup_objects_frozen`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from bnncore_service.errors import error_body
from bnncore_service.logs import client_address, configure_logging, log_event

if TYPE_CHECKING:
    from bnncore_service.config import Settings

__all__ = [
    "ConnectionCap",
    "ConnectionLimits",
    "LimitedH11Protocol",
    "LimitedHttpToolsProtocol",
    "default_blas_threads",
    "engine_threads",
    "inference_role",
    "main",
    "parse_args",
    "startup_objects_frozen",
    "uvicorn_options",
    "websocket_implementation",
    "worker_count",
]

HTTP_CHOICES = ("auto", "httptools", "h11")
LOOP_CHOICES = ("auto", "uvloop", "asyncio")
_HTTP_VARIABLE = "BNN_SERVER_HTTP"
"""How the runner tells its worker processes the HTTP implementation chosen
(``--http``); set by :func:`main`, not a setting."""


def _installed(module: str) -> bool:
    """Whether ``module`` imports (present on disk is not enough: a slim image
    may block it, and a broken build fails only at import)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def cores() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def worker_count(settings: Settings) -> int:
    """``BNN_WORKERS`` (default 1).

    Each process holds its own model cache (and, in a full replica,
    TensorFlow), and applies the connection limits to its own connections:
    docs/inference.md ("Workers and threads") gives the memory per process
    and why one process is the default.
    """
    return settings.workers


def engine_threads(workers: int) -> int:
    """Packed-engine threads per process: the cores shared by the workers, at
    least one (``BNN_ENGINE_THREADS`` overrides it)."""
    return max(1, cores() // workers)


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
"""The variables OpenBLAS reads its thread count from, in its order."""


def default_blas_threads(
    role: str, environ: MutableMapping[str, str] | None = None
) -> bool:
    """Sets ``OPENBLAS_NUM_THREADS=1`` for an inference replica whose
    environment sets none of :data:`BLAS_THREAD_VARIABLES` (a value set, even
    empty, is kept); call it before NumPy is imported.

    An inference replica never calls BLAS: the compiled core runs the plan on
    its own threads (``BNN_ENGINE_THREADS``), and nothing on its path
    multiplies NumPy matrices. NumPy's OpenBLAS would still start a pool of
    one thread per core when NumPy is imported, which costs CPU time at every
    start (docs/deployment.md). A full replica is left as it is.

    Args:
        role: ``BNN_ROLE`` (``full`` or ``inference``).
        environ: The environment to change (default ``os.environ``, which the
            worker processes inherit).

    Returns:
        Whether the variable was set.
    """
    environ = os.environ if environ is None else environ
    if role != "inference" or any(v in environ for v in BLAS_THREAD_VARIABLES):
        return False
    environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


class ConnectionLimits:
    """Connection limits for a uvicorn HTTP protocol (a mixin before
    ``H11Protocol`` or ``HttpToolsProtocol``): a deadline for each request
    head, and room made for new connections at the cap.

    * A connection must deliver a complete request head within
      :attr:`header_timeout_s` of being opened, or of the end of its previous
      response; otherwise it is closed (the slow-loris attack: many
      connections each sending a header byte now and then). Bytes that do
      arrive do not extend the deadline.
    * When a new connection would make more than :attr:`max_connections`,
      the connection that has waited longest for its request head is closed
      to make room, so that a flood of idle or slow connections cannot keep a
      health probe (or anyone) out. Connections with a request in progress
      are never closed for this; when every connection has one,
      :class:`ConnectionCap` answers 503.

    It relies on uvicorn's protocols calling ``on_response_complete`` and
    having ``transport``, ``loop`` and ``logger`` (uvicorn 0.2x to 0.55);
    ``tests/service/hostile/test_hostile_resources.py`` checks the behaviour
    against a real server with either implementation. :func:`uvicorn_options`
    makes the subclass that carries the settings and its own connection
    registry.
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024
    _open: set[Any] = set()  # noqa: RUF012 (per subclass)
    _waiting: dict[Any, None] = {}  # noqa: RUF012 (per subclass)

    _head_timer: asyncio.TimerHandle | None = None
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    logger: logging.Logger

    def _awaiting_head(self) -> bool:
        """Whether the connection waits for (the rest of) a request head."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._open.add(self)
        if self.active_connections() > self.max_connections:
            self._make_room()
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.discard(self)
        self._cancel_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    @classmethod
    def active_connections(cls) -> int:
        """Open connections of this class, those being closed not counted."""
        return sum(1 for p in cls._open if not p.transport.is_closing())

    def _make_room(self) -> None:
        """Closes the connection that has waited longest for a request head."""
        for other in self._waiting:
            if other is not self and not other.transport.is_closing():
                other._cancel_head_timer()
                other.transport.close()
                log_event(
                    self.logger,
                    logging.WARNING,
                    "connection_closed",
                    "{connections} connections (BNN_MAX_CONNECTIONS={limit}): "
                    "closed the one waiting longest for its request head",
                    connections=len(self._open),
                    limit=self.max_connections,
                    reason="connection_limit",
                )
                return

    def _watch_head(self) -> None:
        """Arms the deadline while a request head is awaited, else cancels it."""
        if self.transport.is_closing():
            self._cancel_head_timer()
        elif self._awaiting_head():
            if self._head_timer is None:  # a new wait: a fresh deadline
                self._head_timer = self.loop.call_later(
                    self.header_timeout_s, self._head_timed_out
                )
                self._waiting[self] = None
        else:
            self._cancel_head_timer()

    def _cancel_head_timer(self) -> None:
        self._waiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._waiting.pop(self, None)
        if not self.transport.is_closing():
            log_event(
                self.logger,
                logging.WARNING,
                "connection_closed",
                "closing a connection that sent no complete request head in "
                "{timeout_s} s (BNN_HEADER_TIMEOUT_S)",
                timeout_s=self.header_timeout_s,
                reason="header_timeout",
            )
            self.transport.close()


@functools.cache
def _limited_h11_protocol() -> type[ConnectionLimits]:
    """:class:`LimitedH11Protocol`, made at first use: h11 and uvicorn's h11
    protocol are imported only by a server that uses them (about 20 ms of
    CPU at start-up that a server running httptools does not spend)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(ConnectionLimits, H11Protocol):  # type: ignore[misc]
        """uvicorn's h11 protocol with :class:`ConnectionLimits`; the head size
        is bounded by h11 itself (``h11_max_incomplete_event_size``)."""

        def _awaiting_head(self) -> bool:
            return self.conn.their_state is h11.IDLE

    LimitedH11Protocol.__module__ = __name__
    LimitedH11Protocol.__qualname__ = "LimitedH11Protocol"
    return LimitedH11Protocol


if TYPE_CHECKING:
    LimitedH11Protocol: type[ConnectionLimits]


def __getattr__(name: str) -> Any:
    """``LimitedH11Protocol``, made on first use (:func:`_limited_h11_protocol`)."""
    if name == "LimitedH11Protocol":
        return _limited_h11_protocol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:  # uvicorn[standard]
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    HAVE_HTTPTOOLS = True
except ImportError:  # pragma: no cover - the h11 fallback
    HAVE_HTTPTOOLS = False


if HAVE_HTTPTOOLS:

    class LimitedHttpToolsProtocol(ConnectionLimits, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol with :class:`ConnectionLimits` and the
        request-head bound h11 has and httptools lacks.

        The head's size is counted two ways: the bytes received while a head is
        incomplete (an unfinished head larger than the bound is refused as soon
        as it is received, however it is sent), and the request line and
        header lines parsed (a complete head that arrived in one piece). Over
        :attr:`~ConnectionLimits.max_header_bytes`, the answer is 431 naming
        the limit and the connection is closed.
        """

        _reading_head = True  # between a request's end and its next head
        _head_received = 0  # bytes received while the head was incomplete
        _head_parsed = 0  # request line and header lines parsed
        _head_refused = False

        def _awaiting_head(self) -> bool:
            cycle = self.cycle
            return cycle is None or cycle.response_complete

        def data_received(self, data: bytes) -> None:
            if self._head_refused:
                return
            self._unset_keepalive_if_required()
            if self._reading_head:
                self._head_received += len(data)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError:
                if self._head_refused:
                    self._refuse_head()
                    return
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
                return
            if self._reading_head and self._head_received > self.max_header_bytes:
                self._head_refused = True
                self._refuse_head()
                return
            self._watch_head()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_parsed = 0

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            self._head_parsed += len(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            super().on_header(name, value)
            self._head_parsed += len(name) + len(value) + 4  # ": ", CRLF
            if self._head_parsed > self.max_header_bytes:
                self._head_refused = True
                raise ValueError("request head too large")  # stops the parser

        def on_headers_complete(self) -> None:
            self._reading_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._reading_head = True
            self._head_received = 0

        def _refuse_head(self) -> None:
            """431 naming the limit, and the connection closed."""
            log_event(
                self.logger,
                logging.WARNING,
                "connection_closed",
                "closing a connection whose request head exceeds {limit} bytes "
                "(BNN_MAX_HEADER_BYTES)",
                limit=self.max_header_bytes,
                reason="header_too_large",
            )
            body = error_body(
                "request head exceeds the limit of "
                f"{self.max_header_bytes} bytes (BNN_MAX_HEADER_BYTES)"
            )
            if not self.transport.is_closing():
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"content-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n"
                    b"connection: close\r\n\r\n" + body
                )
                self.transport.close()
            self._cancel_head_timer()


def http_implementation(choice: str = "auto") -> str:
    """``httptools`` or ``h11`` for ``--http`` (``auto``: httptools when
    installed).

    Raises:
        ValueError: an unknown choice, or httptools asked for but missing.
    """
    if choice not in HTTP_CHOICES:
        raise ValueError(
            f"Expected --http to be one of {', '.join(HTTP_CHOICES)}. "
            f"Received: {choice!r}."
        )
    available = HAVE_HTTPTOOLS
    if choice == "httptools" and not available:
        raise ValueError(
            "--http httptools: httptools is not installed "
            "(pip install 'uvicorn[standard]')"
        )
    if choice == "auto":
        return "httptools" if available else "h11"
    return choice


def loop_implementation(choice: str = "auto") -> str:
    """``uvloop`` or ``asyncio`` for ``--loop`` (``auto``: uvloop when
    installed).

    Raises:
        ValueError: an unknown choice, or uvloop asked for but missing.
    """
    if choice not in LOOP_CHOICES:
        raise ValueError(
            f"Expected --loop to be one of {', '.join(LOOP_CHOICES)}. "
            f"Received: {choice!r}."
        )
    if choice == "uvloop" and not _installed("uvloop"):
        raise ValueError(
            "--loop uvloop: uvloop is not installed (pip install 'uvicorn[standard]')"
        )
    if choice == "auto":
        return "uvloop" if _installed("uvloop") else "asyncio"
    return choice


class ConnectionCap:
    """ASGI wrapper answering 503 (``Retry-After: 1``, connection closed) while
    more than ``BNN_MAX_CONNECTIONS`` connections are open, which happens only
    when none of them is waiting for a request head (those are closed to make
    room, see :class:`ConnectionLimits`).

    uvicorn's own ``limit_concurrency`` counts connections until their close
    has completed, so right after room was made it can refuse a request the
    cap allows; it is kept only as a backstop at twice the cap.
    """

    def __init__(self, app: Any, protocol: type[ConnectionLimits]) -> None:
        self.app = app
        self.protocol = protocol

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            active = self.protocol.active_connections()
            cap = self.protocol.max_connections
            if active > cap:
                message = (
                    f"{active} connections are open, all with a request in "
                    f"progress (limit BNN_MAX_CONNECTIONS={cap}); retry later"
                )
                log_event(
                    logging.getLogger("service.requests"),
                    logging.WARNING,
                    "request_refused",
                    "{method} refused with 503: {connections} connections open",
                    method=str(scope.get("method", "")),
                    status=503,
                    client=client_address(scope),
                    connections=active,
                    reason=message,
                )
                body = error_body(message)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1"),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def protocol_class(settings: Settings, http: str = "auto") -> type[ConnectionLimits]:
    """The protocol class carrying the settings' limits and its own connection
    registry (one per app: :class:`ConnectionCap` reads the same registry)."""
    base: Any = (
        LimitedHttpToolsProtocol
        if http_implementation(http) == "httptools"
        else _limited_h11_protocol()
    )
    made: type[ConnectionLimits] = type(
        base.__name__,
        (base,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "max_connections": settings.max_connections,
            "max_header_bytes": settings.max_header_bytes,
            "_open": set(),
            "_waiting": {},
        },
    )
    return made


def websocket_implementation(settings: Settings) -> str:
    """uvicorn's ``ws``: ``none`` for an inference replica, which has no
    WebSocket route (an upgrade request is answered as plain HTTP, as when
    no WebSocket library is installed, e.g. in the runtime image), so that
    uvicorn does not import ``websockets`` at start-up (about 30 ms of CPU);
    ``auto`` for a full replica, as before."""
    return "none" if settings.role == "inference" else "auto"


def uvicorn_options(
    settings: Settings, http: str = "auto", loop: str = "auto"
) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that apply the connection limits
    (the app must be wrapped in :class:`ConnectionCap` with ``["http"]``).

    Args:
        settings: The service's settings (``BNN_*``).
        http: ``auto`` (httptools when installed), ``httptools`` or ``h11``.
        loop: ``auto`` (uvloop when installed), ``uvloop`` or ``asyncio``.
    """
    return {
        "http": protocol_class(settings, http),
        "loop": loop_implementation(loop),
        "ws": websocket_implementation(settings),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": 2 * settings.max_connections + 1,  # a backstop
        "timeout_keep_alive": settings.keep_alive_s,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m bnncore_service`` (``--host``, ``--port``,
    ``--log-level``, ``--http``, ``--loop``); everything else is a ``BNN_*``
    setting."""
    parser = argparse.ArgumentParser(
        prog="python -m bnncore_service",
        description="Serve the bnncore model service; settings are BNN_* "
        "environment variables (docs/deployment.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="default: 8000")
    parser.add_argument(
        "--log-level",
        default=None,
        help="uvicorn's log level (default: BNN_LOG_LEVEL, itself info)",
    )
    parser.add_argument(
        "--http",
        default="auto",
        choices=HTTP_CHOICES,
        help="HTTP parser (default auto: httptools when installed, else h11); "
        "the limits are the same with either",
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=LOOP_CHOICES,
        help="event loop (default auto: uvloop when installed, else asyncio)",
    )
    return parser.parse_args(argv)


def inference_role() -> bool:
    """Whether ``BNN_ROLE`` asks for an inference replica."""
    return os.environ.get("BNN_ROLE", "").strip().lower() == "inference"


@contextlib.contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """The cyclic garbage collector off inside (``python -m bnncore_service``
    turns it off from the start for an inference replica); then every object
    alive is frozen (``gc.freeze``) and the collector turned on.

    Importing the replica's modules makes about 90,000 objects the collector
    tracks, which live as long as the process, and it scanned them over and
    over (about 130 collections, some 65 ms of CPU time, a tenth of the
    start). Frozen, they are never scanned again. The cyclic garbage made
    while importing (some ten thousand objects, under 1 MB) is frozen with
    them rather than collected: a full collection would cost 30 ms.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _app_for_role() -> Any:
    """``bnncore_service.main:app`` (``BNN_ROLE=full``, the default) or
    ``bnncore_service.inference_app:app`` (``BNN_ROLE=inference``, which imports
    neither TensorFlow nor Keras, imported in :func:`startup_objects_frozen`);
    each reads the ``BNN_*`` settings and stops the start with one line on a
    bad value."""
    if inference_role():
        with startup_objects_frozen():
            from bnncore_service.inference_app import app as inference_app

        return inference_app
    from bnncore_service.main import app

    return app


@functools.cache
def _worker_app() -> tuple[Any, type[ConnectionLimits]]:
    """A worker process's app (wrapped in :class:`ConnectionCap`) and the
    protocol class whose connections it counts (made once per process)."""
    app = _app_for_role()
    settings = app.state.settings
    configure_logging(settings.log_format, settings.log_level)
    protocol = protocol_class(settings, os.environ.get(_HTTP_VARIABLE, "auto"))
    return ConnectionCap(app, protocol), protocol


def worker_app() -> Any:
    """The app of a worker process (``factory=True``: uvicorn calls it in
    each process it starts)."""
    return _worker_app()[0]


def worker_protocol(*args: Any, **kwargs: Any) -> Any:
    """A connection's protocol in a worker process (uvicorn's ``http``
    factory, by import string)."""
    return _worker_app()[1](*args, **kwargs)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bnncore_service [--host H] [--port P]``: serves
    ``bnncore_service.main:app``, or ``bnncore_service.inference_app:app``
    with ``BNN_ROLE=inference``, with the limits of the ``BNN_*`` settings,
    in ``BNN_WORKERS`` processes."""
    args = parse_args(argv)
    import uvicorn

    from bnncore_service.database_url import DatabaseURLError
    from bnncore_service.settings_env import SettingsError, read_settings

    try:
        # Without pydantic in the common case (an inference replica's start);
        # a full replica's app module reads its own Settings.
        settings = read_settings()
        if settings.role == "inference":  # reads the registry without SQLAlchemy
            from bnncore_service import store_reader

            store_reader.check_url(settings.resolved_database_url())
        else:
            from bnncore_service import database

            database.check_url(settings.resolved_database_url())
        http = http_implementation(args.http)
        loop = loop_implementation(args.loop)
    except (SettingsError, DatabaseURLError, ValueError) as exc:
        # One line, as the app modules do (their worker processes would
        # otherwise each stop on it, and be restarted).
        print(f"bnncore service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Before the app imports NumPy (the worker processes inherit it).
    default_blas_threads(settings.role)
    workers = worker_count(settings)
    # The packed engine reads it when it compiles a model (bnncore_runtime).
    os.environ.setdefault("BNN_ENGINE_THREADS", str(engine_threads(workers)))
    os.environ[_HTTP_VARIABLE] = http
    log_level = (args.log_level or settings.log_level).lower()
    # Every line of the process in the BNN_LOG_FORMAT, uvicorn's too (its own
    # logging configuration is not applied: log_config=None).
    if workers > 1:
        # Each worker process imports and builds the app itself; this one
        # imports none (the collector back on, see startup_objects_frozen).
        gc.enable()
        configure_logging(settings.log_format, settings.log_level)
        uvicorn.run(
            "bnncore_service.server:worker_app",
            factory=True,
            workers=workers,
            host=args.host,
            port=args.port,
            log_level=log_level,
            log_config=None,
            http="bnncore_service.server:worker_protocol",
            loop=loop,
            ws=websocket_implementation(settings),
            h11_max_incomplete_event_size=settings.max_header_bytes,
            limit_concurrency=2 * settings.max_connections + 1,
            timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        )
        return
    app = _app_for_role()
    settings = app.state.settings
    options = uvicorn_options(settings, http, loop)
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        ConnectionCap(app, options["http"]),
        host=args.host,
        port=args.port,
        log_level=log_level,
        log_config=None,
        **options,
    )
