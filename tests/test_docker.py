"""docker/Dockerfile and docker/compose.yaml against the code (no Docker engine here).

Checked: the container runs the command ``make serve`` runs
(``python -m bnncore_service``, which serves ``bnncore_service.main:app`` in one uvicorn
worker with the connection limits of the settings), in exec form, as a
non-root user,
with its health check on an open route of that app on the port it serves;
the compose file's settings are settings of the service; and the files the
build stage copies are enough to build the wheel, which then holds the entry
point and the compiled engine.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# Starlette's TestClient warns that it prefers httpx2; httpx is what we have.
pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2")

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    """The arguments of every ``name`` instruction (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [
        line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.split(None, 1)[:1] == [name]
    ]


def _serve_command() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nserve:", 1)[1].split("\n\n", 1)[0]
    line = next(x for x in recipe.splitlines() if "-m bnncore_service" in x)
    # `make serve PORT=...` overrides these; the defaults are `NAME ?= value`.
    defaults = dict(re.findall(r"^(\w+)[ \t]*\?=[ \t]*(\S+)", makefile, re.M))
    return re.sub(r"\$\((\w+)\)", lambda m: defaults.get(m[1], m[0]), line).split()


def test_the_container_runs_the_makefile_entry_point() -> None:
    (cmd,) = _instructions("CMD")
    command = json.loads(cmd)  # exec form: a JSON array, no shell
    serve = _serve_command()
    assert command[:3] == ["python", "-m", "bnncore_service"]
    assert serve[0].endswith("/python") and serve[1:3] == ["-m", "bnncore_service"]
    assert "--workers" not in command  # the runner serves one worker
    assert command[command.index("--host") + 1] == "0.0.0.0"
    from fastapi import FastAPI

    import bnncore_service.main
    from bnncore_service.server import parse_args

    assert isinstance(bnncore_service.main.app, FastAPI)
    # The runner accepts both command lines (an unknown option exits).
    container, make = parse_args(command[3:]), parse_args(serve[3:])
    assert (container.host, container.port) == ("0.0.0.0", 8000)
    assert (make.host, make.port) == ("127.0.0.1", 8000)


def test_healthcheck_port_user_and_stages(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bnncore_service.config import Settings
    from bnncore_service.main import create_app

    (cmd,) = _instructions("CMD")
    port = json.loads(cmd)[json.loads(cmd).index("--port") + 1]
    (healthcheck,) = _instructions("HEALTHCHECK")
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", healthcheck)
    assert url is not None and url.group(1) == port
    assert _instructions("EXPOSE") == [port]
    # The checked route answers 200 without a key even when keys are required.
    settings = Settings(data_dir=tmp_path, api_keys="some-key")
    with TestClient(create_app(settings)) as client:
        assert client.get(url.group(2)).status_code == 200
        assert client.get("/v2/models").status_code == 401
    assert len(_instructions("FROM")) >= 2  # multi-stage
    (user,) = _instructions("USER")
    assert user not in ("root", "0")


def test_compose_settings_are_service_settings() -> None:
    yaml = pytest.importorskip("yaml")
    from bnncore_service.config import Settings

    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    (service,) = compose["services"].values()
    assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    environment = service["environment"]
    for name in environment:
        assert name.startswith("BNN_")
        assert name[4:].lower() in Settings.model_fields, name
    env = dict(item.split("=", 1) for item in _instructions("ENV")[0].split())
    assert environment["BNN_DATA_DIR"] == env["BNN_DATA_DIR"] == "/data"
    assert _instructions("VOLUME") == ['["/data"]']
    assert any(v.endswith(":/data") for v in service["volumes"])
    assert service["ports"] == ["8000:8000"]


def test_the_build_stage_files_build_a_wheel_with_the_entry_point(
    tmp_path: Path,
) -> None:
    ignored = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).relative_to(ROOT)
        return {
            n
            for n in names
            for pattern in ignored
            if fnmatch.fnmatch(n, pattern.removeprefix("**/"))
            or fnmatch.fnmatch(str(rel / n), pattern)
        }

    build_stage = DOCKERFILE.split("\nFROM ", 2)[1]  # up to the runtime stage
    for line in build_stage.splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, tmp_path / source, ignore=ignore)
                else:
                    shutil.copy(path, tmp_path / source)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    result = subprocess.run(
        [*pip, "-q", "-w", str(tmp_path / "wheels"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bnncore_service/main.py" in names and "bnncore/client.py" in names
    assert any(n.startswith("bnncore_runtime/_kernels") for n in names)
    assert "bnncore_runtime/model.py" in names


def test_the_image_installs_the_storage_drivers_of_every_topology() -> None:
    """The extras the image's service and scaled-out settings need are the
    ones pyproject declares.

    The service itself needs the ``service`` extra (the library installs
    without it), BNN_DATABASE_URL=postgresql+psycopg://... the ``postgres``
    extra and BNN_OBJECT_STORE_URL=s3://... the ``s3`` extra; the build stage
    must wheel the package with all three, and the runtime stage install every
    wheel built.
    """
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (wheel,) = [run for run in _instructions("RUN") if "pip wheel" in run]
    requested = re.search(r"'\.\[([\w,]+)\]'", wheel)
    assert requested, wheel
    named = set(requested[1].split(","))
    assert {"service", "postgres", "s3"} <= named <= set(extras)
    assert any(
        "pip install" in run and "/wheels/*.whl" in run for run in _instructions("RUN")
    )
