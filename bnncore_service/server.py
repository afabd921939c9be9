"""The server runner: ``python -m bnncore_service`` serves the app with the connection
limits of :class:`~bnncore_service.config.Settings`.

``uvicorn bnncore_service.main:app`` still works, but with uvicorn's defaults, which
leave a server open to a few cheap attacks: with httptools (picked by
``--http auto`` when installed) a request head of any size is read into
memory, and a connection that never finishes its request head is held for
ever. This runner passes:

* ``BNN_MAX_HEADER_BYTES`` → the h11 implementation with
  ``h11_max_incomplete_event_size``: a longer request head gets 400 and the
  connection is closed;
* ``BNN_MAX_CONNECTIONS``: a new connection at the cap closes the one that
  has waited longest for its request head (:class:`LimitedH11Protocol`);
  when none is waiting, requests get 503 at once (:class:`ConnectionCap`);
* ``BNN_KEEP_ALIVE_S`` → ``timeout_keep_alive``;
* ``BNN_HEADER_TIMEOUT_S`` → a header-read deadline uvicorn does not have
  (see :class:`LimitedH11Protocol`).

It configures logging (``BNN_LOG_FORMAT``, ``BNN_LOG_LEVEL``) before uvicorn
starts and passes ``log_config=None``, so that uvicorn's own lines, from
start-up to exit, have the service's format (``bnncore_service/logs.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from bnncore_service.config import Settings
from bnncore_service.logs import client_address, configure_logging, log_event

__all__ = [
    "ConnectionCap",
    "LimitedH11Protocol",
    "main",
    "parse_args",
    "uvicorn_options",
]


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head, and room
    made for new connections at the cap.

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

    It relies on uvicorn's ``H11Protocol`` keeping its ``h11.Connection`` as
    ``conn`` and calling ``on_response_complete`` (uvicorn 0.2x to 0.55);
    ``tests/service/hostile/test_hostile_resources.py`` checks the behaviour
    against a real server. :func:`uvicorn_options` makes the subclass that
    carries the settings and its own connection registry.
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    _open: set[LimitedH11Protocol] = set()  # noqa: RUF012 (per subclass)
    _waiting: dict[LimitedH11Protocol, None] = {}  # noqa: RUF012 (per subclass)

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._open.add(self)
        if self.active_connections() > self.max_connections:
            self._make_room()
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.discard(self)
        self._cancel_head_timer()
        super().connection_lost(exc)

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
        elif self.conn.their_state is h11.IDLE:
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


class ConnectionCap:
    """ASGI wrapper answering 503 (``Retry-After: 1``, connection closed) while
    more than ``BNN_MAX_CONNECTIONS`` connections are open, which happens only
    when none of them is waiting for a request head (those are closed to make
    room, see :class:`LimitedH11Protocol`).

    uvicorn's own ``limit_concurrency`` counts connections until their close
    has completed, so right after room was made it can refuse a request the
    cap allows; it is kept only as a backstop at twice the cap.
    """

    def __init__(self, app: Any, protocol: type[LimitedH11Protocol]) -> None:
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
                body = json.dumps({"error": message}).encode()
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


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that apply the connection limits
    (the app must be wrapped in :class:`ConnectionCap` with ``["http"]``).

    Args:
        settings: The service's settings (``BNN_*``).
    """
    protocol = type(
        "LimitedH11Protocol",
        (LimitedH11Protocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "max_connections": settings.max_connections,
            "_open": set(),
            "_waiting": {},
        },
    )
    return {
        "http": protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": 2 * settings.max_connections + 1,  # a backstop
        "timeout_keep_alive": settings.keep_alive_s,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m bnncore_service`` (``--host``, ``--port``,
    ``--log-level``); everything else is a ``BNN_*`` setting."""
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
    return parser.parse_args(argv)


def _app_for_role() -> Any:
    """``bnncore_service.main:app`` (``BNN_ROLE=full``, the default) or
    ``bnncore_service.inference_app:app`` (``BNN_ROLE=inference``, which imports
    neither TensorFlow nor Keras); each reads the ``BNN_*`` settings and stops
    the start with one line on a bad value."""
    if os.environ.get("BNN_ROLE", "").strip().lower() == "inference":
        from bnncore_service.inference_app import app as inference_app

        return inference_app
    from bnncore_service.main import app

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bnncore_service [--host H] [--port P]``: serves
    ``bnncore_service.main:app``,
    or ``bnncore_service.inference_app:app`` with ``BNN_ROLE=inference``, with the
    limits of the ``BNN_*`` settings (one worker; scale with replicas)."""
    args = parse_args(argv)
    import uvicorn

    app = _app_for_role()

    settings = app.state.settings
    options = uvicorn_options(settings)
    # Every line of the process in the BNN_LOG_FORMAT, uvicorn's too (its own
    # logging configuration is not applied: log_config=None).
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        ConnectionCap(app, options["http"]),
        host=args.host,
        port=args.port,
        log_level=(args.log_level or settings.log_level).lower(),
        log_config=None,
        **options,
    )
