"""Waiting for a server the tests started in a process of its own."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_until_answering(
    process: subprocess.Popen,
    url: str,
    *,
    what: str,
    timeout: float,
    log_tail: Callable[[], str],
    stop: Callable[[], None],
    interval: float = 0.1,
) -> None:
    """Returns once ``GET url`` answers 200.

    Raises:
        AssertionError: the process exited, or ``timeout`` seconds passed
            (the server is stopped first); the message ends with its log.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited:\n{log_tail()}")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop()
            raise AssertionError(
                f"{what} was not ready in {timeout:g} s:\n{log_tail()}"
            )
        time.sleep(interval)
