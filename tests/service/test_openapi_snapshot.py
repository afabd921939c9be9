"""The service's OpenAPI schema, compared with a reviewed snapshot.

Every change to the definition language, a route or a response model changes
``app.openapi()``; this test makes that change show in review as a diff of
``tests/service/snapshots/openapi.json``. After an intended change, regenerate
the snapshot and commit it with the change::

    BNN_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest \
        tests/service/test_openapi_snapshot.py -q -p no:randomly
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from bnncore_service.config import Settings
from bnncore_service.main import create_app

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.json"


def _render(schema: dict[str, Any]) -> str:
    # Key order is kept as FastAPI and pydantic produce it: the order of a
    # model's properties is the order in which its fields are validated.
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"


def test_openapi_schema_matches_the_snapshot(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    actual = _render(app.openapi())
    if os.environ.get("BNN_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(actual, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    actual.splitlines(keepends=True),
                    "snapshots/openapi.json",
                    "app.openapi()",
                    n=2,
                )
            )[:200]
        )
        raise AssertionError(
            "The OpenAPI schema differs from tests/service/snapshots/openapi.json "
            "(first 200 diff lines below). If the change is intended, regenerate "
            "it with BNN_UPDATE_SNAPSHOTS=1 (see this file's docstring) and "
            f"commit the diff.\n{diff}"
        )


def test_the_snapshot_is_the_schema_of_this_app_not_an_empty_file() -> None:
    # Guards the comparison above against a snapshot emptied or truncated by
    # hand: it must describe the definition language and the routes.
    schema = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert schema["openapi"].startswith("3.")
    assert "/v2/models" in schema["paths"]
    assert {"Conv2D", "QuantConv2D", "SteSignQ"} <= set(schema["components"]["schemas"])
