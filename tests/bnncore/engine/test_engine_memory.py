"""Weights are resident packed: memory counted by hand, by the profile, and by GC."""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
from engine_helpers import BINARY, randomize

import bnncore
from bnncore import engine
from bnncore.layers import QuantConv2D, QuantDense


def _small_bnn():
    inputs = keras.Input((8, 8, 64))
    y = QuantConv2D(64, 3, padding="same", pad_values=1.0, use_bias=False, **BINARY)(
        inputs
    )
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Flatten()(y)
    y = QuantDense(128, use_bias=False, **BINARY)(y)
    y = keras.layers.BatchNormalization()(y)
    return randomize(keras.Model(inputs, keras.layers.Dense(10)(y)))


def test_resident_bytes_by_hand():
    packed = engine.compile(_small_bnn())
    conv = 64 * 3 * 3 * 64 // 8  # one bit per binary weight
    dense = 128 * 8 * 8 * 64 // 8
    folded = 2 * 4 * (64 + 128)  # BN folds to a multiplier and an offset per channel
    head = 4 * (128 * 10 + 10)  # float dense kernel and bias
    assert packed.weight_bytes == conv + dense + folded + head


def test_resident_bytes_within_ten_percent_of_the_profile():
    model = _small_bnn()
    packed = engine.compile(model)
    budget = bnncore.models.profile(model).totals.memory_bytes
    # The profile's rule, by hand: binary weights at 1 bit, BatchNorm folded to
    # 2 floats per channel, other float weights at 32 bits.
    assert budget == (64 * 9 * 64 + 128 * 4096) // 8 + 2 * 4 * 192 + 4 * 1290
    assert packed.weight_bytes <= 1.1 * budget


def test_compiled_model_does_not_keep_the_latent_weights_alive():
    model = _small_bnn()
    packed = engine.compile(model)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 64)).astype(np.float32)
    expected = np.asarray(model(x, training=False))
    latent = weakref.ref(model.layers[1].kernel)
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None and latent() is None
    np.testing.assert_allclose(packed.predict(x), expected, rtol=0, atol=1e-5 * 100)
