"""The rules both settings readers apply: the error they raise and the
logic of the :class:`~bnncore_service.config.Settings` validators and
methods, which :mod:`bnncore_service.settings_env` applies without pydantic.

Neither reader is imported here, so each imports this module and
``settings_env`` defers to ``config`` without an import cycle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnncore_service.api_keys import parse_api_keys

if TYPE_CHECKING:
    from bnncore_service.preload import PreloadTarget

__all__ = [
    "SettingsError",
    "api_key_scopes",
    "normalise_preload",
    "preload_targets",
    "resolved_database_url",
    "split_origins",
]


class SettingsError(ValueError):
    """A ``BNN_*`` environment variable that does not hold a valid value.

    The message is one line naming each bad variable, the value received
    (never the value of a secret) and the expected form.
    """


def split_origins(value: object) -> object:
    """``BNN_CORS_ORIGINS`` as a list: a JSON list, or origins separated by
    commas (blank entries dropped); a non-string is returned unchanged.

    Raises:
        ValueError: text starting with ``[`` that is not JSON.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [o.strip() for o in text.split(",") if o.strip()]
    return value


def normalise_preload(text: str) -> str:
    """``BNN_PRELOAD`` in its normal form (``name[:version]`` entries joined
    by commas, repeats dropped).

    Raises:
        ValueError: an entry that is not ``name`` or ``name:version``.
    """
    return ",".join(map(str, preload_targets(text)))


def preload_targets(preload: str) -> tuple[PreloadTarget, ...]:
    """``BNN_PRELOAD`` parsed: the models to load at start-up."""
    from bnncore_service.preload import parse_preload  # imports its runner too

    return parse_preload(preload)


def api_key_scopes(api_keys: Any) -> dict[str, frozenset[str]]:
    """``BNN_API_KEYS`` (a secret, or ``None``) parsed: key → scopes (empty:
    no authentication).

    Raises:
        ValueError: a malformed entry, named by position (never by the key).
    """
    if api_keys is None:
        return {}
    return parse_api_keys(api_keys.get_secret_value())


def resolved_database_url(database_url: str | None, data_dir: Path) -> str:
    """The database URL, defaulting to SQLite inside ``data_dir``."""
    if database_url:
        return database_url
    path = (data_dir / "registry.sqlite3").resolve()
    return f"sqlite:///{path}"
