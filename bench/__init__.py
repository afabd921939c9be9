"""Benchmarks: ``python -m bench`` runs them all, ``python -m bench NAME`` some.

Each module ``bench/<name>.py`` (names starting with ``_`` are helpers) is one
benchmark. It defines ``main() -> int | None``, prints what it measured,
including the ratios that support its claims (both sides measured in the same
run), and returns a non-zero exit code when a stated budget is missed.
"""
