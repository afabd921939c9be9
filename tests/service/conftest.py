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

from service.config import Settings  # noqa: E402
from service.main import create_app  # noqa: E402

# The starved-weights advice of bnncore layers is noise in these tests.
logging.getLogger("bnncore").setLevel(logging.ERROR)

MNIST: dict[str, Any] = {
    "name": "mnist-bnn",
    "input_shape": [28, 28, 1],
    "layers": [
        {
            "type": "QuantConv2D",
            "filters": 32,
            "kernel_size": 3,
            "kernel_quantizer": "ste_sign",
            "kernel_constraint": "weight_clip",
            "use_bias": False,
        },
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "BatchNormalization", "scale": False},
        {"type": "Flatten"},
        {
            "type": "QuantDense",
            "units": 10,
            "input_quantizer": "ste_sign",
            "kernel_quantizer": "ste_sign",
            "kernel_constraint": "weight_clip",
        },
    ],
}


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
