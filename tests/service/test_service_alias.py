"""The pre-0.2 name ``service`` still reaches the service: ``service.main:app``
for uvicorn command lines and ``python -m service`` for the runner."""

import subprocess
import sys


def test_service_main_app_is_the_bnncore_service_app():
    import bnncore_service.main
    import service.main

    assert service.main.app is bnncore_service.main.app
    assert service.main.create_app is bnncore_service.main.create_app


def test_python_m_service_runs_the_same_runner():
    new = subprocess.run(
        [sys.executable, "-m", "bnncore_service", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    old = subprocess.run(
        [sys.executable, "-m", "service", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert new.returncode == 0, new.stderr[-2000:]
    assert old.returncode == 0, old.stderr[-2000:]
    assert "--port" in new.stdout
    assert old.stdout == new.stdout
