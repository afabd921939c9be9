"""The registry module (issue 18): its use cases over a real store, the one
model cache shared by reports and inference, and the layering (routes call
use cases; only the registry reads the store's definitions).

Oracles: the stored definition's own content hash (``content_hash`` of the
normalized form), the objects the cache hands out (identity), hand-counted
cache entries and the ``model_evicted`` lines the log records.
"""

from __future__ import annotations

import ast
import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

import bnncore_service
from bnncore_service.builder import plan
from bnncore_service.config import Settings
from bnncore_service.errors import NotFoundError
from bnncore_service.main import create_app
from bnncore_service.model_cache import Built, ModelCache, model_key
from bnncore_service.registry import Registry
from bnncore_service.runtime import Runtime
from bnncore_service.schemas.definitions import Definition, content_hash
from bnncore_service.store import Store

PACKAGE = Path(bnncore_service.__file__).parent


def _dense(units: int) -> dict[str, Any]:
    return {"input_shape": [4], "layers": [{"type": "Dense", "units": units}]}


def _evicted(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of every ``model_evicted`` line (``logs.log_event``)."""
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "event", None) == "model_evicted"
    ]


def _evictions(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [(f["cache"], f["key"], f["reason"]) for f in _evicted(caplog)]


# ---------------------------------------------------------------------------
# The one cache: one entry per (definition, weights) with both parts
# ---------------------------------------------------------------------------


def test_one_entry_holds_the_built_model_and_its_served_form(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    cache = ModelCache(2)
    a, b, c = (Built(model=k, profile=None) for k in "abc")
    cache.put("a", a)
    assert cache.put_served("a", "served-a") is False  # same entry, no eviction
    assert len(cache) == 1 and cache.get("a") is a and cache.served("a") == "served-a"
    cache.put("b", b)
    assert cache.loaded() == {"a": "served-a"} and cache.loaded_count() == 1
    # Served "a" is the most recent now; a third model evicts "b", not "a".
    assert cache.served("a") == "served-a"
    cache.put("c", c)
    assert cache.keys() == ["a", "c"] and cache.evictions == 1
    assert _evictions(caplog) == [("build", "b", "cache_full")]
    cache.put("d", Built(model="d", profile=None))
    # "a" leaves with both parts: one eviction, logged for each part.
    assert cache.keys() == ["c", "d"] and cache.evictions == 2
    assert cache.get("a") is None and cache.served("a") is None
    assert _evictions(caplog)[1:] == [
        ("build", "a", "cache_full"),
        ("serving", "a", "cache_full"),
    ]


def test_unload_drops_only_the_served_form(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cache = ModelCache(2)
    built = Built(model="m", profile=None)
    cache.put("m", built)
    cache.put_served("m", "served")
    assert cache.has_served("m")
    assert cache.unload("m") is True
    assert cache.unload("m") is False  # nothing left to unload
    assert not cache.has_served("m") and cache.loaded_count() == 0
    assert cache.get("m") is built and len(cache) == 1
    assert _evictions(caplog) == [("serving", "m", "unload")]
    # A served form alone (the inference replica): unloading empties the slot.
    cache.put_served("r", "runtime-model")
    assert cache.get("r") is None and cache.served("r") == "runtime-model"
    cache.unload("r")
    assert cache.keys() == ["m"]


def test_has_served_leaves_the_lru_order_alone() -> None:
    cache = ModelCache(2)
    cache.put_served("old", "x")
    cache.put_served("new", "y")
    assert cache.has_served("old")  # a state query, not a use
    cache.put_served("third", "z")
    assert cache.keys() == ["new", "third"]


def test_model_key_and_its_log_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    digest, sha = "a" * 64, "b" * 64
    assert model_key(digest, None) == digest
    assert model_key(digest, sha) == f"{digest}+weights:{sha}"
    cache = ModelCache(1)
    cache.put(model_key(digest, sha), Built(model=1, profile=None))
    cache.put("other", Built(model=2, profile=None))
    (fields,) = _evicted(caplog)
    assert (fields["key"], fields["weights"], fields["size"]) == (
        digest[:12],
        sha[:12],
        1,
    )


# ---------------------------------------------------------------------------
# The use cases over a real store and runtime (no HTTP)
# ---------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    settings = Settings(data_dir=tmp_path / "data", model_cache_size=4)
    store = Store(settings).open()
    runtime = Runtime(settings)
    try:
        yield Registry(settings, store, runtime)
    finally:
        runtime.close()
        store.close()


def _plan(registry: Registry, definition: dict[str, Any]) -> Any:
    adapter: TypeAdapter[Any] = TypeAdapter(Definition)
    return plan(adapter.validate_python(definition), registry.settings)


def test_register_resolve_and_delete(registry: Registry) -> None:
    async def scenario() -> None:
        model_plan = _plan(registry, _dense(3))
        record, created = await registry.register("m", model_plan, "Sequential")
        assert created and (record.name, record.version) == ("m", 1)
        again, created = await registry.register("m", model_plan, "Sequential")
        assert not created and again.version == 1
        # 4 inputs x 3 units + 3 biases, counted by hand.
        assert record.params == 15
        assert record.inputs[0]["shape"] == [-1, 4]
        assert record.outputs[0]["shape"] == [-1, 3]
        other, _ = await registry.register(
            "m", _plan(registry, _dense(5)), "Sequential"
        )
        assert other.version == 2

        info = await registry.describe("m", None, all_versions=True)
        assert (info.record.version, info.versions, info.weights) == (2, [1, 2], None)
        stored = await registry.definition("m", 1)
        assert content_hash(stored) == record.content_hash
        await registry.register("a", model_plan, "Sequential")  # same definition
        listed = [(r.name, r.version) for r in await registry.records()]
        assert listed == [("a", 1), ("m", 1), ("m", 2)]
        assert [r.version for r in await registry.records("m")] == [1, 2]
        assert await registry.records("nope") == []
        assert await registry.versions("m") == [1, 2]
        assert await registry.versions("nope") == []
        assert await registry.ping() is True

        await registry.delete("m", 2)
        with pytest.raises(NotFoundError, match="'m' version 2 is not registered"):
            await registry.record("m", 2)
        with pytest.raises(NotFoundError, match="'m' version 2 is not registered"):
            await registry.delete("m", 2)
        with pytest.raises(NotFoundError, match="model 'nope' is not registered"):
            await registry.profile("nope", None)

    asyncio.run(scenario())


def test_a_version_becomes_a_model_along_one_cached_path(registry: Registry) -> None:
    async def scenario() -> None:
        model_plan = _plan(registry, _dense(3))
        record, _ = await registry.register("m", model_plan, "Sequential")
        builds = registry.runtime.builds  # type: ignore[union-attr]
        assert builds == 1  # registering built it
        replanned = registry.plan_of(record.content_hash)
        assert replanned.content_hash == record.content_hash
        assert replanned.normalized == model_plan.normalized
        first = await registry.built(record)
        second = await registry.built(record)
        # The registration's build, from the one cache: nothing built again.
        assert first is second
        assert registry.runtime.builds == builds  # type: ignore[union-attr]
        assert registry.cache.get(record.content_hash) is first
        assert first.profile.totals.params == record.params

    asyncio.run(scenario())


# ---------------------------------------------------------------------------
# One cache for reports and inference, in the app
# ---------------------------------------------------------------------------


def _infer(client: TestClient, name: str) -> None:
    meta = client.get(f"/v2/models/{name}").json()
    tensor = {
        "name": meta["inputs"][0]["name"],
        "shape": [1, 4],
        "datatype": "FP32",
        "data": [1.0, -2.0, 3.0, 0.5],
    }
    reply = client.post(f"/v2/models/{name}/infer", json={"inputs": [tensor]})
    assert reply.status_code == 200, reply.text


def test_reports_and_inference_share_one_cache_of_one_size(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_cache_size=2, engine="keras")
    with TestClient(create_app(settings)) as client:
        state = client.app.state  # type: ignore[attr-defined]
        cache = state.runtime.cache
        assert state.inference.cache is cache
        reply = client.post("/v2/models", json={"name": "a", "definition": _dense(3)})
        assert reply.status_code == 201, reply.text
        digest = reply.json()["content_hash"]
        _infer(client, "a")
        # Served from the registration's build: the same Keras model object.
        (served,) = state.inference._served.values()
        assert served.model is cache.get(digest).model
        assert len(cache) == 1 and state.runtime.builds == 1
        index = client.post("/v2/repository/index", json={}).json()
        assert [e["state"] for e in index] == ["READY"]
        # Two dry-run reports of other definitions fill the cache's two slots:
        # the served model goes with its entry (no second cache keeps it).
        for units in (5, 6):
            assert client.post("/v2/summary", json=_dense(units)).status_code == 200
        assert len(cache) == 2 and cache.get(digest) is None
        assert state.inference.loaded == 0
        index = client.post("/v2/repository/index", json={}).json()
        assert [e["state"] for e in index] == ["UNAVAILABLE"]
        _infer(client, "a")  # loads it again
        assert state.inference.loaded == 1 and len(cache) == 2


# ---------------------------------------------------------------------------
# Layering: routes call use cases; the registry reads the store
# ---------------------------------------------------------------------------

ROUTES = sorted(
    str(path.relative_to(PACKAGE)) for path in (PACKAGE / "routes").glob("*.py")
)
NO_STORE_READS = [
    *ROUTES,
    "inference/serving.py",
    "inference/runtime_models.py",
    "runtime.py",
    "builder.py",
    "sizes.py",
]


def _calls(path: Path) -> list[tuple[str, str]]:
    """``(receiver, method)`` of every ``x.method`` / ``x.y.method`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            inner = node.value
            if isinstance(inner, ast.Attribute):
                found.append((inner.attr, node.attr))
            elif isinstance(inner, ast.Name):
                found.append((inner.id, node.attr))
    return found


@pytest.mark.parametrize("module", ROUTES)
def test_routes_touch_neither_the_store_nor_the_runtime(module: str) -> None:
    calls = _calls(PACKAGE / module)
    touched = [c for c in calls if c[0] in ("store", "runtime", "cache")]
    assert touched == [], f"{module} bypasses the registry: {touched}"


def _imported(path: Path) -> set[str]:
    """Every module a file imports (``from a import b``: ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _store_accesses(path: Path) -> list[int]:
    """The lines of every ``<anything>.store`` in a file (``x.store.get``,
    ``request.app.state.store``, ``service.store``)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "store"
    ]


def test_every_route_module_is_checked() -> None:
    assert len(ROUTES) >= 8 and "routes/triton.py" in ROUTES
    assert "routes/__init__.py" in ROUTES


@pytest.mark.parametrize("module", ROUTES)
def test_routes_neither_import_nor_reach_the_store(module: str) -> None:
    path = PACKAGE / module
    imported = sorted(m for m in _imported(path) if m.startswith("bnncore_service"))
    assert [
        m for m in imported if m.split(".")[:2] == ["bnncore_service", "store"]
    ] == [], f"{module} imports the store: use bnncore_service.registry"
    assert not [m for m in imported if m.endswith(".StoreDep")], module
    assert _store_accesses(path) == [], f"{module} reaches the store"


def test_the_layering_checks_catch_a_route_that_bypasses_the_registry(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from bnncore_service.store import VersionRecord\n"
        "from bnncore_service import store as s\n"
        "async def f(request, service):\n"
        "    request.app.state.store.ping()\n"
        "    return service.store.versions('m')\n"
    )
    imported = _imported(bad)
    assert "bnncore_service.store" in imported
    assert "bnncore_service.store.VersionRecord" in imported
    assert _store_accesses(bad) == [4, 5]
    assert ("store", "versions") in _calls(bad)


@pytest.mark.parametrize("module", NO_STORE_READS)
def test_only_the_registry_turns_a_version_into_a_model(module: str) -> None:
    calls = _calls(PACKAGE / module)
    assert not [c for c in calls if c[1] == "load_definition"], module
    if module != "runtime.py":  # the cache's own build function
        assert ("runtime", "built") not in calls, module


def test_the_registry_reads_a_definition_in_one_function() -> None:
    source = (PACKAGE / "registry.py").read_text()
    tree = ast.parse(source)
    readers = [
        fn.name
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(
            isinstance(n, ast.Attribute) and n.attr == "validate_python"
            for n in ast.walk(fn)
        )
    ]
    assert readers == ["definition_of"]
