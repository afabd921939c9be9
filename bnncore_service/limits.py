"""Request body size limit (413 before the body is parsed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bnncore_service.errors import send_error

__all__ = ["BodySizeLimit"]

Scope = dict[str, Any]


class BodySizeLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with 413.

    The body is read (up to the limit) before the app sees it, so neither a
    declared ``Content-Length`` nor a chunked body can make the app buffer more.
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        overrides: Sequence[tuple[str, str, int, str]] = (),
    ) -> None:
        """
        Args:
            max_bytes: The limit (``BNN_MAX_BODY_BYTES``).
            overrides: ``(method, path regex, max_bytes, setting name)`` for
                routes with their own limit (weights uploads).
        """
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = [
            (method, re.compile(pattern), limit, setting)
            for method, pattern, limit, setting in overrides
        ]

    def _limit(self, scope: Scope) -> tuple[int, str]:
        for method, pattern, limit, setting in self.overrides:
            if scope.get("method") == method and pattern.fullmatch(scope["path"]):
                return limit, setting
        return self.max_bytes, "BNN_MAX_BODY_BYTES"

    async def _refuse(self, send: Any, size: str, limit: int, setting: str) -> None:
        await send_error(
            send,
            413,
            f"request body of {size} bytes exceeds the limit of {limit} bytes "
            f"({setting})",
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit(scope)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, declared.decode(), limit, setting)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, f"more than {limit}", limit, setting)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
