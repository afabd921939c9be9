"""The README's Python examples run exactly as printed, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
# Blocks after this marker need a live service; test_readme_service.py runs them.
SKIP_MARKER = "<!-- client-example -->"


def python_blocks(text: str) -> list[str]:
    """Fenced ```python blocks, except the one right after the client marker."""
    blocks = []
    for match in re.finditer(
        r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", text, re.S
    ):
        if SKIP_MARKER in match.group("before"):
            continue
        blocks.append(match.group("code"))
    return blocks


def test_readme_has_examples():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 4


def test_readme_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for index, code in enumerate(python_blocks(README.read_text())):
        try:
            exec(compile(code, f"README.md block {index}", "exec"), namespace)
        except Exception as error:  # pragma: no cover - shown on failure
            raise AssertionError(f"README block {index} failed:\n{code}") from error
    printed = capsys.readouterr().out
    assert "(1, 10)" in printed
    assert "[[-1.  1.  1.  1.]]" in printed
    # Larq's published figures for its README model (406,528 1-bit and 522
    # 32-bit parameters, 52,904 bytes).
    assert "406528 522 52904" in printed


def _block(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def test_readme_zoo_table_is_the_generated_one():
    # docs/zoo.md's table is checked against the models by the zoo tests; the
    # README carries the same generated block.
    docs = (README.parent / "docs" / "zoo.md").read_text()
    start, end = "<!-- zoo-table:start", "<!-- zoo-table:end -->"
    readme_table = _block(README.read_text(), start, end)
    assert readme_table.count("\n| ") >= 15
    assert readme_table == _block(docs, start, end)


def test_readme_engine_table_is_the_benchmarks_output():
    # bench/engine.py writes this block into docs/engine.md; the README carries
    # the same generated block.
    docs = (README.parent / "docs" / "engine.md").read_text()
    start, end = "<!-- bench:engine:start", "<!-- bench:engine:end -->"
    readme_table = _block(README.read_text(), start, end)
    assert "QuickNet" in readme_table
    assert readme_table == _block(docs, start, end)
