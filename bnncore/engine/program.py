"""Whole-plan programs held by the compiled core: :mod:`bnncore_runtime.program`."""

from bnncore_runtime.program import (
    STEP_KINDS,
    CStep,
    Program,
    build_program,
    make_step,
)

__all__ = ["STEP_KINDS", "CStep", "Program", "build_program", "make_step"]
