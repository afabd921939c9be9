"""The definition language against the constructors it is generated from.

Oracles: Keras's and bnncore's own constructors (``inspect.signature`` and the
``get_config()`` of a layer built with the constructor's defaults), and
``bnncore.quantizers.get`` with the precision of the quantizer it builds.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, get_args

import keras
import pytest
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from bnncore import quantizers as bquantizers
from bnncore_service.schemas.common import snake_name
from bnncore_service.schemas.components import (
    QUANTIZER_TYPES,
    ConstraintObject,
    Initializer,
    InitializerObject,
    Quantizer,
    RegularizerObject,
    quantizer_bits,
)
from bnncore_service.schemas.layers import LAYER_TYPES, REFUSED, LayerSpec

SPECS = {name: spec for name, spec in LAYER_TYPES.items() if name != "Input"}

# Where the service's default is not the constructor's, and why. Anything
# else must be the constructor's own default.
SERVICE_DEFAULTS = {
    # Keras's None means keras.config.image_data_format(); the service only
    # runs channels_last data.
    **{
        (name, "data_format"): "channels_last"
        for name, spec in SPECS.items()
        if "data_format" in spec.model_fields
    },
    # Keras requires pool_size for average pooling; the service has always
    # taken max pooling's default for it.
    ("AveragePooling1D", "pool_size"): 2,
    ("AveragePooling2D", "pool_size"): 2,
    ("AveragePooling3D", "pool_size"): 2,
}
# Arguments the service accepts although the signature hides them in **kwargs.
KWARGS_FIELDS = {("LayerNormalization", "rms_scaling")}
BASE_FIELDS = {"type", "name", "inputs", "trainable"}


def _parameters(spec: type[LayerSpec]) -> dict[str, inspect.Parameter]:
    return {
        p.name: p
        for p in inspect.signature(spec._keras).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _spelled_out(value: Any, like: Any) -> Any:
    """An integer written once for all axes, repeated in the shape of ``like``
    (Keras's own spelling: ``1`` like ``(1, 1)`` is ``(1, 1)``)."""
    if isinstance(value, int) and isinstance(like, tuple):
        return tuple(_spelled_out(value, item) for item in like)
    return value


@pytest.mark.parametrize("name", list(SPECS))
def test_each_default_is_the_constructors_default(name: str) -> None:
    spec = SPECS[name]
    parameters = _parameters(spec)
    checked = 0
    for field, info in spec.model_fields.items():
        if field in BASE_FIELDS or (name, field) in KWARGS_FIELDS:
            continue
        assert field in parameters, f"{name}.{field} is not a constructor argument"
        keras_default = parameters[field].default
        default = None if info.default is PydanticUndefined else info.default
        if (name, field) in SERVICE_DEFAULTS:
            assert default == SERVICE_DEFAULTS[(name, field)]
        elif keras_default is inspect.Parameter.empty:
            assert info.is_required(), f"{name}.{field}: Keras requires it"
        else:
            assert not info.is_required(), f"{name}.{field}: Keras has a default"
            assert _spelled_out(default, keras_default) == keras_default, (
                f"{name}.{field}: service default {default!r}, "
                f"constructor default {keras_default!r}"
            )
        checked += 1
    assert checked == len(spec.model_fields) - len(BASE_FIELDS) - sum(
        (name, f) in KWARGS_FIELDS for f in spec.model_fields
    )


@pytest.mark.parametrize("name", list(SPECS))
def test_every_constructor_argument_is_a_field_or_refused(name: str) -> None:
    spec = SPECS[name]
    for argument in _parameters(spec):
        assert argument in spec.model_fields or argument in REFUSED, (
            f"{name}({argument}=...) is neither accepted nor refused"
        )
    for argument in REFUSED:
        assert argument not in spec.model_fields


REQUIRED_SAMPLES: dict[str, Any] = {
    "units": 3,
    "filters": 4,
    "kernel_size": 3,
    "pool_size": 2,
    "rate": 0.5,
    "activation": "relu",
    "scale": 2.0,
    "init_values": 0.1,
    "projection_dim": 4,
    "precision": 2,
    "target_shape": (4,),
    "dims": (1,),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_a_layer_of_defaults_has_the_config_of_keras_defaults(name: str) -> None:
    # The spec filled with its defaults builds the layer the constructor
    # builds from its own defaults: same get_config(), name aside.
    spec = SPECS[name]
    required = {
        p.name: REQUIRED_SAMPLES[p.name]
        for p in _parameters(spec).values()
        if p.default is inspect.Parameter.empty or (name, p.name) in SERVICE_DEFAULTS
        if p.name != "data_format"
    }
    ours = spec.model_validate({"type": name, **required}).create().get_config()
    theirs = spec._keras(**required).get_config()
    ours.pop("name", None)
    theirs.pop("name", None)
    assert ours == theirs


def test_every_buildable_quantizer_name_is_an_alias_of_the_service() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Quantizer)
    for alias, cls in bquantizers.registry().items():
        try:
            built = bquantizers.get(alias)
        except ValueError:  # needs arguments (NoOp): refused by name alone
            with pytest.raises(ValidationError):
                adapter.validate_python(alias)
            continue
        spec = adapter.validate_python(alias)
        assert spec.type == type(built).__name__ == cls.__name__
        assert quantizer_bits(spec) == bquantizers.get_precision(built)
        assert spec.create().get_config() == built.get_config()


@pytest.mark.parametrize(
    ("config", "bits"),
    [
        ({"type": "DoReFa", "k_bit": 5}, 5),
        ({"type": "DoReFa"}, 2),
        ({"type": "NoOp", "precision": 8}, 8),
        ({"type": "SteTern", "threshold_value": 0.1}, 2),
        ({"type": "SwishSign", "beta": 2.0}, 1),
    ],
    ids=["dorefa-k5", "dorefa-default", "noop-8", "ste-tern", "swish-sign"],
)
def test_quantizer_bits_is_the_built_quantizers_precision(
    config: dict[str, Any], bits: int
) -> None:
    spec = TypeAdapter(Quantizer).validate_python(config)
    assert quantizer_bits(spec) == bits
    assert bquantizers.get_precision(spec.create()) == bits


def test_the_quantizer_objects_are_the_library_classes() -> None:
    classes = {cls.__name__ for cls in bquantizers.registry().values()}
    assert set(QUANTIZER_TYPES) == classes
    for name, spec in QUANTIZER_TYPES.items():
        assert spec._target is getattr(bquantizers, name)


@pytest.mark.parametrize("name", list(SPECS))
def test_snake_name_is_the_name_keras_gives_the_layer(name: str) -> None:
    spec = SPECS[name]
    required = {
        p.name: REQUIRED_SAMPLES[p.name]
        for p in _parameters(spec).values()
        if p.default is inspect.Parameter.empty
    }
    keras_name = spec._keras(**required).name  # "conv2d" or "conv2d_3"
    assert re.sub(r"_\d+$", "", keras_name) == snake_name(name)


def test_initializer_aliases_are_the_names_keras_resolves() -> None:
    for alias in ("glorot_uniform", "he_normal", "lecun_uniform", "random_normal"):
        spec = TypeAdapter(Initializer).validate_python(alias)
        assert type(keras.initializers.get(alias)).__name__ == spec.type


def _component_specs() -> list[type[Any]]:
    specs = []
    for union in (ConstraintObject, InitializerObject, RegularizerObject):
        specs += list(get_args(get_args(union)[0]))
    return specs


@pytest.mark.parametrize("spec", _component_specs(), ids=lambda s: s.__name__)
def test_each_component_default_is_the_constructors_default(spec: Any) -> None:
    parameters = inspect.signature(spec._target).parameters
    for argument, parameter in parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        # Keras's kernel-layout axes are the one refusal.
        assert argument in spec.model_fields or argument in (
            "input_axes",
            "output_axes",
        ), f"{spec.__name__}({argument}=...) is neither accepted nor refused"
    for field, info in spec.model_fields.items():
        if field == "type":
            continue
        keras_default = parameters[field].default
        if keras_default is inspect.Parameter.empty:
            assert info.is_required()
        else:
            assert info.default == keras_default, f"{spec.__name__}.{field}"


@pytest.mark.parametrize("spec", _component_specs(), ids=lambda s: s.__name__)
def test_a_component_of_defaults_has_the_config_of_keras_defaults(spec: Any) -> None:
    ours = spec(type=spec.__name__[:-1]).create()
    theirs = spec._target()
    assert type(ours) is type(theirs)
    assert ours.get_config() == theirs.get_config()
