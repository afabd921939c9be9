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

__all__ = [
    "ModelName",
    "SettingsDep",
    "VersionNumber",
]


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

ModelName = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$",
        description="Registered model name",
    ),
]
VersionNumber = Annotated[
    int, Path(ge=1, le=2**31 - 1, description="Immutable version number")
]
