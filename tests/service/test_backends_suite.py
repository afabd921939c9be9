"""The service test suite (registry, weights, inference) once more, on
PostgreSQL + S3 (issue 17).

The files below run as they are on the embedded default (SQLite and local
files) in the ordinary suite; here they run again in a subprocess under
``-p backend_plugin`` (``tests/backend_plugin.py``), which gives every app
they build a fresh PostgreSQL database and a fresh bucket on a moto S3
server. The plugin's report proves it was active: databases with registered
versions and buckets holding definition and weights objects.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from pg_fixture import find_binaries

ROOT = Path(__file__).resolve().parents[2]

SUITE = (
    "tests/service/test_service_api.py",
    "tests/service/test_weights.py",
    "tests/service/test_inference.py",
)
"""Registry (register, versions, list, delete), weights upload and inference:
about 80 tests, 1-1.5 min on a loaded 2-core machine."""


def _require_servers() -> None:
    missing = []
    if find_binaries() is None:
        missing.append("PostgreSQL (initdb/pg_ctl under /usr/lib/postgresql/*/bin)")
    missing += [
        name
        for name in ("psycopg", "moto", "flask", "boto3")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        reason = f"the PostgreSQL + S3 run needs {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def test_the_service_suite_passes_on_postgresql_and_s3(tmp_path: Path) -> None:
    _require_servers()
    report, junit = tmp_path / "backends.json", tmp_path / "junit.xml"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BNN_", "PYTEST_", "AWS_"))
    }
    tests_dir = str(ROOT / "tests")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (tests_dir, env.get("PYTHONPATH", "")) if p
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "backend_plugin",
            f"--backend-report={report}",
            f"--junitxml={junit}",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            *SUITE,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = result.stdout[-6000:] + result.stderr[-2000:]
    assert junit.exists(), f"pytest wrote no report:\n{summary}"
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    failed = [
        f"{case.get('classname')}::{case.get('name')}: "
        f"{(problem.get('message') or '')[:300]}"
        for case in suite.iter("testcase")
        for problem in (*case.findall("failure"), *case.findall("error"))
    ]
    assert result.returncode == 0 and not failed, (
        f"on PostgreSQL + S3 (exit {result.returncode}):\n"
        + "\n".join(failed)
        + f"\n{summary}"
    )
    ran = int(suite.get("tests", 0)) - int(suite.get("skipped", 0))
    assert ran >= 60, f"only {ran} tests ran on PostgreSQL + S3:\n{summary}"

    assert report.exists(), f"backend_plugin wrote no report:\n{summary}"
    made = json.loads(report.read_text())
    databases, buckets = made["databases"], made["buckets"]
    assert all(url.startswith("postgresql+psycopg://") for url in databases)
    # Every app built on a fresh data dir got its own database and bucket,
    # and the tests really stored versions, definitions and weights there.
    assert len(databases) >= 10 and len(buckets) >= 10, made
    versions = sum(c.get("model_versions", 0) for c in databases.values())
    weights = sum(c.get("model_weights", 0) for c in databases.values())
    keys = [key for bucket in buckets.values() for key in bucket]
    assert versions > 0 and weights > 0, databases
    assert any(key.startswith("registry/definitions/") for key in keys), keys
    assert any(
        key.startswith("registry/weights/") and key.endswith(".safetensors")
        for key in keys
    ), keys
