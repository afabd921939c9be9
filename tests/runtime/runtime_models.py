"""Models and exports for the runtime tests."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Random weights everywhere; batch norms get signed gammas, random betas and
    means and positive variances, so that folding is not trivial."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = [rng.normal(0.0, 1.0, w.shape).astype(np.float32) for w in weights]
        if isinstance(layer, keras.layers.BatchNormalization):
            new[-1] = rng.uniform(0.2, 2.0, weights[-1].shape).astype(np.float32)
        layer.set_weights(new)
    return model


def export(model: keras.Model, directory: Path) -> Path:
    import bnncore as lq

    lq.export.save(model, directory)
    return directory
