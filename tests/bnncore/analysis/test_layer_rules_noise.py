"""The noise layers' rules (GaussianNoise, GaussianDropout, AlphaDropout)
against hand-computed answers and the built Keras layer.

At inference each is an identity: the output has the input's shape, the
layer creates no weights and makes no MACs.
"""

from __future__ import annotations

from types import SimpleNamespace

import keras
import pytest

from bnncore.analysis.layer_rules import RuleError, rule_for, rule_of

NOISE = {
    "GaussianNoise": {"stddev": 0.1},
    "GaussianDropout": {"rate": 0.2},
    "AlphaDropout": {"rate": 0.2},
}


@pytest.mark.parametrize("name", sorted(NOISE))
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)], ids=["r1", "r2", "r3"])
def test_noise_layers_are_identities_without_weights(
    name: str, shape: tuple[int, ...]
) -> None:
    layer = getattr(keras.layers, name)(**NOISE[name])
    layer(keras.Input(shape))
    rule = rule_of(layer)
    assert rule is not None and rule.name == name
    out = rule.output_shape(layer, [shape])
    assert out == shape  # hand: the input's shape
    assert (None, *out) == tuple(layer.compute_output_shape((None, *shape)))
    assert rule.weights is not None
    assert rule.weights(layer, [shape], out) == () == tuple(layer.weights)
    assert rule.macs is None
    # Estimable, but not in the service's definitions (no type for ``stddev``).
    assert rule.estimable and not rule.definable
    assert rule.intermediates(layer, [shape], out) == 0


def test_alpha_dropout_checks_its_noise_shape() -> None:
    rule = rule_for("AlphaDropout")
    fits = SimpleNamespace(noise_shape=(None, 1, 4))
    assert rule.output_shape(fits, [(3, 4)]) == (3, 4)
    with pytest.raises(RuleError) as caught:
        rule.output_shape(SimpleNamespace(noise_shape=(None, 2)), [(3,)])
    assert caught.value.field == "noise_shape"
    assert "[None, 3]" in caught.value.message
