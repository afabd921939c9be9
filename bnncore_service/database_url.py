"""``BNN_DATABASE_URL`` read without SQLAlchemy, for the inference replica's
read-only store (``bnncore_service/store_reader.py``).

The full service hands the URL to SQLAlchemy (``bnncore_service.database``);
a replica, which only reads, connects through the DB-API driver itself and
accepts the two forms the service is tested with:

- ``sqlite:///path`` (relative to the working directory; ``sqlite:////abs``
  for an absolute path), the embedded default under ``BNN_DATA_DIR``;
- ``postgresql+psycopg://user:password@host:port/database?option=value``
  (``postgresql://`` means the same), read as SQLAlchemy reads it: user,
  password and database percent-decoded, every query option passed to
  libpq as a connection parameter (``sslmode=require``, ``connect_timeout=5``).

Anything else is refused with one line naming the variable, the URL (its
password hidden) and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

__all__ = ["DatabaseTarget", "DatabaseURLError", "check", "parse", "shown"]

ALLOWED = (
    "'sqlite:///path/registry.sqlite3' or "
    "'postgresql+psycopg://user:password@host:5432/database'"
)
"""The forms an inference replica reads, in words."""

_URL = re.compile(
    r"(?P<scheme>[A-Za-z][\w+.-]*)://"
    r"(?:(?P<user>[^:/@?]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<host>\[[^\]/?]*\]|[^:/?]*)"
    r"(?::(?P<port>[^/?]*))?"
    r"(?:/(?P<database>[^?]*))?"
    r"(?:\?(?P<query>.*))?",
    re.DOTALL,
)


class DatabaseURLError(ValueError):
    """``BNN_DATABASE_URL`` is malformed or its driver is not installed."""


@dataclass(frozen=True)
class DatabaseTarget:
    """Where the registry database is.

    Attributes:
        kind: ``"sqlite"`` or ``"postgresql"``.
        path: The SQLite file (``kind == "sqlite"``).
        connect: psycopg's keyword arguments (``kind == "postgresql"``):
            ``user``, ``password``, ``host``, ``port``, ``dbname`` as given,
            and the URL's query options.
        shown: The URL with its password hidden, for messages and logs.
    """

    kind: Literal["sqlite", "postgresql"]
    shown: str
    path: str | None = None
    connect: dict[str, Any] = field(default_factory=dict, repr=False)


def _hide(url: str) -> str:
    """The URL with the password between ``user:`` and ``@`` replaced by ``***``."""
    found = _URL.fullmatch(url)
    if found is None or found["password"] is None:
        return url
    start, end = found.span("password")
    return f"{url[:start]}***{url[end:]}"


def shown(url: str) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    return _hide(url)


def _refuse(url: str, why: str) -> DatabaseURLError:
    return DatabaseURLError(
        f"BNN_DATABASE_URL={_hide(url)!r}: {why}; an inference replica reads {ALLOWED}"
    )


def parse(url: str) -> DatabaseTarget:
    """Reads a registry URL (nothing connects, nothing is imported).

    Raises:
        DatabaseURLError: not one of the forms above: one line naming
            ``BNN_DATABASE_URL``, the URL received (password hidden) and
            what is allowed.
    """
    found = _URL.fullmatch(url)
    if found is None:
        raise DatabaseURLError(
            f"BNN_DATABASE_URL: not a database URL; expected e.g. {ALLOWED}"
        )
    scheme = found["scheme"]
    if scheme in ("sqlite", "sqlite+pysqlite"):
        if found["user"] is not None or found["host"] or found["port"] is not None:
            raise _refuse(url, "a SQLite URL names no user, host or port")
        if found["query"] is not None:
            raise _refuse(url, "a SQLite URL takes no options")
        if not found["database"]:
            raise _refuse(
                url, "an in-memory SQLite database cannot be shared with a replica"
            )
        return DatabaseTarget("sqlite", url, path=unquote(found["database"]))
    if scheme not in ("postgresql", "postgresql+psycopg"):
        raise _refuse(url, f"unknown database {scheme!r}")
    connect: dict[str, Any] = {}
    if found["user"]:
        connect["user"] = unquote(found["user"])
    if found["password"]:  # an empty one is no password, as for SQLAlchemy
        connect["password"] = unquote(found["password"])
    host = found["host"]
    if host.startswith("["):
        host = host[1:-1]
    if host:
        connect["host"] = host
    if found["port"]:
        if not found["port"].isdigit() or not 0 < int(found["port"]) < 65536:
            raise _refuse(
                url, f"port {found['port']!r} is not a number from 1 to 65535"
            )
        connect["port"] = int(found["port"])
    if found["database"]:
        connect["dbname"] = unquote(found["database"])
    for key, value in parse_qsl(found["query"] or "", keep_blank_values=True):
        if key in connect:
            raise _refuse(url, f"the option {key!r} is given twice")
        connect[key] = value
    return DatabaseTarget("postgresql", _hide(url), connect=connect)


def check(url: str) -> DatabaseTarget:
    """:func:`parse`, and for PostgreSQL the driver imported (cheap: nothing
    connects): what the replica checks before it starts.

    Raises:
        DatabaseURLError: see :func:`parse`; or psycopg is not installed.
    """
    target = parse(url)
    if target.kind == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError as error:
            raise DatabaseURLError(
                f"BNN_DATABASE_URL={target.shown!r} needs the "
                f"{error.name or 'psycopg'} module, which is not installed: pip "
                "install 'bnncore[postgres]' (the runtime image: build it with "
                "the postgres extra)"
            ) from None
    return target
