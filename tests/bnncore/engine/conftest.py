"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest

from bnncore.engine import kernels as K


@pytest.fixture(params=K.supported_isas())
def engine_isa(request):
    """Runs the test at each instruction-set level this CPU supports (portable
    always), restoring the automatic choice afterwards."""
    K.set_isa(request.param)
    yield request.param
    K.set_isa("auto")
