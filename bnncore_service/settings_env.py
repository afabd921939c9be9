"""The ``BNN_*`` settings read without pydantic, for the inference replica.

:class:`bnncore_service.config.Settings` (pydantic-settings) defines the
settings and decides every case; importing it and building its schema costs
a replica a large share of its start. :func:`read_settings` reads the common,
unambiguous form of each variable with the standard library and hands
everything else to :func:`bnncore_service.config.load_settings`, so that a
value outside these forms gets pydantic's own answer and one-line message.
For any environment it returns settings equal, field by field, to
``load_settings()``'s, or what ``load_settings()`` returns or raises.

The forms read here (each proven equal to pydantic's reading by
``tests/service/test_settings_env.py``); anything else is deferred:

- names: exactly ``BNN_<FIELD>`` in upper case (pydantic-settings ignores
  case: another spelling of a field's name is deferred); other ``BNN_*``
  names are ignored, as pydantic-settings ignores them;
- integers: ``-?[0-9]{1,18}``; numbers: ``-?[0-9]{1,15}(.[0-9]{1,15})?``;
  both within the field's bounds;
- booleans: ``0 1 f t n y no on off yes true false`` in any ASCII case;
- a field with a pattern: printable ASCII matching it; other strings and
  paths: any value; ``BNN_CORS_ORIGINS`` and ``BNN_PRELOAD`` through the
  same functions as the ``Settings`` validators (:func:`split_origins`,
  :func:`normalise_preload`); ``BNN_API_KEYS`` parsed as ``load_settings``
  checks it.

The field table (kinds, defaults, bounds, patterns) is generated from
``Settings.model_fields`` into :mod:`bnncore_service.settings_fields`
(``python -m bnncore_service.config --write-fields``).
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bnncore_service.settings_fields import FIELDS, PREFIX
from bnncore_service.settings_rules import (
    SettingsError,
    api_key_scopes,
    normalise_preload,
    preload_targets,
    resolved_database_url,
    split_origins,
)

if TYPE_CHECKING:
    from bnncore_service.config import Settings
    from bnncore_service.preload import PreloadTarget

__all__ = [
    "EnvSettings",
    "Secret",
    "SettingsError",
    "api_key_scopes",
    "fast_settings",
    "normalise_preload",
    "preload_targets",
    "read_settings",
    "resolved_database_url",
    "split_origins",
]

KINDS = ("str", "path", "int", "float", "bool", "secret", "origins", "preload")
"""The kinds of field the table names: ``str`` (a plain or patterned string,
``None`` by default if optional), ``path`` (a :class:`~pathlib.Path`),
``int``, ``float``, ``bool``, ``secret`` (``SecretStr | None``), ``origins``
(a list of strings through :func:`split_origins`) and ``preload`` (a string
through :func:`normalise_preload`)."""


class Secret:
    """A secret string, shown as ``**********`` (as pydantic's ``SecretStr``)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself."""
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"


_NAMES = tuple(row[0] for row in FIELDS)
_HIDDEN = frozenset(row[0] for row in FIELDS if row[5])


class EnvSettings:
    """The settings as :func:`read_settings` reads them: every
    :class:`~bnncore_service.config.Settings` field as an attribute of the
    same type and value, and its three methods."""

    __slots__ = _NAMES

    # Those the methods read (every field is set: see settings_fields.py).
    data_dir: Path
    database_url: str | None
    api_keys: Secret | None
    preload: str

    def __init__(self, values: Mapping[str, Any]) -> None:
        for name in _NAMES:
            setattr(self, name, values[name])

    def preload_targets(self) -> tuple[PreloadTarget, ...]:
        """``BNN_PRELOAD`` parsed: the models to load at start-up."""
        return preload_targets(self.preload)

    def api_key_scopes(self) -> dict[str, frozenset[str]]:
        """``BNN_API_KEYS`` parsed: key → scopes (empty: no authentication).

        Raises:
            ValueError: a malformed entry, named by position.
        """
        return api_key_scopes(self.api_keys)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside ``data_dir``."""
        return resolved_database_url(self.database_url, self.data_dir)

    def __repr__(self) -> str:
        shown = (
            f"{name}={getattr(self, name)!r}" for name in _NAMES if name not in _HIDDEN
        )
        return f"EnvSettings({', '.join(shown)})"


class _NotReadError(Exception):
    """A value outside the forms read here: ``load_settings`` decides."""


_INT = re.compile(r"-?[0-9]{1,18}")
_FLOAT = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,15})?")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_BOOLS = {
    **dict.fromkeys(("0", "f", "n", "no", "off", "false"), False),
    **dict.fromkeys(("1", "t", "y", "on", "yes", "true"), True),
}
_PATTERNS = {row[0]: re.compile(row[4]) for row in FIELDS if row[4] is not None}


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
"""The bound signs of the field table (``settings_fields.FIELDS``)."""


def _within(value: float, bounds: tuple[tuple[str, float], ...]) -> bool:
    return all(_COMPARE[sign](value, bound) for sign, bound in bounds)


def _value(name: str, kind: str, text: str, bounds: Any) -> Any:
    """The field's value read from ``text``, or :class:`_NotReadError`."""
    value: Any
    if kind in ("int", "float"):
        if not (_INT if kind == "int" else _FLOAT).fullmatch(text):
            raise _NotReadError
        value = int(text) if kind == "int" else float(text)
        if not _within(value, bounds):
            raise _NotReadError
        return value
    if kind == "bool":
        if not text.isascii() or text.lower() not in _BOOLS:
            raise _NotReadError
        return _BOOLS[text.lower()]
    if kind == "str":
        pattern = _PATTERNS.get(name)
        if pattern is not None and not (
            _PRINTABLE.fullmatch(text) and pattern.search(text)
        ):
            raise _NotReadError
        return text
    if kind == "path":
        return Path(text)
    if kind == "secret":
        return Secret(text)
    try:
        if kind == "origins":
            value = split_origins(text)
            if isinstance(value, list) and all(isinstance(o, str) for o in value):
                return value
        elif kind == "preload":
            return normalise_preload(text)
    except ValueError:
        pass
    raise _NotReadError


def _default(kind: str, default: Any) -> Any:
    if kind == "path":
        return Path(default)
    if kind == "origins":
        return list(default)
    if kind == "secret" and default is not None:
        return Secret(default)
    return default


def fast_settings(environ: Mapping[str, str]) -> EnvSettings | None:
    """The settings of ``environ`` if every ``BNN_*`` variable in it is in a
    form read here, else ``None`` (``load_settings`` must decide).

    ``BNN_API_KEYS`` is not parsed here (:func:`read_settings` checks it).
    """
    expected = {f"{PREFIX}{name}".lower(): f"{PREFIX}{name.upper()}" for name in _NAMES}
    prefix = PREFIX.lower()
    for key in environ:
        lowered = key.lower()
        if lowered.startswith(prefix) and expected.get(lowered, key) != key:
            return None  # another spelling of a field's name
    values: dict[str, Any] = {}
    for name, kind, default, bounds, _pattern, _hidden in FIELDS:
        text = environ.get(f"{PREFIX}{name.upper()}")
        if text is None:
            values[name] = _default(kind, default)
            continue
        try:
            values[name] = _value(name, kind, text, bounds)
        except _NotReadError:
            return None
    return EnvSettings(values)


def read_settings() -> Settings:
    """The settings of the ``BNN_*`` environment variables, without
    importing pydantic when every variable is in a common form (see the
    module docstring); otherwise ``config.load_settings()``'s.

    Returns:
        An :class:`EnvSettings` equal to ``load_settings()``'s
        :class:`~bnncore_service.config.Settings` (typed as it: the same
        attributes and methods), or that ``Settings``.

    Raises:
        SettingsError: what ``load_settings()`` raises: naming every bad
            ``BNN_*`` variable, what it holds and the expected form.
    """
    settings = fast_settings(os.environ)
    if settings is not None:
        try:
            settings.api_key_scopes()  # checked as load_settings checks it
        except ValueError:
            settings = None
    if settings is None:
        from bnncore_service.config import load_settings

        return load_settings()
    return cast("Settings", settings)
