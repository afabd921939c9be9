"""bnncore.utils: Larq's ``larq.utils`` helpers, with Larq's behaviour.

Oracles: sizes worked out by hand (bits / 8, then / 1024 per unit step), and
the 2**i table of Larq's utils test (0.12 B ... 1,024.00 GiB), written out.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import bnncore as lq
from bnncore import utils


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        (0, "0.00 B"),
        (1, "0.12 B"),  # 0.125 bytes, rounded half to even
        (4, "0.50 B"),
        (8, "1.00 B"),
        (8 * 1023, "1,023.00 B"),
        (8 * 1024, "1.00 KiB"),
        (93_088 + 468 * 32, "13.19 KiB"),  # the MNIST tutorial BNN: 13,508 bytes
        (8 * 1024 * 1024 - 8, "1,024.00 KiB"),  # 1023.999 KiB rounds up, unit stays
        (8 * 1024**2, "1.00 MiB"),
        (8 * 1024**3 * 3 // 2, "1.50 GiB"),
        (8 * 1024**4, "1,024.00 GiB"),  # no TiB: GiB keeps growing
        (8 * 1024**4 * 1000, "1,024,000.00 GiB"),
    ],
    ids=lambda v: str(v),
)
def test_memory_as_readable_str(bits, text):
    assert utils.memory_as_readable_str(bits) == text


def test_memory_as_readable_str_powers_of_two():
    # 2**i bits for i = 0..43, as Larq's test lists them.
    values = [0.125, 0.25, 0.5] + [float(2**k) for k in range(10)]
    expected = [f"{v:.2f} B" for v in values]
    for unit in ("KiB", "MiB", "GiB"):
        expected += [f"{2**k:.2f} {unit}" for k in range(10)]
    expected.append("1,024.00 GiB")
    got = [utils.memory_as_readable_str(2**i) for i in range(44)]
    assert got == expected
    assert got[0] == "0.12 B" and got[13] == "1.00 KiB" and got[42] == "512.00 GiB"


def test_set_precision_sets_the_attribute_the_profile_reads():
    @utils.set_precision(8)
    def eight_bit(x):
        return x

    @utils.set_precision()
    def default(x):
        return x

    assert eight_bit.precision == 8
    assert default.precision == 32
    assert eight_bit(3) == 3  # the function itself is unchanged
    assert lq.quantizers.get_precision(eight_bit) == 8

    # The profile counts a kernel quantized by it at 8 bits.
    model = keras.Sequential(
        [keras.Input((4,)), lq.layers.QuantDense(3, kernel_quantizer=eight_bit)]
    )
    report = lq.models.profile(model)
    assert dict(report.layers[0].params_by_bits) == {8: 4 * 3, 32: 3}


def test_register_keras_custom_object_uses_the_class_name():
    @utils.register_keras_custom_object
    class LarqUtilsTestConstraint(keras.constraints.Constraint):
        def __call__(self, w):
            return keras.ops.clip(w, -0.5, 0.5)

    assert keras.saving.get_custom_objects()["LarqUtilsTestConstraint"] is (
        LarqUtilsTestConstraint
    )
    # Keras resolves the name in a config now.
    config = {"class_name": "LarqUtilsTestConstraint", "config": {}}
    constraint = keras.constraints.get(config)
    assert isinstance(constraint, LarqUtilsTestConstraint)
    got = keras.ops.convert_to_numpy(constraint(np.array([-2.0, 0.25, 2.0])))
    np.testing.assert_array_equal(got, [-0.5, 0.25, 0.5])


def test_register_alias_registers_the_alias():
    @utils.register_alias("larq_utils_test_degeneration")
    class Degeneration(keras.metrics.Mean):
        pass

    objects = keras.saving.get_custom_objects()
    assert objects["larq_utils_test_degeneration"] is Degeneration
    config = {"class_name": "larq_utils_test_degeneration", "config": {"name": "d"}}
    metric = keras.saving.deserialize_keras_object(config)
    assert isinstance(metric, Degeneration) and metric.name == "d"


def test_register_alias_rejects_a_non_string():
    with pytest.raises(TypeError, match="name=3"):
        utils.register_alias(3)  # type: ignore[arg-type]


class Holder:
    value = "original"


def test_patch_object_restores_the_attribute():
    holder = Holder()
    with utils.patch_object(holder, "value", "patched"):
        assert holder.value == "patched"
    assert holder.value == "original"


def test_patch_object_restores_after_an_exception():
    holder = Holder()
    with pytest.raises(RuntimeError), utils.patch_object(holder, "value", 42):
        assert holder.value == 42
        raise RuntimeError("inside")
    assert holder.value == "original"


def test_patch_object_needs_an_existing_attribute():
    with (
        pytest.raises(AttributeError, match="missing"),
        utils.patch_object(Holder(), "missing", 1),
    ):
        pass


def test_utils_is_reachable_as_in_larq():
    assert lq.utils is utils
