"""bench/engine.py writes its table between the markers of README.md and
docs/engine.md (``--write-readme``) or docs/engine.md only (``--write-docs``)."""

from __future__ import annotations

import pytest

from bench import engine as bench_engine


def test_write_docs_replaces_only_the_block_between_the_markers(tmp_path):
    path = tmp_path / "README.md"
    start, end = bench_engine.START, bench_engine.END
    path.write_text(f"intro\n{start}\nold table\n{end}\nrest\n")
    bench_engine.write_docs("| new | table |", path)
    assert path.read_text() == f"intro\n{start}\n| new | table |\n{end}\nrest\n"
    bench_engine.write_docs("| newer |", path)
    assert path.read_text().count(start) == 1
    assert "| new | table |" not in path.read_text()


def test_write_docs_adds_the_markers_where_missing(tmp_path):
    path = tmp_path / "engine.md"
    path.write_text("# Engine\n")
    bench_engine.write_docs("| t |", path)
    text = path.read_text()
    assert text.startswith("# Engine\n")
    assert f"{bench_engine.START}\n| t |\n{bench_engine.END}" in text


@pytest.mark.parametrize("flag", ["--write-readme", "--write-docs"])
def test_writing_the_tables_needs_the_whole_benchmark(flag, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench_engine.main([flag, "--models", "MNIST"])
    assert stopped.value.code == 2
    assert "whole benchmark only" in capsys.readouterr().err
