"""A test client whose app logs into a string (no tests here)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402


@contextlib.contextmanager
def logged_client(app: Any) -> Iterator[tuple[TestClient, io.StringIO]]:
    """``app`` started with its standard output captured (the lifespan sets
    the log handlers up on it, so every line of the run lands there), a
    client that answers errors rather than raising them, and the stream."""
    stream = io.StringIO()
    client = TestClient(app, raise_server_exceptions=False)
    with contextlib.redirect_stdout(stream):
        client.__enter__()
    try:
        yield client, stream
    finally:
        client.__exit__(None, None, None)
