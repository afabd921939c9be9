"""docker/Dockerfile.runtime against the code (no Docker engine here): its
build stage's files build the runtime wheel on their own (NumPy its only
dependency), and the installed wheel answers as the engine does; its
inference target runs the service's inference replica with the runtime's
``serve`` extras, which hold every package that replica imports."""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from bnncore import engine

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "Dockerfile.runtime").read_text()


def _stage(name: str) -> str:
    """The text of the stage ``FROM ... AS name`` (up to the next FROM)."""
    stages = DOCKERFILE.split("\nFROM ")[1:]
    (found,) = [s for s in stages if s.split("\n", 1)[0].endswith(f" AS {name}")]
    return found


def _stages() -> tuple[str, str]:
    return _stage("build"), _stage("runtime")


def test_the_image_holds_no_tensorflow_and_runs_the_runtime():
    build, final = _stages()
    assert "python:3.11-slim" in build and final.startswith("python:3.11-slim")
    # Only the wheels the build stage made are installed: the runtime's, NumPy's.
    # The build stage's wheels, bind-mounted (no COPY layer left behind).
    installs = [line.strip() for line in final.splitlines() if "pip install" in line]
    assert installs == ["pip install --no-cache-dir --no-index /wheels/*.whl \\"]
    assert "RUN --mount=type=bind,from=build,source=/wheels,target=/wheels" in final
    assert "COPY --from=build" not in final
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
    # Every module of the package, subpackages included (layer_rules was
    # once left out, hidden by the development install's editable finder).
    sources = {
        f"bnncore_runtime/{path.relative_to(ROOT / 'bnncore_runtime').as_posix()}"
        for path in (ROOT / "bnncore_runtime").rglob("*.py")
    }
    assert "bnncore_runtime/layer_rules/__init__.py" in sources
    assert sources <= set(names), sorted(sources - set(names))
    assert not any(n.startswith("bnncore/") for n in names)
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = email.message_from_bytes(archive.read(metadata)).get_all("Requires-Dist")
    always = [r for r in requires if "extra ==" not in r]  # not the serve extras
    assert [r.split(">")[0].split("=")[0].strip() for r in always] == ["numpy"]

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
    where = (
        "import bnncore_runtime, bnncore_runtime.layers, bnncore_runtime.layer_rules"
        " as r; print(bnncore_runtime.__file__); print(r.__file__)"
    )
    found = subprocess.run(
        [sys.executable, "-c", where],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    ).stdout.split()  # fmt: skip
    assert len(found) == 2 and all(f.startswith(str(site)) for f in found), found
    np.testing.assert_array_equal(
        np.load(tmp_path / "y.npy"), engine.compile(model).predict(x)
    )


def test_the_inference_target_runs_the_inference_replica():
    stage = _stage("inference")
    assert stage.startswith("python:3.11-slim AS inference")
    # Only wheels the build stage made (the runtime's and its serve extras'),
    # installed without an index; then the service's modules, checked to
    # import without TensorFlow, Keras or bnncore (none is installed).
    installs = [line.strip() for line in stage.splitlines() if "pip install" in line]
    assert installs == ["pip install --no-cache-dir --no-index /wheels/*.whl"]
    mount = "RUN --mount=type=bind,from=build,source=/serve-wheels,target=/wheels"
    assert mount in stage and "COPY --from=build" not in stage
    assert "COPY bnncore_service ./bnncore_service" in stage
    assert "('tensorflow', 'keras', 'bnncore')" in stage
    assert "BNN_ROLE=inference" in stage
    # The entry point's BLAS default applies (a user's OMP_NUM_THREADS kept).
    assert "OPENBLAS_NUM_THREADS=" not in stage
    assert "OPENBLAS_CORETYPE" not in stage
    assert "USER bnn" in stage
    (cmd,) = [line for line in stage.splitlines() if line.startswith("CMD ")]
    command = json.loads(cmd.removeprefix("CMD "))
    assert command[:3] == ["python", "-m", "bnncore_service"]
    assert command[command.index("--port") + 1] == "8000"
    assert "EXPOSE 8000" in stage and "/v2/health/ready" in stage
    build = _stage("build")
    assert "ARG SERVE_EXTRAS=serve,postgres,s3" in build
    assert '"$(ls /wheels/bnncore_runtime-*.whl)[${SERVE_EXTRAS}]"' in build


def _closure(requirements: list[str]) -> set[str]:
    """Distributions (normalized names) these requirements install, with
    their dependencies, as installed here (extras of dependencies not
    followed)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        for text in metadata.requires(requirement.name) or []:
            nested = Requirement(text)
            if nested.marker is None or nested.marker.evaluate({"extra": ""}):
                pending.append(nested)
        for extra in requirement.extras:
            for text in metadata.requires(requirement.name) or []:
                nested = Requirement(text)
                if nested.marker is not None and nested.marker.evaluate(
                    {"extra": extra}
                ):
                    pending.append(nested)
    return found


_BLOCKER = """
import json, sys
from importlib.abc import MetaPathFinder
from pathlib import Path

BLOCKED = frozenset(json.loads((Path(__file__).parent / "blocked.json").read_text()))


