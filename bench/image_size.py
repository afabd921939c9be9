"""The expected sizes of the TensorFlow-free images (``docker/Dockerfile.runtime``),
estimated without Docker from the files the Dockerfile's own commands make.

No Docker daemon runs on the development machine, so the images are not
built. Their layers are reproduced instead, each from the same inputs:

1. the build stage's files (its ``COPY`` lines) are staged in a temporary
   context, and its ``pip wheel`` commands run there: the runtime wheel (the
   compiled core), then the wheels of ``bnncore-runtime[SERVE_EXTRAS]``
   (downloaded from the package index, as ``docker build`` does);
2. ``docker/slim_wheels.py`` rewrites them, as the build stage does;
3. each final stage's ``pip install --no-cache-dir --no-index /wheels/*.whl``
   runs into a fresh virtual environment (``python -m venv --without-pip``,
   then ``pip --python``), with pip's default bytecode compilation, as in
   the image; the inference target's ``COPY bnncore_service`` / ``service``
   and ``compileall`` are reproduced in a directory.

A layer's size, as ``docker image ls`` adds them up, is the apparent size of
the files it adds (``du --apparent-size``): that is what is summed. The
image is: the ``python:3.11-slim`` base (:data:`BASE_IMAGE_BYTES`, its
published size: the one figure not measured here) + the ``COPY --from=build``
layer of the wheels when a stage copies them (a later ``rm -rf /wheels`` does
not shrink it; both final stages now bind-mount them with
``RUN --mount=type=bind``, which leaves no layer) + the installed files +
(inference) the service's modules. Each is reported.

Usage::

    python -m bench.image_size [--work DIR] [--write-docs]

``--work`` keeps (and reuses) the wheels, so a second run needs no network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile.runtime"
DOCS = ROOT / "docs" / "runtime.md"
MARKERS = ("<!-- bench:image:start -->", "<!-- bench:image:end -->")
MB = 1e6  # decimal, as docker image ls
BASE_IMAGE_BYTES = 130 * 10**6
"""``python:3.11-slim`` unpacked, as published (not measured here)."""
TARGET_BYTES = 250 * 10**6
EXTRAS = ("serve", "serve,postgres,s3")
APP_DIRS = ("bnncore_service", "service")


@dataclass(frozen=True)
class Image:
    """The estimated layers of one image (bytes)."""

    name: str
    wheels: int
    installed: int
    app: int
    biggest: list[tuple[str, int]]
    copied: bool = True
    """Whether the stage ``COPY``s the wheels (a layer that stays) rather than
    bind-mounting them (``RUN --mount=type=bind``: no layer)."""

    @property
    def total(self) -> int:
        layer = self.wheels if self.copied else 0
        return BASE_IMAGE_BYTES + layer + self.installed + self.app

    @property
    def without_wheel_layer(self) -> int:
        return self.total - (self.wheels if self.copied else 0)


def _run(*command: str | Path, cwd: Path | None = None) -> None:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{result.stderr[-3000:]}")


def apparent_bytes(path: Path) -> int:
    """Sum of the sizes of the regular files under ``path`` (symlinks not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(
        p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()
    )


def _build_stage_copies() -> list[str]:
    text = DOCKERFILE.read_text()
    (build,) = [s for s in text.split("\nFROM ")[1:] if " AS build" in s.split("\n")[0]]
    return [line.split()[1] for line in build.splitlines() if line.startswith("COPY ")]


def copies_wheels(stage: str) -> bool:
    """Whether the final ``stage`` of the Dockerfile ``COPY``s the build
    stage's wheels (otherwise it bind-mounts them)."""
    text = DOCKERFILE.read_text()
    (found,) = [
        s
        for s in text.split("\nFROM ")[1:]
        if s.split("\n")[0].endswith(f" AS {stage}")
    ]
    return "COPY --from=build" in found


def build_wheels(work: Path) -> dict[str, Path]:
    """The build stage's wheel directories (``wheels``: the runtime's and
    NumPy's; ``serve-<extras>``: the inference target's), slimmed; reused
    when ``work`` has them."""
    pip = (sys.executable, "-m", "pip")
    runtime = work / "wheels"
    if not list(runtime.glob("bnncore_runtime-*.whl")):
        context = work / "context"
        shutil.rmtree(context, ignore_errors=True)
        ignore = shutil.ignore_patterns("*.so", "__pycache__", "build", "*.egg-info")
        for source in _build_stage_copies():
            target = context / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=ignore)
            else:
                shutil.copy(ROOT / source, target)
        _run(*pip, "wheel", "-q", "--no-cache-dir", "--wheel-dir", runtime,
             context / "runtime")  # fmt: skip
    (wheel,) = runtime.glob("bnncore_runtime-*.whl")
    found = {"wheels": runtime}
    for extras in EXTRAS:
        directory = work / f"serve-{extras.replace(',', '-')}"
        if not list(directory.glob("*.whl")):
            _run(*pip, "wheel", "-q", "--no-cache-dir", "--wheel-dir", directory,
                 f"{wheel}[{extras}]")  # fmt: skip
        found[extras] = directory
    for name, directory in list(found.items()):
        slim = directory.with_name(directory.name + "-slim")
        if not list(slim.glob("*.whl")):
            shutil.rmtree(slim, ignore_errors=True)
            shutil.copytree(directory, slim)
            _run(sys.executable, ROOT / "docker" / "slim_wheels.py", slim)
        found[f"{name} slim"] = slim
    return found


