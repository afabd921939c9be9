"""Build of the compiled core (metadata lives in pyproject.toml).

The core's sources live in ``bnncore/engine/csrc``; the extension module is
``bnncore_runtime._kernels``, shared by ``bnncore.engine`` and the
TensorFlow-free runtime ``bnncore_runtime`` (which ``runtime/setup.py``
builds from the same sources when the runtime is installed on its own).

The extension uses only the CPython C API and the buffer protocol, and POSIX
threads for its worker pool. No floating-point contraction
(``-ffp-contract=off``): the fused epilogue must round exactly like the
separate Keras operations it replaces. AVX2 and AVX-512 code is compiled per
function (``__attribute__((target("avx2")))``,
``target("avx512f,avx512bw,avx512vl,avx512vpopcntdq")``) and chosen at run time
(``csrc/config.c``), so the build runs on any x86-64 (or other) machine with gcc
or clang. Warnings: ``-Wall -Wextra`` always, ``-Werror`` with
``BNN_STRICT_BUILD=1`` or ``CI=true``.

The extension is optional except in strict builds: where it cannot be built
(no C compiler, no Python headers) the install still succeeds with a warning,
and ``import bnncore`` works; the engine and ``bnncore_runtime.load`` then
raise ``CoreUnavailableError`` saying how to build it. With
``BNN_STRICT_BUILD=1`` or ``CI=true``, or ``BNN_REQUIRE_CORE=1`` (the Docker
image: the core without ``-Werror``), a failed build fails the install.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError, CompileError

_HERE = os.path.join("bnncore", "engine")
_CSRC = [
    "config.c",
    "conv.c",
    "epilogue.c",
    "epilogue_avx512.c",
    "fconv.c",
    "head.c",
    "mk_avx2.c",
    "mk_avx512.c",
    "mk_portable.c",
    "pack.c",
    "pool.c",
    "program.c",
]
_SOURCES = [
    os.path.join(_HERE, "_kernels.c"),
    *(os.path.join(_HERE, "csrc", name) for name in _CSRC),
]
_HEADERS = [
    os.path.join(_HERE, "csrc", name)
    for name in ("bnn.h", "pool.h", "program.h", "simd512.h")
]


def _strict() -> bool:
    """Warnings are errors with ``BNN_STRICT_BUILD=1`` and in CI (``CI=true``)."""
    strict = os.environ.get("BNN_STRICT_BUILD", "").strip().lower()
    ci = os.environ.get("CI", "").strip().lower()
    return strict in ("1", "true", "yes") or ci in ("1", "true", "yes")


def _core_required() -> bool:
    """A failed build of the core fails the install: strict builds and
    ``BNN_REQUIRE_CORE=1``; elsewhere the core is optional."""
    required = os.environ.get("BNN_REQUIRE_CORE", "").strip().lower()
    return _strict() or required in ("1", "true", "yes")


class BuildExt(build_ext):
    """``build_ext`` with optimisation and exact-rounding flags for gcc/clang."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            flags = ["-O3", "-std=gnu11", "-ffp-contract=off", "-fno-fast-math"]
            flags += ["-Wall", "-Wextra"]
            if _strict():
                flags.append("-Werror")
            for ext in self.extensions:
                ext.extra_compile_args = [*flags, "-pthread", *ext.extra_compile_args]
                ext.extra_link_args = ["-pthread", *ext.extra_link_args]
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except (BaseError, CCompilerError, CompileError):
            if ext.optional:
                self.warn(_NOT_BUILT)
            raise  # build_ext goes on without an optional extension


_NOT_BUILT = (
    "bnncore's compiled core (bnncore_runtime._kernels) was not built: the "
    "library (quantizers, layers, analysis, export, zoo) works without it, the "
    "engine (bnncore.engine) and bnncore_runtime.load do not. To build it, "
    "install a C compiler and the Python headers (Debian/Ubuntu: apt-get install "
    "gcc python3-dev) and run `pip install .` (or `pip install -e .`) again."
)

setup(
    ext_modules=[
        Extension(
            "bnncore_runtime._kernels",
            sources=_SOURCES,
            depends=_HEADERS,
            optional=not _core_required(),
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
