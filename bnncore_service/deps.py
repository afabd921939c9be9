"""FastAPI dependencies, as ``Annotated`` aliases.

Every dependency that only reads ``app.state`` is ``async def``: FastAPI runs
a plain ``def`` dependency in its thread pool, a hop of about 0.3 ms per
dependency per request (docs/inference.md, "Where the time goes").

Importing this module imports neither TensorFlow nor Keras (the inference
replica's routes use it): :class:`~bnncore_service.runtime.Runtime` is named
for type checkers only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Request

from bnncore_service.config import Settings
from bnncore_service.store import Store

if TYPE_CHECKING:
    from bnncore_service.runtime import Runtime

__all__ = [
    "ModelName",
    "RuntimeDep",
    "SettingsDep",
    "StoreDep",
    "VersionNumber",
]


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    """The registry opened by the app's lifespan."""
    return request.app.state.store


async def get_runtime(request: Request) -> Runtime:
    """The app's build executor and model cache."""
    return request.app.state.runtime


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
if TYPE_CHECKING:
    RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
else:  # the class is not imported at run time (it imports Keras)
    RuntimeDep = Annotated[Any, Depends(get_runtime)]

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
