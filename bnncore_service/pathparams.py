"""The path parameters of the model routes, ``{name}`` and ``{version}``: their
rule, in one place, for both roles.

The full service declares them to FastAPI (``ModelName``, ``VersionNumber`` in
:mod:`bnncore_service.deps`, built from :data:`NAME_PATTERN`,
:data:`VERSION_MIN` and :data:`VERSION_MAX`), which validates them with
pydantic. The inference replica, a Starlette app without FastAPI, validates
them with :func:`path_errors`: a name or a version in its plain form is
accepted by a regular expression; anything else goes to pydantic's own
validator of the same rule (made at first use), so that the value accepted
(pydantic's lax integers: ``"+1"``, ``" 1"``, ``"1.0"``, ``"1_0"``) and every
message are FastAPI's. This module imports neither FastAPI nor pydantic.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = [
    "NAME_DESCRIPTION",
    "NAME_PATTERN",
    "VERSION_DESCRIPTION",
    "VERSION_MAX",
    "VERSION_MIN",
    "path_errors",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"
"""A registered model name (pydantic's pattern syntax: ``$`` is the end)."""
NAME_DESCRIPTION = "Registered model name"
VERSION_MIN = 1
VERSION_MAX = 2**31 - 1
VERSION_DESCRIPTION = "Immutable version number"

_NAME = re.compile(NAME_PATTERN.removeprefix("^").removesuffix("$"))
_PLAIN_VERSION = re.compile(r"[1-9][0-9]{0,9}")

ErrorDetails = list[dict[str, Any]]


@functools.cache
def _adapters() -> dict[str, Any]:
    """pydantic's validators of the rule, as FastAPI makes them from
    ``deps.ModelName`` and ``deps.VersionNumber``."""
    from typing import Annotated, cast

    from pydantic import Field, TypeAdapter

    name = Annotated[str, Field(pattern=NAME_PATTERN)]
    version = Annotated[int, Field(ge=VERSION_MIN, le=VERSION_MAX)]
    return {
        "name": TypeAdapter(cast(Any, name)),
        "version": TypeAdapter(cast(Any, version)),
    }


def _plain(field: str, raw: str) -> Any:
    """``raw`` converted when it is in its plain form, else ``None``."""
    if field == "name":
        return raw if _NAME.fullmatch(raw) else None
    if _PLAIN_VERSION.fullmatch(raw):
        number = int(raw)
        return number if number <= VERSION_MAX else None
    return None


def path_errors(params: dict[str, Any]) -> tuple[dict[str, Any], ErrorDetails]:
    """Validates the ``name`` and ``version`` of a route's path parameters.

    Args:
        params: The path parameters as matched (strings); other keys are
            returned unchanged.

    Returns:
        The parameters converted (``version`` an ``int``) and the errors, in
        pydantic's form (``loc`` ``("path", field)``, ``msg``, ``input``;
        format them with :func:`bnncore_service.errors.format_validation_errors`),
        ``[]`` when both are valid.
    """
    values = dict(params)
    errors: ErrorDetails = []
    for field in ("name", "version"):
        if field not in params:
            continue
        raw = params[field]
        value = _plain(field, raw)
        if value is None:
            from pydantic import ValidationError

            try:
                value = _adapters()[field].validate_python(raw)
            except ValidationError as exc:
                for item in exc.errors():
                    errors.append({**item, "loc": ("path", field, *item["loc"])})
                continue
        values[field] = value
    return values, errors
