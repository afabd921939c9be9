"""``BNN_API_KEYS``: the scopes a key can hold and the parser of the setting.

A leaf module (standard library only), so that the settings can check the
variable without importing the authentication middleware
(:mod:`bnncore_service.auth`, which re-exports these names).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["SCOPES", "parse_api_keys"]

SCOPES = ("read", "infer", "admin")
"""The scopes a key can hold."""

_KEY = re.compile(r"^[\x21-\x7e]{1,512}$")


def _key_error(message: str) -> ValueError:
    return ValueError(f"BNN_API_KEYS: {message}")


def _scopes(key_label: str, value: Any) -> frozenset[str]:
    items = value.split("+") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise _key_error(
            f"scopes of {key_label}: expected a list of scope names or '*', "
            f"received {value!r}"
        )
    names = [s.strip() for s in items]
    if not names or names == [""] or "*" in names:
        return frozenset(SCOPES)
    unknown = [s for s in names if s not in SCOPES]
    if unknown:
        raise _key_error(
            f"scopes of {key_label}: received {unknown[0]!r}; allowed: "
            f"{', '.join(SCOPES)} or '*'"
        )
    return frozenset(names)


def _check_key(key: Any, position: int) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise _key_error(
            f"key #{position + 1}: keys must be 1 to 512 printable ASCII "
            "characters without spaces"
        )
    return key


def parse_api_keys(text: str | None) -> dict[str, frozenset[str]]:
    """Parses ``BNN_API_KEYS`` into key → scopes.

    Raises:
        ValueError: naming the entry (by position, never by the key itself),
            what was received and what is allowed.
    """
    if text is None or not text.strip():
        return {}
    text = text.strip()
    keys: dict[str, frozenset[str]] = {}
    if text.startswith("{"):
        try:
            pairs = json.loads(text, object_pairs_hook=list)
        except ValueError as error:
            raise _key_error(f"not valid JSON ({error.__class__.__name__})") from None
        for position, (key, value) in enumerate(pairs):
            _check_key(key, position)
            if key in keys:
                raise _key_error(f"key #{position + 1} is given twice")
            keys[key] = _scopes(f"key #{position + 1}", value)
        return keys
    for position, entry in enumerate(text.split(",")):
        key, _, scopes = entry.strip().partition(":")
        _check_key(key, position)
        if key in keys:
            raise _key_error(f"key #{position + 1} is given twice")
        keys[key] = _scopes(f"key #{position + 1}", scopes)
    return keys
