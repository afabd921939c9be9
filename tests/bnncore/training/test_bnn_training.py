"""End to end: a BNN trained with CaseOptimizer(Bop, Adam) learns a non-linear task.

The task (generated here, no download): 64-bit inputs, 8 classes; class ``c``
has two antipodal modes, the random ±1 pattern ``p_c`` and ``-p_c``, and each
input bit is flipped with probability 0.2. Because ``x`` and ``-x`` share a
class, no linear classifier does well (least squares: about 18 % on held-out
data, chance is 12.5 %). The BNN — two binary layers (binary inputs and
kernels) with BatchNorm, then a float Dense — is asked for at least 85 %
held-out accuracy after 6 epochs (about 97 % observed for several seeds).
"""

from __future__ import annotations

import keras
import numpy as np

from bnncore import context
from bnncore.callbacks import HyperparameterScheduler
from bnncore.layers import QuantDense
from bnncore.optimizers import Bop, CaseOptimizer, is_binary_variable

CLASSES, BITS, NOISE = 8, 64, 0.2


def antipodal_task(n, seed=0):
    rng = np.random.default_rng(seed)
    patterns = rng.choice([-1.0, 1.0], size=(CLASSES, BITS))
    modes = np.concatenate([patterns, -patterns])
    mode = rng.integers(0, 2 * CLASSES, size=n)
    flips = rng.random((n, BITS)) < NOISE
    x = np.where(flips, -modes[mode], modes[mode]).astype("float32")
    return x, (mode % CLASSES).astype("int32")


def least_squares_accuracy(x_train, y_train, x_test, y_test):
    def design(x):
        return np.c_[x, np.ones(len(x))]

    targets = np.eye(CLASSES)[y_train]
    weights = np.linalg.lstsq(design(x_train), targets, rcond=None)[0]
    return np.mean(np.argmax(design(x_test) @ weights, axis=1) == y_test)


def binary_dense(units):
    return QuantDense(
        units,
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
        use_bias=False,
    )


def test_bnn_with_bop_and_adam_learns_and_flips_less_over_time():
    x, y = antipodal_task(3000)
    x_train, y_train, x_test, y_test = x[:2400], y[:2400], x[2400:], y[2400:]
    assert least_squares_accuracy(x_train, y_train, x_test, y_test) < 0.3

    keras.utils.set_random_seed(0)
    with context.metrics_scope(["flip_ratio"]):
        first, second = binary_dense(64), binary_dense(64)
    model = keras.Sequential(
        [
            keras.Input((BITS,)),
            first,
            keras.layers.BatchNormalization(momentum=0.9),
            second,
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.Dense(CLASSES),
        ]
    )
    bop = Bop(threshold=1e-6, gamma=1e-2)
    adam = keras.optimizers.Adam(0.01)
    model.compile(
        CaseOptimizer((is_binary_variable, bop), default_optimizer=adam),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    decay = HyperparameterScheduler(lambda epoch: 1e-2 * 0.5**epoch, "gamma", bop)
    history = model.fit(
        x_train, y_train, epochs=6, batch_size=64, verbose=0, callbacks=[decay]
    ).history

    accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy >= 0.85, accuracy

    for layer in (first, second):
        flips = history[f"flip_ratio/{layer.kernel_quantizer.name}"]
        assert len(flips) == 6 and flips[0] > 0.01
        assert flips[-1] < flips[0] / 4, flips
        assert model.optimizer.optimizer_for(layer.kernel) is bop
        assert set(np.unique(layer.kernel.numpy())) == {-1.0, 1.0}
    np.testing.assert_allclose(history["gamma"], [1e-2 * 0.5**e for e in range(6)])
    others = [v for v in model.trainable_variables if not is_binary_variable(v)]
    assert len(others) == 6  # two BatchNorms (gamma, beta) and the Dense
    assert all(model.optimizer.optimizer_for(v) is adam for v in others)
