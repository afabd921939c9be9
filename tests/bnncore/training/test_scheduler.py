"""HyperparameterScheduler: the value each step/epoch, and that training used it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bnncore.callbacks import HyperparameterScheduler
from bnncore.layers import QuantDense
from bnncore.optimizers import Bop, CaseOptimizer, is_binary_variable

# With y_pred = x @ w and loss = mean(y_pred), the gradient is the mean row of
# x, the same at every step: plain SGD ends at w = -sum(lr_t) * GRADIENT.
X = np.tile(np.array([[1.0, 2.0, -3.0]], "float32"), (8, 1))
GRADIENT = X.mean(axis=0)


def linear_model(learning_rate):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model.compile(keras.optimizers.SGD(learning_rate), lambda y, p: keras.ops.mean(p))
    return model


class Recorder(keras.callbacks.Callback):
    """Reads an optimizer attribute before each step (after the scheduler)."""

    def __init__(self, get):
        super().__init__()
        self.get = get
        self.values = []

    def on_train_batch_begin(self, batch, logs=None):
        self.values.append(float(keras.ops.convert_to_numpy(self.get())))


def kernel(model):
    return model.layers[0].kernel.numpy().ravel()


def test_step_schedule_sets_every_step_and_training_uses_it():
    model = linear_model(0.5)
    schedule = lambda step: 0.1 / (1 + step)  # noqa: E731
    scheduler = HyperparameterScheduler(schedule, "learning_rate", update_freq="step")
    recorder = Recorder(lambda: model.optimizer.learning_rate)
    y = np.zeros((8, 1), "float32")
    model.fit(X, y, epochs=3, batch_size=4, verbose=0, callbacks=[scheduler, recorder])
    expected = [schedule(t) for t in range(6)]
    np.testing.assert_allclose(recorder.values, expected, rtol=1e-6)
    np.testing.assert_allclose(kernel(model), -sum(expected) * GRADIENT, rtol=1e-5)

    # The index is the optimizer's iteration count, so a second fit continues.
    model.fit(X, y, epochs=1, batch_size=4, verbose=0, callbacks=[scheduler, recorder])
    np.testing.assert_allclose(recorder.values[6:], [schedule(6), schedule(7)])


def test_epoch_schedule_with_current_value_and_logs():
    model = linear_model(0.4)
    scheduler = HyperparameterScheduler(lambda epoch, lr: lr * 0.5, "learning_rate")
    recorder = Recorder(lambda: model.optimizer.learning_rate)
    history = model.fit(
        X,
        np.zeros((8, 1), "float32"),
        epochs=3,
        batch_size=4,
        verbose=0,
        callbacks=[scheduler, recorder],
    )
    per_epoch = [0.2, 0.1, 0.05]
    np.testing.assert_allclose(recorder.values, np.repeat(per_epoch, 2), rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], per_epoch, rtol=1e-6)
    np.testing.assert_allclose(kernel(model), -2 * sum(per_epoch) * GRADIENT, rtol=1e-5)


def test_bop_hyperparameters_inside_a_case_optimizer(capsys):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            QuantDense(3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"),
        ]
    )
    bop = Bop(threshold=1e-3, gamma=1e-2)
    case = CaseOptimizer(
        (is_binary_variable, bop), default_optimizer=keras.optimizers.SGD(0.1)
    )
    model.compile(case, "mse")
    schedulers = [
        HyperparameterScheduler(
            lambda t: 1e-2 * 0.5**t, "gamma", bop, update_freq="step", verbose=1
        ),
        HyperparameterScheduler(lambda e: 1e-4 * (e + 1), "threshold", bop),
    ]
    gammas, thresholds = Recorder(lambda: bop.gamma), Recorder(lambda: bop.threshold)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    history = model.fit(
        x,
        np.zeros((8, 3), "float32"),
        epochs=2,
        batch_size=4,
        verbose=0,
        callbacks=[*schedulers, gammas, thresholds],
    )
    np.testing.assert_allclose(gammas.values, [1e-2 * 0.5**t for t in range(4)])
    np.testing.assert_allclose(thresholds.values, [1e-4, 1e-4, 2e-4, 2e-4])
    np.testing.assert_allclose(history.history["threshold"], [1e-4, 2e-4])
    assert "Step 1: gamma changed from 0.01 to 0.005." in capsys.readouterr().out

    # Without `optimizer`, the model's CaseOptimizer has no gamma: clear error.
    with pytest.raises(ValueError, match="pass one of its `optimizers`"):
        model.fit(
            x,
            np.zeros((8, 3), "float32"),
            verbose=0,
            callbacks=[HyperparameterScheduler(lambda e: 1e-3, "gamma")],
        )


def test_unschedulable_hyperparameters_and_bad_arguments_are_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(), "mse")
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    for name, message in [
        ("beta_1", "not a variable"),
        ("momentum_of_nothing", "has no hyperparameter 'momentum_of_nothing'"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.fit(x, y, verbose=0, callbacks=[HyperparameterScheduler(abs, name)])
    with pytest.raises(ValueError, match="must return a number"):
        model.fit(
            x,
            y,
            verbose=0,
            callbacks=[HyperparameterScheduler(lambda e: "fast", "learning_rate")],
        )
    with pytest.raises(ValueError, match="update_freq='batch'"):
        HyperparameterScheduler(abs, "learning_rate", update_freq="batch")
    with pytest.raises(ValueError, match=r"schedule=0\.1"):
        HyperparameterScheduler(0.1, "learning_rate")
    with pytest.raises(ValueError, match="optimizer='adam'"):
        HyperparameterScheduler(abs, "learning_rate", optimizer="adam")
