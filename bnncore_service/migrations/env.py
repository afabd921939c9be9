"""Alembic's environment for the registry schema.

``bnncore_service.migrations.upgrade`` runs it with the connection it has opened (and
locked) in ``config.attributes["connection"]``; the ``alembic`` command line
is not needed and no ``alembic.ini`` exists. Run by hand (``alembic -c ...``),
it connects to the database of the ``BNN_*`` settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

config = context.config
connection = config.attributes.get("connection")


def _run(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # pragma: no cover - a manual ``alembic`` run
    from bnncore_service.config import load_settings

    engine = create_engine(load_settings().resolved_database_url())
    try:
        with engine.begin() as opened:
            _run(opened)
    finally:
        engine.dispose()