class NotInTheImage(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInTheImage())
(Path(__file__).parent / "loaded").write_text("yes")  # the test checks it ran
"""


def _image_site(tmp_path: Path, extras: list[str]) -> tuple[Path, set[str]]:
    """A ``sitecustomize`` directory that makes unimportable every module of
    this environment outside what ``bnncore-runtime[extras]`` installs
    (TensorFlow, Keras, bnncore, SQLAlchemy, the test tools), as in the
    image; the blocked modules."""
    from packaging.utils import canonicalize_name

    text = (ROOT / "runtime" / "pyproject.toml").read_text()
    declared = tomllib.loads(text)["project"]["optional-dependencies"]
    allowed = _closure(["numpy", *(r for e in extras for r in declared[e])])
    blocked = {"bnncore"}  # the repository's, not a distribution here
    for module, owners in metadata.packages_distributions().items():
        if module in sys.stdlib_module_names or module in (
            "service",
            "bnncore_service",
            "bnncore_runtime",
        ):
            continue
        if not any(canonicalize_name(d) in allowed for d in owners):
            blocked.add(module)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BLOCKER)
    (site / "blocked.json").write_text(json.dumps(sorted(blocked)))
    return site, blocked


def test_the_serve_extra_asks_what_the_service_extra_asks():
    """Every package both the runtime's ``serve`` extra and the main
    ``service`` extra name is asked with the same version floor and marker,
    and the runner's default parser and event loop (httptools, uvloop) are
    among them: without them the image's replica would parse with h11 on the
    asyncio loop."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def extra(path: Path, name: str) -> dict[str, Requirement]:
        text = path.read_text()
        declared = tomllib.loads(text)["project"]["optional-dependencies"][name]
        found = [Requirement(r) for r in declared]
        return {canonicalize_name(r.name): r for r in found}

    serve = extra(ROOT / "runtime" / "pyproject.toml", "serve")
    service = extra(ROOT / "pyproject.toml", "service")
    assert {"httptools", "uvloop"} <= serve.keys()
    shared = serve.keys() & service.keys()
    assert len(shared) >= 8  # the web stack, the metrics, the parser, the loop
    for name in shared:
        assert (serve[name].specifier, serve[name].marker) == (
            service[name].specifier,
            service[name].marker,
        ), name


def test_the_inference_replica_runs_with_only_the_serve_extras(start_service, tmp_path):
    """``python -m bnncore_service`` with ``BNN_ROLE=inference`` starts and answers
    when only what ``bnncore-runtime[serve]`` installs can be imported: every
    other distribution of this environment (TensorFlow, Keras, bnncore,
    SQLAlchemy and Alembic, the test tools) is made unimportable, as in the
    image."""
    site, blocked = _image_site(tmp_path, ["serve"])
    assert {"tensorflow", "keras", "bnncore", "pytest"} <= blocked
    assert {"sqlalchemy", "alembic"} <= blocked  # the registry is read without
    assert not {"httptools", "uvloop"} & blocked  # the runner's defaults
    running = start_service(
        tmp_path / "data",
        env={"BNN_ROLE": "inference", "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"},
    )
    try:
        import httpx

        assert httpx.get(f"{running.base}/v2").json()["role"] == "inference"
        missing = httpx.post(f"{running.base}/v2/models/nothing/infer", json={})
        assert missing.status_code == 404
        assert "bnn_http_requests_total" in httpx.get(f"{running.base}/metrics").text
    finally:
        running.stop()
    assert (site / "loaded").read_text() == "yes"
    # The drivers of deploy/ (PostgreSQL, S3) are extras of their own.
    text = (ROOT / "runtime" / "pyproject.toml").read_text()
    extras = tomllib.loads(text)["project"]["optional-dependencies"]
    assert [r.split(">")[0] for r in extras["postgres"]] == ["psycopg[binary]"]
    assert [r.split(">")[0] for r in extras["s3"]] == ["boto3"]


def test_the_inference_replica_reads_postgresql_with_only_its_extras(
    start_service, tmp_path, postgres_url
):
    """The replica of the default image (``serve,postgres``: psycopg, no
    SQLAlchemy) serves a model a full replica's store registered on a real
    PostgreSQL server, and answers 404 for one it did not."""
    from bnncore_service.config import Settings
    from bnncore_service.store import Store

    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url)
    store = Store(settings).open()
    io = [{"name": "x", "shape": [-1, 4]}], [{"name": "y", "shape": [-1, 2]}]
    digest = "ab" * 32
    try:
        record, _ = store.register("m", digest, {"d": 1}, "Sequential", 10, 40, *io)
    finally:
        store.close()
    site, blocked = _image_site(tmp_path, ["serve", "postgres"])
    assert {"sqlalchemy", "alembic", "tensorflow"} <= blocked
    assert "psycopg" not in blocked
    running = start_service(
        tmp_path / "data",
        env={
            "BNN_ROLE": "inference",
            "BNN_DATABASE_URL": postgres_url,
            "PYTHONPATH": f"{site}{os.pathsep}{ROOT}",
        },
    )
    try:
        import httpx

        found = httpx.get(f"{running.base}/v2/models/m").json()
        assert found["versions"] == ["1"] and found["content_hash"] == digest
        assert found["created_at"] == record.created_at
        assert found["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert httpx.get(f"{running.base}/v2/models/other").status_code == 404
        assert httpx.get(f"{running.base}/v2/health/ready").status_code == 200
    finally:
        running.stop()
    assert (site / "loaded").read_text() == "yes"
