"""FastAPI dependencies, as ``Annotated`` aliases.

Every dependency that only reads ``app.state`` is ``async def``: FastAPI runs
a plain ``def`` dependency in its thread pool, a hop of about 0.3 ms per
dependency per request (docs/inference.md, "Where the time goes").

Importing this module imports neither TensorFlow nor Keras (the inference
replica's routes use it). The registry's dependency, ``RegistryDep``, lives
beside its use cases in :mod:`bnncore_service.registry`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from bnncore_service.config import Settings
from bnncore_service.pathparams import (
    NAME_DESCRIPTION,
    NAME_PATTERN,
    VERSION_DESCRIPTION,
    VERSION_MAX,
    VERSION_MIN,
)

__all__ = [
    "ModelName",
    "SettingsDep",
    "VersionNumber",
]


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

# The rule is bnncore_service.pathparams's (the inference replica checks it
# there without FastAPI).
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description=NAME_DESCRIPTION)]
VersionNumber = Annotated[
    int, Path(ge=VERSION_MIN, le=VERSION_MAX, description=VERSION_DESCRIPTION)
]
