"""CaseOptimizer: per-variable routing, model.fit, config and .keras round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnncore.layers import QuantDense
from bnncore.optimizers import Bop, CaseOptimizer, is_binary_variable


def is_ternary(variable):
    return "quant_dense_ternary" in variable.path


def small_model():
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((4,)),
            QuantDense(
                5,
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
                name="quant_dense_binary",
            ),
            QuantDense(3, kernel_quantizer="ste_tern", name="quant_dense_ternary"),
            keras.layers.Dense(2, name="dense"),
        ]
    )


def one_sgd_step(model, optimizer):
    """Applies one step; returns {path: (before, gradient, after)}."""
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.ops.square(model(x)))
    grads = tape.gradient(loss, [v.value for v in variables])
    before = [v.numpy() for v in variables]
    optimizer.apply_gradients(zip(grads, variables, strict=True))
    return {
        v.path: (b, g.numpy(), v.numpy())
        for v, b, g in zip(variables, before, grads, strict=True)
    }


def is_float_kernel(variable):
    return variable.path.endswith("kernel") and "quant_dense" not in variable.path


def test_each_variable_is_updated_by_the_optimizer_that_claims_it():
    model = small_model()
    binary, ternary, kernels, default = (
        keras.optimizers.SGD(0.5, name="binary"),
        keras.optimizers.SGD(0.05, name="ternary"),
        keras.optimizers.SGD(0.005, name="kernels"),
        keras.optimizers.SGD(0.0005, name="default"),
    )
    case = CaseOptimizer(
        (is_binary_variable, binary),
        (is_ternary, ternary),
        (is_float_kernel, kernels),
        default_optimizer=default,
    )
    steps = one_sgd_step(model, case)
    expected_rate = {
        "quant_dense_binary/kernel": 0.5,
        "quant_dense_binary/bias": 0.0005,
        "quant_dense_ternary/kernel": 0.05,
        "quant_dense_ternary/bias": 0.05,
        "dense/kernel": 0.005,
        "dense/bias": 0.0005,
    }
    assert set(expected_rate) == {p.split("/", 1)[1] for p in steps}
    for path, (before, grad, after) in steps.items():
        rate = expected_rate[path.split("/", 1)[1]]
        expected = before - np.float32(rate) * grad
        if path.endswith("quant_dense_binary/kernel"):
            expected = np.clip(expected, -1.0, 1.0)  # its kernel_constraint
        np.testing.assert_allclose(after, expected, rtol=1e-6, atol=1e-7)
        assert np.any(grad != 0)
    by_name = {o.name: o for o in case.optimizers}
    for variable in model.trainable_variables:
        rate = expected_rate[variable.path.split("/", 1)[1]]
        chosen = case.optimizer_for(variable)
        assert float(chosen.learning_rate.numpy()) == pytest.approx(rate)
        assert case.routes[variable.path] == case.optimizers.index(chosen)
    assert all(int(by_name[n].iterations.numpy()) == 1 for n in by_name)
    assert int(case.iterations.numpy()) == 1


def test_unclaimed_variables_are_not_trained_without_default():
    model = small_model()
    with pytest.warns(UserWarning, match="no optimizer trains variable") as caught:
        case = CaseOptimizer((is_binary_variable, keras.optimizers.SGD(0.5)))
        steps = one_sgd_step(model, case)
    warned = " ".join(str(w.message) for w in caught)
    for path, (before, _, after) in steps.items():
        if path.endswith("quant_dense_binary/kernel"):
            assert np.any(after != before)
        else:
            np.testing.assert_array_equal(after, before)
            assert path in warned


def bnn(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6,)),
            QuantDense(8, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"),
            keras.layers.BatchNormalization(),
            QuantDense(
                3,
                input_quantizer="ste_sign",
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
            ),
        ]
    )


def compile_bnn(model, predicate):
    case = CaseOptimizer(
        (predicate, Bop(threshold=1e-6, gamma=1e-2)),
        default_optimizer=keras.optimizers.Adam(0.01),
    )
    model.compile(case, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return case


def test_keras_save_and_load_restores_routes_and_optimizer_state(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0)
    model = bnn()
    # A lambda is not saved: the loaded optimizer must route by the saved routes.
    case = compile_bnn(model, lambda v: is_binary_variable(v))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    assert int(case.optimizers[0].iterations.numpy()) == 8
    path = tmp_path / "bnn.keras"
    model.save(path)

    loaded = keras.models.load_model(path)
    restored = loaded.optimizer
    assert isinstance(restored, CaseOptimizer)
    assert isinstance(restored.optimizers[0], Bop)
    for variable in loaded.trainable_variables:
        expected = 0 if is_binary_variable(variable) else 1
        assert restored.optimizer_for(variable) is restored.optimizers[expected]
    assert len(restored.variables) == len(case.variables)
    for mine, theirs in zip(case.variables, restored.variables, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    # Both continue identically: same weights after one more epoch.
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    for mine, theirs in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_config_round_trip_keeps_registered_predicates_and_routes():
    model = small_model()
    case = CaseOptimizer(
        (is_binary_variable, Bop(gamma=1e-3)),
        (lambda v: v.path.endswith("bias"), keras.optimizers.SGD(0.1)),
        default_optimizer=keras.optimizers.Adam(1e-3),
    )
    case.build(model.trainable_variables)
    config = case.get_config()
    assert config["predicates"][1] is None  # a lambda is not saved
    clone = CaseOptimizer.from_config(config)
    assert clone.predicates[0] is is_binary_variable
    assert clone.get_config() == config
    clone.build(model.trainable_variables)
    for variable in model.trainable_variables:
        assert clone.routes[variable.path] == case.routes[variable.path]


def test_unrestored_predicate_without_routes_fails_clearly():
    unbuilt = CaseOptimizer(
        (lambda v: True, keras.optimizers.SGD(0.1)),
        default_optimizer=keras.optimizers.SGD(0.1),
    )
    clone = CaseOptimizer.from_config(unbuilt.get_config())
    model = small_model()
    with pytest.raises(ValueError, match=r"Predicate 0 .* not restored"):
        clone.build(model.trainable_variables)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((keras.optimizers.SGD(),), {}, r"predicate_optimizer_pairs\[0\]="),
        (((1, keras.optimizers.SGD()),), {}, r"predicate_optimizer_pairs\[0\]\[0\]"),
        (((is_binary_variable, "sgd"),), {}, r"predicate_optimizer_pairs\[0\]\[1\]"),
        ((), {"default_optimizer": "adam"}, "default_optimizer='adam'"),
        ((), {}, "Received neither"),
        ((), {"default_optimizer": keras.optimizers.SGD(), "clipnorm": 1}, "clipnorm"),
    ],
)
def test_bad_arguments_are_named(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CaseOptimizer(*args, **kwargs)


def test_same_optimizer_twice_and_learning_rate_are_refused():
    sgd = keras.optimizers.SGD()
    with pytest.raises(ValueError, match="only once"):
        CaseOptimizer((is_binary_variable, sgd), default_optimizer=sgd)
    case = CaseOptimizer(default_optimizer=keras.optimizers.SGD())
    assert not hasattr(case, "learning_rate")
    with pytest.raises(AttributeError, match="no learning rate"):
        case.learning_rate = 0.1
