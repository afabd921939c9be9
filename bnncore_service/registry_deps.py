"""The registry's FastAPI dependency: the routes' :data:`RegistryDep`.

Apart from :mod:`bnncore_service.registry` so that the registry imports no
FastAPI (the inference replica reads it without); ``from
bnncore_service.registry import RegistryDep`` still works (the registry
module hands these out on first use).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bnncore_service.registry import Registry

__all__ = ["RegistryDep", "get_registry"]


async def get_registry(request: Request) -> Registry:
    """The app's registry (opened by the app's lifespan)."""
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]
