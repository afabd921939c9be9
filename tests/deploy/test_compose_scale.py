"""``docker/compose.scale.yaml`` (PostgreSQL, MinIO, two replicas behind nginx)
and ``docker/compose.yaml``, checked without a Docker engine.

Oracles: the Compose Specification's JSON schema (vendored from
compose-spec/compose-spec, ``tests/deploy/schemas/``), which refuses unknown
keys as ``docker compose config`` does; the service's own settings loader
for the replicas' environment; and the other services' definitions for
every address, credential and port the replicas and nginx use. ``docker
compose config`` and ``up`` themselves were not run (no Docker here).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

from bnncore_service.config import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SCALE = DOCKER / "compose.scale.yaml"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"
AWS_VARIABLES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
}

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _interpolate(value: Any, shell: dict[str, str]) -> Any:
    """Compose's interpolation (``${VAR}``, ``${VAR:-default}``, ``$$``) with
    the shell variables ``shell``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, shell) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, shell) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return shell.get(match[1]) or (match[2] or "")

    return _VARIABLE.sub(substitute, value)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The scaled-out file as Compose reads it with no shell variables set."""
    return _interpolate(_load(SCALE), {})


@pytest.mark.parametrize("name", ["compose.yaml", "compose.scale.yaml"])
def test_compose_files_follow_the_compose_specification(name: str) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(_load(DOCKER / name))
    ]
    assert errors == []


def test_the_schema_check_catches_a_misspelled_key() -> None:
    document = _load(SCALE)
    document["services"]["bnncore"]["depends_om"] = document["services"]["bnncore"].pop(
        "depends_on"
    )
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert any("depends_om" in e.message for e in validator.iter_errors(document))


def _dockerfile_port() -> int:
    text = (DOCKER / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    command = json.loads(cmd)
    return int(command[command.index("--port") + 1])


def test_two_replicas_behind_one_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    replica = services["bnncore"]
    assert replica["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert replica["deploy"]["replicas"] == 2
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {"proxy": ["8000:8000"]}
    # nginx listens on the published port and sends to the replicas' port.
    nginx = (DOCKER / "nginx.conf").read_text()
    (listen,) = re.findall(r"^\s*listen (\d+);", nginx, re.MULTILINE)
    assert published["proxy"] == [f"8000:{listen}"]
    (server,) = re.findall(r"^\s*server (\S+?)(?: [^;]*)?;", nginx, re.MULTILINE)
    assert server == f"bnncore:{_dockerfile_port()}"
    assert re.search(r"proxy_pass http://bnncore;", nginx)
    (body,) = re.findall(r"client_max_body_size (\d+)m;", nginx)
    assert int(body) * 1024 * 1024 >= Settings().max_weights_bytes
    assert any(
        v.endswith(":/etc/nginx/nginx.conf:ro") for v in services["proxy"]["volumes"]
    )


def test_dependencies_and_volumes_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, (name, target)
            if rule["condition"] == "service_healthy":
                has_check = "healthcheck" in services[target] or (
                    "build" in services[target] and "HEALTHCHECK" in dockerfile
                )
                assert has_check, (name, target)
            elif rule["condition"] == "service_completed_successfully":
                assert services[target]["restart"] == "no", target
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), source
            else:
                assert source in compose["volumes"], source


def test_replicas_reach_postgres_and_minio_with_their_credentials(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    env = services["bnncore"]["environment"]
    database = make_url(env["BNN_DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert database.drivername == "postgresql+psycopg"
    assert (database.host, database.port) == ("postgres", 5432)
    assert (database.username, database.password, database.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    minio = services["minio"]["environment"]
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"  # MinIO's API port
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    bucket = re.fullmatch(r"s3://([^/]+)(/.*)?", env["BNN_OBJECT_STORE_URL"])
    assert bucket, env["BNN_OBJECT_STORE_URL"]
    # The setup container creates that bucket, logged in as the root user.
    setup = services["minio-setup"]
    (script,) = setup["command"]
    words = shlex.split(script)
    assert words[words.index("mb") + 2] == f"store/{bucket[1]}"
    alias = words[words.index("alias") + 2 : words.index("alias") + 6]
    assert alias == [
        "store",
        "http://minio:9000",
        minio["MINIO_ROOT_USER"],
        "$MINIO_ROOT_PASSWORD",
    ]
    assert setup["environment"]["MINIO_ROOT_PASSWORD"] == minio["MINIO_ROOT_PASSWORD"]
    # A password given in the shell reaches both sides.
    shell = {"POSTGRES_PASSWORD": "p0stgres", "MINIO_ROOT_PASSWORD": "m1nio-secret"}
    changed = _interpolate(_load(SCALE), shell)["services"]
    assert (
        make_url(changed["bnncore"]["environment"]["BNN_DATABASE_URL"]).password
        == "p0stgres"
    )
    assert changed["postgres"]["environment"]["POSTGRES_PASSWORD"] == "p0stgres"
    assert changed["bnncore"]["environment"]["AWS_SECRET_ACCESS_KEY"] == "m1nio-secret"


def test_replica_environment_is_real_settings_that_load(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose["services"]["bnncore"]["environment"]
    fields = {f"BNN_{name.upper()}" for name in Settings.model_fields}
    for variable in env:
        if variable.startswith("BNN_"):
            assert variable in fields, f"{variable} is not a setting"
        else:
            assert variable in AWS_VARIABLES, variable
    for variable in [v for v in os.environ if v.startswith("BNN_")]:
        monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, str(value))
    try:
        settings = load_settings()
    except SettingsError as exc:
        pytest.fail(str(exc))
    assert str(settings.data_dir) == "/data"
