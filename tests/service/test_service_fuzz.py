"""Property-based fuzzing of the API from its own OpenAPI schema: never a 5xx.

Schemathesis turns every operation of the service's OpenAPI document into a
Hypothesis strategy of requests — schema-valid ones (positive mode: real
definitions reach the estimate and the builder) and schema-violating ones
(negative mode) — and each response is checked to be no server error. The
number of examples per operation and mode is bounded to keep the run short.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from bnncore_service.config import Settings  # noqa: E402
from bnncore_service.main import create_app  # noqa: E402

EXAMPLES = 10
DATA_DIR = Path(tempfile.mkdtemp(prefix="bnn-fuzz-"))
# Tight limits: a generated definition that passes them builds in milliseconds.
APP = create_app(
    Settings(
        data_dir=DATA_DIR / "data",
        build_workers=1,
        max_layers=8,
        max_units=64,
        max_filters=16,
        max_kernel_size=5,
        max_dimension=64,
        max_params=50_000,
        max_activation_elements=200_000,
    )
)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}


@pytest.fixture(scope="module", autouse=True)
def lifespan() -> Iterator[None]:
    with TestClient(APP):  # opens the store for the requests schemathesis makes
        yield


def test_every_route_is_fuzzed() -> None:
    paths = APP.openapi()["paths"]
    documented = {f"{m.upper()} {p}" for p, methods in paths.items() for m in methods}
    assert set(OPERATIONS) == documented
    assert {"POST /v2/summary", "POST /v2/models", "GET /v2/models"} <= documented


def _has_inputs(label: str) -> bool:
    method, path = label.split(" ", 1)
    operation = APP.openapi()["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody"))


# Negative mode needs something to violate: only operations with inputs.
CASES = [
    (label, mode)
    for label in sorted(OPERATIONS)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _has_inputs(label)
]


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_api_never_answers_5xx(label: str, mode: GenerationMode) -> None:
    @given(OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    check()
