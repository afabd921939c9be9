"""Build of the compiled core of ``bnncore.engine`` (metadata lives in pyproject.toml).

The extension uses only the CPython C API and the buffer protocol. OpenMP is
used when the compiler accepts ``-fopenmp``; otherwise the kernels run on one
thread. No floating-point contraction (``-ffp-contract=off``): the fused
epilogue must round exactly like the separate Keras operations it replaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_SOURCE = os.path.join("bnncore", "engine", "_kernels.c")


def _compiler_accepts(compiler: list[str], flags: list[str]) -> bool:
    """True when ``compiler`` compiles and links a tiny OpenMP program with flags."""
    code = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        cmd = [*compiler, *flags, src, "-o", os.path.join(tmp, "probe")]
        result = subprocess.run(cmd, capture_output=True, check=False)
        return result.returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """``build_ext`` that adds OpenMP and optimisation flags for gcc/clang."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            compile_flags = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-fast-math"]
            link_flags: list[str] = []
            compiler = list(self.compiler.compiler_so[:1])
            if _compiler_accepts(compiler, ["-fopenmp"]):
                compile_flags.append("-fopenmp")
                link_flags.append("-fopenmp")
            else:
                print("bnncore: OpenMP not available; kernels run single-threaded")
            for ext in self.extensions:
                ext.extra_compile_args = [*compile_flags, *ext.extra_compile_args]
                ext.extra_link_args = [*link_flags, *ext.extra_link_args]
        super().build_extensions()


setup(
    ext_modules=[Extension("bnncore.engine._kernels", sources=[_SOURCE])],
    cmdclass={"build_ext": BuildExt},
)

if __name__ == "__main__" and len(sys.argv) == 1:  # pragma: no cover
    print("Use: pip install -e '.[dev]'  (or python setup.py build_ext --inplace)")
