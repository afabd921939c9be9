"""The TF-free packages keep quantizer names of their own (they cannot import
``bnncore.quantizers``, which imports Keras); these tests hold each list to
the library's, so the two cannot drift.

Oracles: :func:`bnncore.quantizers.registry` (every name ``get`` accepts and
its class), :func:`bnncore.quantizers.function_aliases` and
:func:`bnncore.activations.names` for the names; the engine's
``recognize.is_sign``, which inspects the Keras objects themselves, for which
quantizers are signs.
"""

from __future__ import annotations

from typing import Any

import keras
import pytest

from bnncore import activations
from bnncore import quantizers as q
from bnncore.engine.recognize import is_sign
from bnncore_runtime import layers as runtime_layers
from bnncore_runtime.layer_rules import ACTIVATION_FACTORS, QUANTIZER_FACTORS

CLASSES = sorted({cls.__name__ for cls in q.registry().values()})
"""The canonical quantizer names: their class names."""


def test_quantizer_factors_are_keyed_by_every_quantizer_class() -> None:
    assert sorted(QUANTIZER_FACTORS) == CLASSES


@pytest.mark.parametrize("alias", sorted(q.function_aliases()))
def test_a_quantizer_used_as_an_activation_has_its_quantizers_factor(
    alias: str,
) -> None:
    cls = q.registry()[alias]
    assert ACTIVATION_FACTORS[alias] == QUANTIZER_FACTORS[cls.__name__]


def test_every_activation_bnncore_adds_has_a_factor() -> None:
    assert set(activations.names()) <= set(ACTIVATION_FACTORS)


@pytest.mark.parametrize("name", sorted(ACTIVATION_FACTORS))
def test_every_activation_factor_is_for_an_activation_keras_resolves(
    name: str,
) -> None:
    # A stale entry (a renamed or removed activation) is not resolved.
    assert callable(keras.activations.get(name))


def _serialized(name: str) -> tuple[Any, Any]:
    cls = q.registry()[name]
    instance = cls(precision=1) if cls is q.NoOp else q.get(name)
    return keras.saving.serialize_keras_object(instance), instance


@pytest.mark.parametrize("name", sorted(q.registry()))
def test_the_runtime_knows_the_sign_quantizers_the_engine_knows(name: str) -> None:
    # The runtime reads an export's serialized quantizer ({"class_name":
    # "SteSign", ...}); the engine the Keras object. Both must call the same
    # quantizers signs (a sign input quantizer makes a layer binary).
    serialized, instance = _serialized(name)
    assert runtime_layers._is_sign(serialized) == is_sign(instance)


@pytest.mark.parametrize("alias", sorted(q.function_aliases()))
def test_the_runtime_knows_the_sign_functions_the_engine_knows(alias: str) -> None:
    # A quantizer function named as it is registered (the name Larq's
    # tf.keras configs write).
    assert runtime_layers._is_sign(alias) == is_sign(activations.get(alias))
