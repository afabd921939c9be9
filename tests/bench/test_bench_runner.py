"""``python -m bench NAME --option``: options after the names reach the
selected benchmarks (``python -m bench serving --quick``), never the runner's
own arguments."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from bench import __main__ as runner


def _fake(monkeypatch: pytest.MonkeyPatch, name: str, main: Any) -> None:
    module = types.ModuleType(f"bench.{name}")
    module.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, f"bench.{name}", module)


def test_options_reach_the_selected_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def with_argv(argv: list[str] | None = None) -> int:
        seen["with_argv"] = argv
        return 0

    def without_argv() -> int:
        seen["without_argv"] = True
        return 3

    _fake(monkeypatch, "fake_a", with_argv)
    _fake(monkeypatch, "fake_b", without_argv)
    monkeypatch.setattr(runner, "available", lambda: ["fake_a", "fake_b", "other"])

    assert runner.main(["fake", "--quick", "--connections", "1,16"]) == 3
    assert seen == {
        "with_argv": ["--quick", "--connections", "1,16"],
        "without_argv": True,
    }

    seen.clear()
    assert runner.main(["fake_a"]) == 0
    assert seen == {"with_argv": []}  # not the runner's own "fake_a"
