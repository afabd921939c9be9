"""bnncore.quantizers.registry() and precision_of() against get() and built
quantizers."""

from __future__ import annotations

from typing import Any

import pytest

from bnncore import quantizers as q


def test_the_registry_is_every_name_get_accepts() -> None:
    registry = q.registry()
    assert sorted(registry) == q.names()
    for name, cls in registry.items():
        if name in ("NoOp", "noop", "NoOpQuantizer"):
            with pytest.raises(ValueError, match="needs arguments"):
                q.get(name)
            continue
        assert type(q.get(name)) is cls


def test_the_registry_keeps_larqs_names() -> None:
    registry = q.registry()
    assert registry["ste_sign"] is q.SteSign
    assert registry["dorefa_quantizer"] is registry["DoReFaQuantizer"] is q.DoReFa
    assert registry["NoOpQuantizer"] is q.NoOp


def test_the_registry_is_a_copy() -> None:
    q.registry().clear()
    assert "ste_sign" in q.registry()


@pytest.mark.parametrize(
    ("cls", "arguments"),
    [
        (q.SteSign, {}),
        (q.SteSign, {"clip_value": None}),
        (q.ApproxSign, {}),
        (q.SwishSign, {"beta": 2.0}),
        (q.SteHeaviside, {}),
        (q.MagnitudeAwareSign, {}),
        (q.SteTern, {"ternary_weight_networks": True}),
        (q.DoReFa, {}),
        (q.DoReFa, {"k_bit": 7, "mode": "weights"}),
        (q.NoOp, {"precision": 3}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else repr(v),
)
def test_precision_of_is_the_built_quantizers_precision(
    cls: type[q.Quantizer], arguments: dict[str, Any]
) -> None:
    assert q.precision_of(cls, arguments) == q.get_precision(cls(**arguments))


def test_precision_of_without_a_required_precision_is_none() -> None:
    assert q.precision_of(q.NoOp, {}) is None
