"""HyperparameterScheduler(log_name=...): Larq's key for the logged value."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bnncore.callbacks import HyperparameterScheduler
from bnncore.optimizers import CaseOptimizer


def test_two_schedules_of_one_hyperparameter_log_under_their_names(capsys):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    kernels = keras.optimizers.SGD(0.1, name="kernels")
    biases = keras.optimizers.SGD(0.1, name="biases")
    model.compile(
        CaseOptimizer(
            (lambda v: v.path.endswith("kernel"), kernels),
            (lambda v: v.path.endswith("bias"), biases),
        ),
        "mse",
    )
    schedules = [
        HyperparameterScheduler(
            lambda epoch: 0.1 / (epoch + 1),
            "learning_rate",
            kernels,
            log_name="lr_kernels",
            verbose=1,
        ),
        HyperparameterScheduler(
            lambda epoch: 0.01 * (epoch + 1), "learning_rate", biases, log_name="lr_b"
        ),
    ]
    x = np.ones((4, 3), "float32")
    history = model.fit(
        x, np.zeros((4, 1), "float32"), epochs=3, verbose=0, callbacks=schedules
    ).history
    np.testing.assert_allclose(history["lr_kernels"], [0.1, 0.05, 0.1 / 3], rtol=1e-6)
    np.testing.assert_allclose(history["lr_b"], [0.01, 0.02, 0.03], rtol=1e-6)
    assert "learning_rate" not in history
    assert "Epoch 1: lr_kernels changed from 0.1 to 0.05." in capsys.readouterr().out
    default = HyperparameterScheduler(lambda epoch: 0.1, "learning_rate")
    assert default.log_name == "learning_rate"


@pytest.mark.parametrize("log_name", ["", 3])
def test_bad_log_name_is_named(log_name):
    with pytest.raises(ValueError, match="log_name="):
        HyperparameterScheduler(lambda e: 0.1, "learning_rate", log_name=log_name)
