"""Fixtures of the export tests."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from export_models import mnist_bnn, randomize


@pytest.fixture(scope="module")
def mnist_model() -> keras.Model:
    return randomize(mnist_bnn())


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(8, 28, 28, 1)).astype("float32")
