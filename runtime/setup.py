"""``pip install ./runtime``: the TensorFlow-free runtime alone.

The package's sources are the repository's ``bnncore_runtime/`` and the core's
C sources in ``bnncore/engine/`` (``_kernels.c`` and ``csrc/``), the same
files the main package builds; nothing is copied. Build flags are the main
``setup.py``'s (no floating-point contraction, so the core's rounding is the
same in both builds). NumPy is the only dependency.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACKAGE = ROOT / "bnncore_runtime"
ENGINE = ROOT / "bnncore" / "engine"
CSRC = sorted((ENGINE / "csrc").glob("*.c"))
HEADERS = sorted((ENGINE / "csrc").glob("*.h"))


def _relative(path: Path) -> str:
    return os.path.relpath(path, HERE)


def _strict() -> bool:
    value = os.environ.get("BNN_STRICT_BUILD", "") or os.environ.get("CI", "")
    return value.strip().lower() in ("1", "true", "yes")


class BuildExt(build_ext):
    """The main build's flags: exact rounding, warnings (errors in CI)."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            flags = ["-O3", "-std=gnu11", "-ffp-contract=off", "-fno-fast-math"]
            flags += ["-Wall", "-Wextra"] + (["-Werror"] if _strict() else [])
            for ext in self.extensions:
                ext.extra_compile_args = [*flags, "-pthread", *ext.extra_compile_args]
                ext.extra_link_args = ["-pthread", *ext.extra_link_args]
        super().build_extensions()


class BuildPy(build_py):
    """Copies ``bnncore_runtime/**/*.py`` (subpackages included, e.g.
    ``layer_rules``) and the stub from the repository."""

    def run(self) -> None:
        target = Path(self.build_lib) / "bnncore_runtime"
        target.mkdir(parents=True, exist_ok=True)
        for source in [*PACKAGE.rglob("*.py"), *PACKAGE.glob("*.pyi")]:
            destination = target / source.relative_to(PACKAGE)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        (target / "py.typed").write_text("")


setup(
    packages=["bnncore_runtime"],
    package_dir={"bnncore_runtime": _relative(PACKAGE)},
    ext_modules=[
        Extension(
            "bnncore_runtime._kernels",
            # Absolute paths: object files then land under build/temp.
            sources=[str(ENGINE / "_kernels.c"), *map(str, CSRC)],
            depends=list(map(str, HEADERS)),
        )
    ],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
