"""CaseOptimizer raises what Larq raises: TypeError for arguments of the wrong
type; ValueError, when built, for overlapping predicates and idle predicates."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bnncore.layers import QuantDense
from bnncore.optimizers import Bop, CaseOptimizer, OptimizerTypeError


def model_and_data():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            QuantDense(3, kernel_quantizer="ste_sign", name="binary"),
            keras.layers.Dense(2, name="float"),
        ]
    )
    x = np.ones((4, 4), "float32")
    return model, x, np.zeros((4, 2), "float32")


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        pytest.param(((False, Bop()),), {}, r"\[0\]\[0\]=False", id="predicate"),
        pytest.param(
            ((Bop.is_binary_variable, False),), {}, r"\[0\]\[1\]=False", id="optimizer"
        ),
        pytest.param(
            ((Bop.is_binary_variable, Bop()),),
            {"default_optimizer": False},
            "default_optimizer=False",
            id="default",
        ),
        pytest.param((Bop(),), {}, r"pairs\[0\]=", id="not-a-pair"),
    ],
)
def test_wrong_types_raise_type_error(args, kwargs, field):
    with pytest.raises(TypeError, match=field) as raised:
        CaseOptimizer(*args, **kwargs)
    assert isinstance(raised.value, OptimizerTypeError)
    assert isinstance(raised.value, ValueError)  # what bnncore raised before


def test_a_pair_of_the_wrong_length_is_a_value_error():
    with pytest.raises(ValueError, match=r"pairs\[0\]=") as raised:
        CaseOptimizer((Bop.is_binary_variable, Bop(), None))
    assert not isinstance(raised.value, TypeError)


def test_two_predicates_claiming_one_variable_is_a_value_error():
    model, x, y = model_and_data()
    first = keras.optimizers.SGD(name="first")
    second = keras.optimizers.SGD(name="second")
    model.compile(
        CaseOptimizer(
            (lambda v: "binary" in v.path, first),
            (lambda v: v.path.endswith("kernel"), second),  # binary/kernel too
            default_optimizer=keras.optimizers.SGD(),
        ),
        "mse",
    )
    with pytest.raises(ValueError, match=r"'.*binary/kernel' is claimed by several"):
        model.fit(x, y, epochs=1, verbose=0)


def test_a_predicate_claiming_nothing_is_a_value_error():
    model, x, y = model_and_data()
    idle = keras.optimizers.SGD(name="idle")
    model.compile(
        CaseOptimizer(
            (lambda v: "binary" in v.path, keras.optimizers.SGD()),
            (lambda v: False, idle),
            default_optimizer=keras.optimizers.Adam(),
        ),
        "mse",
    )
    with pytest.raises(ValueError, match=r"pair\(s\) 1 \(idle\) claimed none of the 4"):
        model.fit(x, y, epochs=1, verbose=0)


def test_disjoint_predicates_train():
    model, x, y = model_and_data()
    case = CaseOptimizer(
        (Bop.is_binary_variable, Bop()), default_optimizer=keras.optimizers.SGD(0.1)
    )
    model.compile(case, "mse")
    model.fit(x, y, epochs=1, verbose=0)
    assert case.routes is not None
    assert sorted(case.routes.values()) == [0, 1, 1, 1]
