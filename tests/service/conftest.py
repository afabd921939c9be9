"""Fixtures of the service tests: an app on a temporary data directory."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

# Starlette's TestClient warns that it prefers httpx2; httpx is what we have.
warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from bnncore_service.config import Settings  # noqa: E402
from bnncore_service.main import create_app  # noqa: E402

# The starved-weights advice of bnncore layers is noise in these tests.
logging.getLogger("bnncore").setLevel(logging.ERROR)


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