def install(wheels: Path, venv: Path) -> tuple[int, list[tuple[str, int]]]:
    """Installs the wheels as the final stages do; the bytes added, and the
    largest distributions (by their ``RECORD``)."""
    shutil.rmtree(venv, ignore_errors=True)
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    before = apparent_bytes(venv)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q",
         "--no-cache-dir", "--no-index", *sorted(wheels.glob("*.whl")))  # fmt: skip
    (site,) = (venv / "lib").glob("python3*/site-packages")
    sizes = []
    for record in site.glob("*.dist-info/RECORD"):
        name = record.parent.name.split("-")[0]
        total = 0
        for line in record.read_text().splitlines():
            path = site / line.split(",")[0]
            if path.is_file():
                total += path.stat().st_size
        sizes.append((name, total))
    sizes.sort(key=lambda item: -item[1])
    return apparent_bytes(venv) - before, sizes


def app_bytes(work: Path) -> int:
    """The inference target's ``COPY bnncore_service``, ``COPY service`` and
    ``compileall`` layers."""
    app = work / "app"
    shutil.rmtree(app, ignore_errors=True)
    app.mkdir()
    for name in APP_DIRS:
        shutil.copytree(ROOT / name, app / name,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    _run(sys.executable, "-m", "compileall", "-q", *APP_DIRS, cwd=app)
    return apparent_bytes(app)


def estimate(work: Path) -> list[Image]:
    """Both targets' estimates, before and after slimming the wheels."""
    wheels = build_wheels(work)
    app = app_bytes(work)
    images = []
    plans = [("runtime", "wheels", 0, "runtime")] + [
        (f"inference, SERVE_EXTRAS={extras}", extras, app, "inference")
        for extras in EXTRAS
    ]
    for name, key, app_size, stage in plans:
        for slim in (False, True):
            directory = wheels[f"{key} slim" if slim else key]
            installed, biggest = install(directory, work / "venv")
            images.append(
                Image(
                    name=f"{name}{', slimmed wheels' if slim else ''}",
                    wheels=apparent_bytes(directory),
                    installed=installed,
                    app=app_size,
                    biggest=biggest[:6],
                    copied=copies_wheels(stage),
                )
            )
    return images


def render(images: list[Image]) -> str:
    def mb(value: int) -> str:
        return f"{value / MB:.0f} MB"

    lines = [
        f"Estimated by `python -m bench.image_size` (Python {sys.version.split()[0]}, "
        f"base `python:3.11-slim` {mb(BASE_IMAGE_BYTES)} as published; MB = 10^6 "
        "bytes, as `docker image ls`).",
        "",
        "| image | wheels' layer | installed | service modules | expected size "
        "| without the wheels' layer | largest installed |",
        "|---|---|---|---|---|---|---|",
    ]
    for image in images:
        biggest = ", ".join(f"{n} {v / MB:.0f}" for n, v in image.biggest[:4])
        layer = mb(image.wheels) if image.copied else "none (bind mount)"
        lines.append(
            f"| {image.name} | {layer} | {mb(image.installed)} | "
            f"{mb(image.app) if image.app else '-'} | **{mb(image.total)}** | "
            f"{mb(image.without_wheel_layer)} | {biggest} |"
        )
    lines.append("")
    for image in images:
        if "slimmed" in image.name:
            ok = image.total <= TARGET_BYTES
            lines.append(
                f"- {'OK' if ok else 'MISS'}: {image.name}: {mb(image.total)} "
                f"(target <= {mb(TARGET_BYTES)}; "
                f"{mb(image.without_wheel_layer)} without the wheels' layer)"
            )
    return "\n".join(lines)


def write_docs(text: str) -> None:
    doc = DOCS.read_text()
    start, end = doc.index(MARKERS[0]), doc.index(MARKERS[1])
    DOCS.write_text(doc[: start + len(MARKERS[0])] + "\n" + text + "\n" + doc[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image_size")
    parser.add_argument("--work", type=Path, help="keep and reuse the wheels here")
    parser.add_argument("--write-docs", action="store_true",
                        help="update docs/runtime.md")  # fmt: skip
    args = parser.parse_args(argv if argv is not None else [])
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        images = estimate(args.work)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
            images = estimate(Path(tmp))
    text = render(images)
    print(text)
    if args.write_docs:
        write_docs(text)
        print(f"written to {DOCS}")
    return 0


if __name__ == "__main__":
    os.environ.pop("PIP_REQUIRE_VIRTUALENV", None)
    sys.exit(main(sys.argv[1:]))
