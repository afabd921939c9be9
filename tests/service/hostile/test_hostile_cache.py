"""The model cache frees what it evicts (issue 14, finding 4), in process.

A Keras model is a web of reference cycles, so it is freed only by the
cyclic garbage collector. With automatic collection switched off (so that
nothing but the cache collects), an evicted model must be gone when
``put`` returns, and the models still cached must be alive. The memory
figures over 40 real evictions are in ``test_hostile_resources.py``.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import keras
import pytest

from service.runtime import Built, ModelCache


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _model(units: int) -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(units)(inputs))


def test_evicted_keras_models_are_freed_by_put(no_automatic_gc: None) -> None:
    cache = ModelCache(2)
    refs = []
    for i in range(5):
        model = _model(3 + i)
        refs.append(weakref.ref(model))
        cache.put(f"m{i}", Built(model=model, profile=None))
        del model
    assert cache.keys() == ["m3", "m4"]
    assert cache.evictions == 3
    assert [ref() is None for ref in refs] == [True, True, True, False, False]


def test_a_model_is_a_cycle_that_refcounting_alone_does_not_free(
    no_automatic_gc: None,
) -> None:
    """The control: without a collection, dropping the last reference to a
    Keras model leaves it alive (why the cache must collect)."""
    model = _model(3)
    ref = weakref.ref(model)
    del model
    assert ref() is not None
    gc.collect()
    assert ref() is None
