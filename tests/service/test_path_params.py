"""The replica's check of ``{name}`` and ``{version}``
(:func:`bnncore_service.pathparams.path_errors`) accepts, converts and refuses
exactly as FastAPI does with ``deps.ModelName`` and ``deps.VersionNumber``.

Oracle: a FastAPI app whose route declares the two parameters with the full
service's aliases, answering the values it received or FastAPI's validation
errors (formatted by the service's formatter, as ``InferenceRoute`` does)."""

from __future__ import annotations

import warnings
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnncore_service.deps import ModelName, VersionNumber
from bnncore_service.errors import format_validation_errors
from bnncore_service.pathparams import VERSION_MAX, path_errors

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402


def _oracle() -> TestClient:
    app = FastAPI()

    @app.get("/p/{name}/{version}")
    async def both(name: ModelName, version: VersionNumber) -> dict[str, Any]:
        return {"name": name, "version": version}

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": format_validation_errors(list(exc.errors()))}, status_code=400
        )

    return TestClient(app)


ORACLE = _oracle()


def _segment(text: str) -> str:
    """``text`` as one path segment (a ``.`` escaped too: a client would
    resolve a ``.`` or ``..`` segment)."""
    return quote(text, safe="").replace(".", "%2E")


def _check(name: str, version: str) -> None:
    reply = ORACLE.get(f"/p/{_segment(name)}/{_segment(version)}")
    values, errors = path_errors({"name": name, "version": version})
    if reply.status_code == 200:
        assert errors == [], (name, version, errors)
        assert {"name": values["name"], "version": values["version"]} == reply.json()
        assert type(values["version"]) is int
    else:
        assert reply.status_code == 400, reply.text
        assert format_validation_errors(errors) == reply.json()["error"]


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("m", "1"),
        ("_m-2", str(VERSION_MAX)),
        ("a" * 64, "01"),
        ("a" * 65, "1"),
        ("9m", "0"),
        ("-m", "-1"),
        ("m\n", "1\n"),
        ("m.n", " 1 "),
        ("é", "+1"),
        ("m", "1.0"),
        ("m", "1.5"),
        ("m", "1_0"),
        ("m", "1e3"),
        ("m", "٣"),
        ("m", "１"),
        ("m", str(VERSION_MAX + 1)),
        ("m", "9" * 30),
        ("m", "true"),
        ("m", "0x10"),
    ],
)
def test_written_cases(name: str, version: str) -> None:
    _check(name, version)


SEGMENT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="/"),
    min_size=1,
    max_size=70,
)
NUMBERISH = st.from_regex(r"[ \t+\-]?[0-9_.eE ]{1,14}[ \t]?", fullmatch=True)
NAMEISH = st.from_regex(r"[A-Za-z0-9_\-. ]{1,66}", fullmatch=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(NAMEISH, SEGMENT), version=st.one_of(NUMBERISH, SEGMENT))
def test_any_segments(name: str, version: str) -> None:
    _check(name, version)
