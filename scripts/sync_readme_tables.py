"""Copies the generated tables of docs/zoo.md and docs/engine.md into README.md.

The tables are written by ``python -m bnncore.zoo.table`` and
``python -m bench engine``; this keeps the README's copies identical (a test
checks it).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = {
    "docs/zoo.md": ("<!-- zoo-table:start", "<!-- zoo-table:end -->"),
    "docs/engine.md": ("<!-- bench:engine:start", "<!-- bench:engine:end -->"),
}


def main() -> None:
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    for doc, (start, end) in BLOCKS.items():
        text = (ROOT / doc).read_text()
        block = text[text.index(start) : text.index(end)]
        before, rest = readme[: readme.index(start)], readme[readme.index(start) :]
        readme = before + block + rest[rest.index(end) :]
    readme_path.write_text(readme)


if __name__ == "__main__":
    main()
