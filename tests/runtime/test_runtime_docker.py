"""docker/Dockerfile.runtime against the code (no Docker engine here): its
build stage's files build the runtime wheel on their own (NumPy its only
dependency), and the installed wheel answers as the engine does."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from bnncore import engine

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "Dockerfile.runtime").read_text()


def _stages() -> tuple[str, str]:
    build, final = DOCKERFILE.split("\nFROM ", 2)[1:]
    return build, final


def test_the_image_holds_no_tensorflow_and_runs_the_runtime():
    build, final = _stages()
    assert "python:3.11-slim" in build and final.startswith("python:3.11-slim")
    # Only the wheels the build stage made are installed: the runtime's, NumPy's.
    installs = [line for line in final.splitlines() if "pip install" in line]
    assert installs == ["RUN pip install --no-cache-dir --no-index /wheels/*.whl "
                        "&& rm -rf /wheels \\"]  # fmt: skip
    assert "assert 'tensorflow' not in sys.modules" in final
    copies = [line.split()[1] for line in build.splitlines() if line.startswith("COPY")]
    assert copies == ["runtime", "bnncore_runtime", "bnncore/engine/_kernels.c",
                      "bnncore/engine/csrc"]  # fmt: skip
    assert 'ENTRYPOINT ["python", "-m", "bnncore_runtime"]' in final
    assert "USER bnn" in final  # not root


def test_the_build_stage_files_build_a_numpy_only_wheel_that_answers(mnist, tmp_path):
    build, _ = _stages()
    context = tmp_path / "context"
    for line in build.splitlines():
        if line.startswith("COPY "):
            source, target = line.split()[1:]
            destination = context / target.removeprefix("./")
            destination.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                ignore = shutil.ignore_patterns("*.so", "__pycache__", "build",
                                                "*.egg-info")  # fmt: skip
                shutil.copytree(ROOT / source, destination, ignore=ignore)
            else:
                shutil.copy(ROOT / source, destination)
    pip = [sys.executable, "-m", "pip"]
    result = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
         str(tmp_path / "wheels"), str(context / "runtime")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert any(n.startswith("bnncore_runtime/_kernels") for n in names)
    assert "bnncore_runtime/__main__.py" in names
    assert not any(n.startswith("bnncore/") for n in names)
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = email.message_from_bytes(archive.read(metadata)).get_all("Requires-Dist")
    assert [r.split(">")[0].split("=")[0].strip() for r in requires] == ["numpy"]

    site = tmp_path / "site"
    result = subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    model, directory = mnist
    x = np.random.default_rng(9).normal(size=(2, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-m", "bnncore_runtime", str(directory),
         str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    where = "import bnncore_runtime; print(bnncore_runtime.__file__)"
    assert str(site) in subprocess.run(
        [sys.executable, "-c", where],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    np.testing.assert_array_equal(
        np.load(tmp_path / "y.npy"), engine.compile(model).predict(x)
    )
