"""Fixtures of the runtime tests: exported models and the instruction-set levels."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest
from runtime_models import export, randomize

import bnncore_runtime
from bnncore_runtime import kernels as K


@pytest.fixture(params=K.supported_isas())
def runtime_isa(request):
    """Each instruction-set level this CPU supports (portable always), then the
    automatic choice again."""
    bnncore_runtime.set_isa(request.param)
    yield request.param
    bnncore_runtime.set_isa("auto")


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> tuple[keras.Model, Path]:
    from bench.engine import mnist_bnn

    model = randomize(mnist_bnn(), seed=3)
    return model, export(model, tmp_path_factory.mktemp("mnist"))
