"""Alembic revisions of the registry schema (one module each, in order)."""
