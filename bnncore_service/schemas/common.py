"""Building blocks of the definition language: strict models and bounded types.

The bounds here are hard sanity limits of the language itself; the tighter,
configurable limits (``BNN_MAX_*``) are checked by :mod:`bnncore_service.estimate`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, cast, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

__all__ = [
    "HARD_MAX_DIM",
    "HARD_MAX_KERNEL",
    "Axis",
    "Bits",
    "Bool",
    "Dim",
    "Finite",
    "Fraction",
    "Int",
    "Kernel",
    "Name",
    "NonNegFloat",
    "PosFloat",
    "Seed",
    "SizeArg",
    "StrictModel",
    "as_tuple",
    "size_tuple",
    "snake_name",
    "type_tag",
]

HARD_MAX_DIM = 1 << 20
"""Largest value any size (units, filters, extent of an axis) may take at all."""
HARD_MAX_KERNEL = 1024
"""Largest kernel, pool, stride or dilation extent along one axis."""


_MAX_UNKNOWN = 5
"""Unknown fields of one object reported one by one; more make one error."""


def _shown(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


class StrictModel(BaseModel):
    """Base of every request model: unknown fields are an error, never ignored.

    A few unknown fields are reported one by one (``layers[0].foo: Extra
    inputs are not permitted``); an object with more than five makes one
    error listing the first ones and their count, so that a body of 100,000
    unknown keys costs one error, not 100,000 (each error costs microseconds
    to make and to format, with the interpreter lock held).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _many_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) > _MAX_UNKNOWN:
            fields = cls.model_fields
            unknown = [key for key in data if key not in fields]
            if len(unknown) > _MAX_UNKNOWN:
                shown = ", ".join(_shown(k) for k in unknown[:_MAX_UNKNOWN])
                raise ValueError(
                    f"{len(unknown):,} unknown fields ({shown}, ...); allowed: "
                    f"{', '.join(fields)}"
                )
        return data


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, received a boolean")
    return value


Int = Annotated[int, Strict()]
"""An integer (no string, float or boolean accepted)."""
Bool = Annotated[bool, Strict()]


Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"),
]
"""A layer or model name: a letter or ``_`` then up to 63 of ``[A-Za-z0-9_.-]``
(dots as in Keras's ``mobilenetv2_1.00_224``)."""

Dim = Annotated[int, Strict(), Field(ge=1, le=HARD_MAX_DIM)]
Kernel = Annotated[int, Strict(), Field(ge=1, le=HARD_MAX_KERNEL)]
SizeArg = Kernel | Annotated[tuple[Kernel, ...], Field(min_length=1, max_length=3)]
"""An integer, or a list with one integer per spatial axis."""
Axis = Annotated[int, Strict(), Field(ge=-6, le=6)]
Bits = Annotated[int, Strict(), Field(ge=1, le=32)]
Seed = Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)]

Finite = Annotated[
    float,
    BeforeValidator(_no_bool),
    Strict(),
    Field(ge=-1e9, le=1e9, allow_inf_nan=False),
]
"""A finite float: a JSON number (an integer is accepted too; a string or a
boolean is not)."""
PosFloat = Annotated[
    float, BeforeValidator(_no_bool), Strict(), Field(gt=0, le=1e9, allow_inf_nan=False)
]
NonNegFloat = Annotated[
    float, BeforeValidator(_no_bool), Strict(), Field(ge=0, le=1e9, allow_inf_nan=False)
]
Fraction = Annotated[
    float, BeforeValidator(_no_bool), Strict(), Field(ge=0, le=1, allow_inf_nan=False)
]


def as_tuple(value: int | list[int] | tuple[int, ...], rank: int) -> tuple[int, ...]:
    """``3`` → ``(3, 3)`` for rank 2; a list of ``rank`` values → a tuple.

    Raises:
        ValueError: if a list does not have ``rank`` items.
    """
    if isinstance(value, int):
        return (value,) * rank
    if len(value) != rank:
        raise ValueError(
            f"expected an integer or a list of {rank} integers, received "
            f"{list(value)!r}"
        )
    return tuple(value)


def size_tuple(value: int | tuple[int, ...]) -> tuple[int, ...]:
    """A :data:`SizeArg` field of a validated layer, which ``LayerSpec`` has
    already made a tuple (one value per spatial axis); the value is returned
    as it is, typed as what it holds."""
    return cast(tuple[int, ...], value)


def snake_name(type_name: str) -> str:
    """Keras's snake_case of a class name: ``QuantConv2D`` → ``quant_conv2d``,
    ``GlorotUniform`` → ``glorot_uniform`` (a layer's default name, an
    initializer's alias)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", type_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def type_tag(cls: type[BaseModel]) -> str:
    """The ``type`` of a layer or component class: its one-value ``Literal``."""
    tag: str = get_args(cls.model_fields["type"].annotation)[0]
    return tag
