"""Large request bodies read by their route, after its checks, into a file.

:class:`DeferredBody` sits between authentication and the body size limit
(``bnncore_service.limits.BodySizeLimit``, which buffers every body it passes). For
the routes it names (weights uploads) it leaves the body unread: the inner
app sees an empty body, and the route finds the real ``receive`` with
:func:`body_stream`. The route checks everything that does not need the body
(name, version, content type, declared length, concurrent uploads) and only
then streams the body, chunk by chunk, into a temporary file with
:func:`receive_into`, enforcing its size cap as the bytes arrive. A reply
sent before the whole body arrived says ``Connection: close``, so the server
closes the connection instead of reading the rest.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from bnncore_service.store import Upload

__all__ = ["DeferredBody", "TooLargeError", "body_stream", "receive_into"]

Scope = dict[str, Any]

_STATE_KEY = "deferred_receive"
_WRITE_BYTES = 1024 * 1024
"""Received bytes gathered before one write (off the event loop)."""


class TooLargeError(ValueError):
    """The body grew past its cap while it was received (→ 413)."""


class DeferredBody:
    """ASGI middleware leaving the body of matching requests for the route.

    Args:
        app: The inner app.
        routes: ``(method, path regex)`` pairs whose body is deferred.
    """

    def __init__(self, app: Any, routes: Sequence[tuple[str, str]]) -> None:
        self.app = app
        self.routes = [(method, re.compile(path)) for method, path in routes]

    def _matches(self, scope: Scope) -> bool:
        return any(
            scope.get("method") == method and pattern.fullmatch(scope["path"])
            for method, pattern in self.routes
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._matches(scope):
            await self.app(scope, receive, send)
            return
        received_all = False

        async def body() -> dict[str, Any]:
            nonlocal received_all
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                received_all = True
            return message

        scope.setdefault("state", {})[_STATE_KEY] = body
        delivered = False

        async def empty() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return await receive()

        async def send_closing(message: dict[str, Any]) -> None:
            # A reply before the whole body arrived (a refusal) closes the
            # connection: otherwise the server would go on reading and
            # discarding what the client still sends.
            if message["type"] == "http.response.start" and not received_all:
                headers = list(message.get("headers") or [])
                headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, empty, send_closing)


def body_stream(request: Request) -> AsyncIterator[bytes]:
    """The request's body as it arrives (deferred by :class:`DeferredBody`, or
    the ordinary stream when the app has no such middleware).

    Raises:
        starlette.requests.ClientDisconnect: the client went away.
    """
    deferred = request.scope.get("state", {}).get(_STATE_KEY)
    if deferred is None:
        return request.stream()
    return Request(request.scope, receive=deferred).stream()


async def receive_into(
    chunks: AsyncIterator[bytes], upload: Upload, max_bytes: int, setting: str
) -> int:
    """Writes the body into ``upload`` (file writes off the event loop).

    Args:
        chunks: The body (:func:`body_stream`).
        upload: The temporary file.
        max_bytes: The cap: more bytes than this stop the transfer.
        setting: What the cap is, for the message.

    Returns:
        The number of bytes received.

    Raises:
        TooLargeError: more than ``max_bytes`` arrived (the rest is not read).
        StoreError: the disk refused a write.
    """
    pending: list[bytes] = []
    buffered = 0
    async for chunk in chunks:
        if not chunk:
            continue
        if upload.size + buffered + len(chunk) > max_bytes:
            raise TooLargeError(
                f"request body of more than {max_bytes:,} bytes exceeds the "
                f"limit of {max_bytes:,} bytes ({setting})"
            )
        pending.append(chunk)
        buffered += len(chunk)
        if buffered >= _WRITE_BYTES:
            await run_in_threadpool(upload.write, b"".join(pending))
            pending, buffered = [], 0
    if pending:
        await run_in_threadpool(upload.write, b"".join(pending))
    await run_in_threadpool(upload.finish)
    return upload.size
