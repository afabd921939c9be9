"""Build of the compiled core of ``bnncore.engine`` (metadata lives in pyproject.toml).

The extension uses only the CPython C API and the buffer protocol, and POSIX
threads for its worker pool. No floating-point contraction
(``-ffp-contract=off``): the fused epilogue must round exactly like the
separate Keras operations it replaces. AVX2 code is compiled per function
(``__attribute__((target("avx2")))``) and chosen at run time, so the build
runs on any x86-64 (or other) machine with gcc or clang.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_HERE = os.path.join("bnncore", "engine")
_SOURCES = [
    os.path.join(_HERE, "_kernels.c"),
    os.path.join(_HERE, "csrc", "conv.c"),
    os.path.join(_HERE, "csrc", "fconv.c"),
    os.path.join(_HERE, "csrc", "head.c"),
    os.path.join(_HERE, "csrc", "microkernels.c"),
    os.path.join(_HERE, "csrc", "pool.c"),
]
_HEADERS = [os.path.join(_HERE, "csrc", "bnn.h"), os.path.join(_HERE, "csrc", "pool.h")]


class BuildExt(build_ext):
    """``build_ext`` with optimisation and exact-rounding flags for gcc/clang."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            flags = ["-O3", "-std=gnu11", "-ffp-contract=off", "-fno-fast-math"]
            for ext in self.extensions:
                ext.extra_compile_args = [*flags, "-pthread", *ext.extra_compile_args]
                ext.extra_link_args = ["-pthread", *ext.extra_link_args]
        super().build_extensions()


setup(
    ext_modules=[
        Extension("bnncore.engine._kernels", sources=_SOURCES, depends=_HEADERS)
    ],
    cmdclass={"build_ext": BuildExt},
)
