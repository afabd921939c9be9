"""Type stub of the engine's compiled core (``_kernels.c``).

Arrays are passed through the buffer protocol (C-contiguous NumPy arrays of
the documented dtypes); ``geometry`` tuples are described in ``kernels.py``.
"""

from typing import Any

import numpy as np

def spin(n: int, /) -> None: ...
def gap(
    x: np.ndarray, out: np.ndarray, n: int, pixels: int, channels: int, /
) -> None: ...
def softmax(x: np.ndarray, out: np.ndarray, rows: int, channels: int, /) -> None: ...
def pool_configure(spin_ns: int, strike_limit: int, /) -> tuple[int, int]: ...
def bconv(
    x: np.ndarray,
    weights: np.ndarray,
    geometry: Any,
    out_layout: tuple[int, int, int],
    ops: list[tuple[Any, ...]],
    y: np.ndarray | None,
    y_packed: np.ndarray | None,
    residual: np.ndarray | None,
    threads: int,
    /,
) -> None: ...
def pack(
    x: np.ndarray,
    out: np.ndarray,
    rows: int,
    channels: int,
    groups: int,
    words_per_group: int,
    threads: int,
    /,
) -> None: ...
def unpack(
    words: np.ndarray,
    out: np.ndarray,
    rows: int,
    channels: int,
    groups: int,
    words_per_group: int,
    /,
) -> None: ...
def fconv(
    x: np.ndarray,
    kernel: np.ndarray,
    out: np.ndarray,
    geometry: tuple[int, ...],
    pad_value: float,
    depthwise: bool,
    threads: int,
    /,
) -> None: ...
def epilogue(
    y_in: np.ndarray,
    ops: list[tuple[Any, ...]],
    y: np.ndarray | None,
    y_packed: np.ndarray | None,
    residual: np.ndarray | None,
    geometry: tuple[int, ...],
    threads: int,
    /,
) -> None: ...
def fmaxpool(
    x: np.ndarray, out: np.ndarray, geometry: tuple[int, ...], threads: int, /
) -> None: ...
def maxpool(
    x: np.ndarray,
    out: np.ndarray,
    geometry: tuple[int, ...],
    or_mask: np.ndarray | None,
    threads: int,
    /,
) -> None: ...
def set_kernel(name: str, /) -> None: ...
def set_isa(name: str, /) -> None: ...
def isa() -> str: ...
def supported_isas() -> list[str]: ...
def kernel() -> str: ...
def features() -> dict[str, Any]: ...

class Program:
    """A plan's native steps held by the core (``csrc/program.h``)."""

    def run(
        self,
        arena: np.ndarray | None,
        n: int,
        bindings: tuple[tuple[int, np.ndarray, bool], ...],
        first: int,
        last: int,
        threads: int,
        /,
    ) -> None: ...
    def call(
        self,
        n: int,
        bindings: tuple[tuple[int, np.ndarray, bool], ...],
        threads: int,
        /,
    ) -> None: ...
    def steps(self) -> int: ...

def program(
    slot_bytes: list[int], slot_offsets: list[int], steps: list[Any], /
) -> Program: ...
def description() -> dict[str, Any]: ...
