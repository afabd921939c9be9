"""The error envelope's OpenAPI model, :class:`ErrorResponse`, and the
``responses`` of the routes that answer with it (:func:`error_responses`,
:data:`ERROR_RESPONSES`). The envelope itself is built by
:mod:`bnncore_service.errors`, which imports no pydantic (the inference
replica starts without it); only route declarations need these.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ERROR_RESPONSES", "ErrorResponse", "error_responses"]


class ErrorResponse(BaseModel):
    """Every error: one message naming the offending field and value."""

    error: str = Field(examples=["definition.layers[0].units: ..."])


def error_responses(
    descriptions: Iterable[tuple[int, str]],
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: each status documented with the envelope."""
    return {
        status: {"model": ErrorResponse, "description": description}
        for status, description in descriptions
    }


ERROR_RESPONSES = error_responses(
    (
        (404, "Not found"),
        (413, "Larger than a configured limit"),
        (422, "Invalid request; the message names the field"),
        (503, "Too busy; retry later"),
    )
)
"""Error responses documented on every route."""
