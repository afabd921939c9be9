"""The model cache frees what it evicts (issue 14, finding 4), in process.

A Keras model is a web of reference cycles, so it is freed only by the
cyclic garbage collector. With automatic collection switched off (so that
nothing but the cache collects), an evicted model must be gone when
``put`` returns, and the models still cached must be alive. The memory
figures over 40 real evictions are in ``test_hostile_resources.py``.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import keras
import pytest
from fastapi.testclient import TestClient

from bnncore_service.config import Settings
from bnncore_service.main import create_app
from bnncore_service.runtime import Built, ModelCache


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


def test_models_evicted_by_the_inference_cache_are_freed(
    tmp_path: Path, no_automatic_gc: None
) -> None:
    """The served-model cache (inference) collects after it evicts too: with
    automatic collection off, the first model is freed once the second one
    takes its place."""
    settings = Settings(data_dir=tmp_path / "data", model_cache_size=1, engine="keras")
    with TestClient(create_app(settings)) as client:
        refs = []
        for units in (3, 4):
            definition = {
                "input_shape": [4],
                "layers": [{"type": "Dense", "units": units}],
            }
            name = f"m{units}"
            reply = client.post(
                "/v2/models", json={"name": name, "definition": definition}
            )
            assert reply.status_code == 201, reply.text
            meta = client.get(f"/v2/models/{name}").json()
            body = {
                "inputs": [
                    {
                        "name": meta["inputs"][0]["name"],
                        "shape": [1, 4],
                        "datatype": "FP32",
                        "data": [1.0, 2.0, 3.0, 4.0],
                    }
                ]
            }
            reply = client.post(f"/v2/models/{name}/infer", json=body)
            assert reply.status_code == 200, reply.text
            service = client.app.state.inference
            (served,) = service._served.values()  # the cache holds one model
            refs.append(weakref.ref(served.model))
            del served
        deadline = time.monotonic() + 5
        while refs[0]() is not None and time.monotonic() < deadline:
            time.sleep(0.05)  # the collection runs on a worker thread
        assert refs[0]() is None
        assert refs[1]() is not None
