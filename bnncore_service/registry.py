"""The model registry's use cases: the one module that touches the store and
the model cache (as the FastAPI full-stack template's ``crud.py``).

Routes parse a request, call one use case of :class:`Registry` and encode
its answer; the inference service (``bnncore_service.inference.serving``)
looks versions up and loads them through it. A version becomes a model along
one path: :meth:`Registry.definition_of` (the stored, validated definition)
→ :meth:`Registry.plan_of` (sized against the limits) → :meth:`Registry.built`
(built, weighted and profiled once per content hash and weights, kept in the
process's one :class:`~bnncore_service.model_cache.ModelCache`). The first two
steps are the module functions :func:`definition_of` and :func:`plan_of`,
which the model list's sizes (``bnncore_service.sizes``) take too.

The app's lifespan makes one :class:`Registry` (``app.state.registry``, the
routes' ``registry_deps.RegistryDep``) and gives it to the inference service. Routes
never import the store: the records they name (``VersionRecord``,
``StoredWeights``, ``Upload``) are re-exported here.

Blocking work (database, files, TensorFlow) never runs on the event loop: the
``async`` use cases hand it to a worker thread (the store) or to the build
executor (``bnncore_service.runtime.Runtime``: Keras). The ``cached_*`` lookups
answer from memory only, so inference may call them on the loop and hop to
the blocking ``read_*`` only on a miss.

Importing this module imports neither TensorFlow, Keras, FastAPI nor
SQLAlchemy (the inference replica uses it, over the read-only
``bnncore_service.store_reader``): the definition schemas (pydantic), the
builder and the weights checks are imported where a full replica calls
them; the routes' dependency ``RegistryDep`` is in
``bnncore_service.registry_deps``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from starlette.concurrency import run_in_threadpool

from bnncore_service.model_cache import Built, ModelCache
from bnncore_service.records import RegistryReads, StoredWeights, Upload, VersionRecord
from bnncore_service.registry_view import RegistryView

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from bnncore_service.builder import Plan
    from bnncore_service.config import Settings
    from bnncore_service.runtime import Runtime
    from bnncore_service.schemas.reports import VersionSummary
    from bnncore_service.sizes import SizeCache
    from bnncore_service.store import Store

__all__ = [
    "ModelPage",
    "Registry",
    "SavedWeights",
    "StoredWeights",
    "Upload",
    "VersionInfo",
    "VersionRecord",
    "definition_of",
    "model_page",
    "plan_of",
]


T = TypeVar("T")

_PAGE = 100
"""Models read per query when listing every version."""


_READ_ONLY = (
    "BNN_ROLE=inference: this replica builds no Keras model; send "
    "registrations, reports and weights uploads to a full replica"
)


@functools.cache
def _definition_adapter() -> TypeAdapter[Any]:
    from pydantic import TypeAdapter

    from bnncore_service.schemas.definitions import Definition

    return TypeAdapter(cast(Any, Definition))  # a discriminated union


def definition_of(store: RegistryReads, content_hash: str) -> Any:
    """The stored definition of ``content_hash``, validated (blocking): the
    one place a stored definition is read back into the definition language.

    Raises:
        StoreError: it cannot be read.
        pydantic.ValidationError: the current schema refuses it.
    """
    return _definition_adapter().validate_python(store.load_definition(content_hash))


def plan_of(store: RegistryReads, settings: Settings, content_hash: str) -> Plan:
    """:func:`definition_of`, sized against ``settings``' limits (blocking):
    the first step of every version that becomes a model, and of the model
    list's sizes (``bnncore_service.sizes``).

    Raises:
        StoreError: it cannot be read.
        pydantic.ValidationError: the current schema refuses it.
        LimitError: a limit is exceeded.
        DefinitionError: the definition cannot make a model.
    """
    from bnncore_service.builder import plan

    return plan(definition_of(store, content_hash), settings)


def _not_registered(name: str, version: int | None) -> Exception:
    from bnncore_service.errors import NotFoundError

    what = f"model {name!r}" if version is None else f"{name!r} version {version}"
    return NotFoundError(f"{what} is not registered")


@dataclass(frozen=True)
class VersionInfo:
    """What the metadata of a version shows.

    Attributes:
        versions: Every registered version of its name (only its own unless
            asked for all).
        weights: Its uploaded weights (``None``: the initial ones).
    """

    record: VersionRecord
    versions: list[int]
    weights: StoredWeights | None


@dataclass(frozen=True)
class ModelPage:
    """A page of registered models with each version's sizes.

    Attributes:
        models: ``(name, versions)`` in name order.
        details: Per model, the summary of each version still registered.
        total: Registered models in all.
    """

    models: list[tuple[str, list[int]]]
    details: list[list[VersionSummary]]
    total: int


@dataclass(frozen=True)
class SavedWeights:
    """An upload checked against the version's model and stored.

    Attributes:
        stored: The weights now serving.
        previous: The sha256 they replaced (``None``: the initial weights).
        tensors: Tensors in the file.
        format: ``"bnncore"`` or ``"float32"``.
    """

    stored: StoredWeights
    previous: str | None
    tensors: int
    format: str


def _io(model_plan: Plan, built: Built) -> tuple[list[dict], list[dict]]:
    """Input and output tensors (name, shape with -1 for the batch): from the
    estimate, or for a zoo definition from the built model."""

    def shape(dims: list[int | None]) -> list[int]:
        return [-1 if d is None else d for d in dims]

    if model_plan.estimate is not None:
        graph = model_plan.definition.graph()
        inputs = [
            {"name": layer.name, "shape": shape(dims)}
            for layer, dims in zip(
                graph.inputs(), model_plan.estimate.inputs, strict=True
            )
        ]
        outputs = [
            {"name": name, "shape": shape(dims)}
            for name, dims in zip(
                graph.outputs, model_plan.estimate.outputs, strict=True
            )
        ]
        return inputs, outputs
    model = built.model
    output_names = list(getattr(model, "output_names", None) or [])
    inputs = [
        {
            "name": getattr(t, "name", None) or f"input_{i}",
            "shape": shape(list(t.shape)),
        }
        for i, t in enumerate(model.inputs)
    ]
    outputs = [
        {
            "name": output_names[i] if i < len(output_names) else f"output_{i}",
            "shape": shape(list(t.shape)),
        }
        for i, t in enumerate(model.outputs)
    ]
    return inputs, outputs


def _version_details(
    store: Store,
    settings: Settings,
    sizes: SizeCache,
    page: list[tuple[str, list[int]]],
) -> list[list[VersionSummary]]:
    """Each listed version's sizes (blocking): its record, the estimate of its
    stored definition (cached by content hash) and its weights; nothing is
    built."""
    from bnncore_service.schemas.reports import VersionSummary

    details = []
    for name, versions in page:
        rows = []
        for version in versions:
            record = store.get(name, version)
            if record is None:  # deleted since the page was read
                continue
            found = sizes.sizes(store, settings, record.content_hash)
            rows.append(
                VersionSummary(
                    version=record.version,
                    kind=record.kind,
                    content_hash=record.content_hash,
                    created_at=record.created_at,
                    params=record.params,
                    params_by_bits=found.params_by_bits,
                    memory_bytes=record.memory_bytes,
                    compression=found.compression,
                    weights_uploaded=store.weights(name, version) is not None,
                )
            )
        details.append(rows)
    return details


Run = Callable[..., Awaitable[Any]]
"""Runs ``fn(*args)`` off the event loop (``run_in_threadpool``, or a route's
bounded validation threads: ``jsonbody.run_validation``)."""


async def model_page(
    store: Store,
    settings: Settings,
    sizes: SizeCache,
    limit: int,
    offset: int,
    run: Run = run_in_threadpool,
) -> ModelPage:
    """A page of the models of ``store`` with their versions' sizes (the
    list use case; :meth:`Registry.page` on the app's store).

    Args:
        run: Where the sizes are estimated (CPU work, off the loop).
    """
    models, total = await run_in_threadpool(store.list_models, limit, offset)
    details = await run(_version_details, store, settings, sizes, models)
    return ModelPage(models, details, total)


class Registry:
    """The registry's use cases over one store and one model cache.

    Args:
        settings: The app's settings.
        store: The open store: a :class:`~bnncore_service.store.Store`, or on
            an inference replica (``runtime`` ``None``) the read-only
            :class:`~bnncore_service.store_reader.StoreReader`.
        runtime: The build executor and its model cache; ``None`` on an
            inference replica (no Keras), which keeps a cache of its own.
    """

    def __init__(
        self, settings: Settings, store: RegistryReads, runtime: Runtime | None
    ) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.cache = (
            runtime.cache
            if runtime is not None
            else ModelCache(settings.model_cache_size)
        )
        # Record and weights lookups for inference, reused until the
        # registry's generation changes (read at most every
        # BNN_REGISTRY_POLL_S).
        self.view = RegistryView(store, settings.registry_poll_s)

    @property
    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError(_READ_ONLY)
        return self.runtime

    @property
    def _store(self) -> Store:
        """The full service's store, which writes (a full replica's: an
        inference replica only reads)."""
        if self.runtime is None:
            raise RuntimeError(_READ_ONLY)
        return cast("Store", self.store)

    # -- version → definition → plan → build: the one path ------------------

    def normalized_of(self, content_hash: str) -> dict[str, Any]:
        """The stored (normalized) definition of ``content_hash`` as JSON data,
        not validated: what an inference replica, which has no schemas of
        Keras layers, reads (blocking).

        Raises:
            StoreError: it cannot be read.
        """
        return self.store.load_definition(content_hash)

    def definition_of(self, content_hash: str) -> Any:
        """The stored definition of ``content_hash``, validated (blocking):
        :func:`definition_of`.

        Raises:
            StoreError: it cannot be read.
            pydantic.ValidationError: the current schema refuses it.
        """
        return definition_of(self.store, content_hash)

    def plan_of(self, content_hash: str) -> Plan:
        """:meth:`definition_of`, sized against the current limits (blocking):
        :func:`plan_of`.

        Raises:
            LimitError: a limit is exceeded.
            DefinitionError: the definition cannot make a model.
        """
        return plan_of(self.store, self.settings, content_hash)

    async def build(
        self, model_plan: Plan, weights: StoredWeights | None = None
    ) -> Built:
        """The built model of a plan with ``weights`` (``None``: initial), from
        the model cache or built now on the build executor.

        Raises:
            BusyError: ``BNN_MAX_PENDING_BUILDS`` builds are queued (503).
        """
        runtime = self._runtime
        return await runtime.run(runtime.built, model_plan, weights)

    async def run_keras(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs blocking Keras work ``fn(*args)`` on the build executor (the
        one the builds share).

        Raises:
            BusyError: ``BNN_MAX_PENDING_BUILDS`` jobs are queued (503).
        """
        return await self._runtime.run(fn, *args)

    async def built(
        self, record: VersionRecord, weights: StoredWeights | None = None
    ) -> Built:
        """The built model of a registered version: :meth:`plan_of` its
        definition (off the loop), then :meth:`build`."""
        model_plan = await run_in_threadpool(self.plan_of, record.content_hash)
        return await self.build(model_plan, weights)

    # -- reading -------------------------------------------------------------

    async def record(self, name: str, version: int | None) -> VersionRecord:
        """The registered version (the latest when ``version`` is None).

        Raises:
            NotFoundError: no such model or version (404).
        """
        record = await run_in_threadpool(self.store.get, name, version)
        if record is None:
            raise _not_registered(name, version)
        return record

    async def describe(
        self, name: str, version: int | None, all_versions: bool
    ) -> VersionInfo:
        """A version with its weights and (``all_versions``) every version of
        its name.

        Raises:
            NotFoundError: no such model or version (404).
        """
        record = await self.record(name, version)
        versions = (
            await self.versions(record.name) if all_versions else [record.version]
        )
        weights = await run_in_threadpool(
            self.store.weights, record.name, record.version
        )
        return VersionInfo(record, versions, weights)

    async def definition(self, name: str, version: int | None) -> dict[str, Any]:
        """The normalized (stored) definition of a version.

        Raises:
            NotFoundError: no such model or version (404).
        """
        record = await self.record(name, version)
        return await run_in_threadpool(self.normalized_of, record.content_hash)

    async def profile(self, name: str, version: int | None) -> Any:
        """The profile of a version as registered (its initial weights).

        Raises:
            NotFoundError: no such model or version (404).
        """
        return (await self.built(await self.record(name, version))).profile

    async def versions(self, name: str) -> list[int]:
        """The registered versions of ``name``, ascending (``[]``: none)."""
        return await run_in_threadpool(self.store.versions, name)

    async def ping(self) -> bool:
        """Whether the store answers (the readiness probe)."""
        return await run_in_threadpool(self.store.ping)

    async def records(self, name: str | None = None) -> list[VersionRecord]:
        """Every registered version (of ``name``; ``None``: of every model),
        by name then version; ``[]`` for a name not registered."""
        return await run_in_threadpool(self._records, name)

    def _records(self, name: str | None) -> list[VersionRecord]:
        if name is not None:
            pairs = [(name, self.store.versions(name))]
        else:
            pairs, offset = [], 0
            while True:
                page, total = self.store.list_models(_PAGE, offset)
                pairs.extend(page)
                offset += _PAGE
                if offset >= total or not page:
                    break
        records = []
        for model, versions in pairs:
            for version in versions:
                record = self.store.get(model, version)
                if record is not None:  # deleted since the list was read
                    records.append(record)
        return records

    async def page(
        self, sizes: SizeCache, limit: int, offset: int, run: Run = run_in_threadpool
    ) -> ModelPage:
        """A page of registered models: :func:`model_page`."""
        return await model_page(self._store, self.settings, sizes, limit, offset, run)

    # -- writing -------------------------------------------------------------

    async def register(
        self, name: str, model_plan: Plan, kind: str
    ) -> tuple[VersionRecord, bool]:
        """Stores a planned definition as the next version of ``name``, built
        first (so that Keras accepts it and its sizes are the profile's).

        Returns:
            The version and whether it is new (``False``: the same definition
            was already registered under ``name``).
        """
        existing = await run_in_threadpool(
            self._store.find, name, model_plan.content_hash
        )
        if existing is not None:
            return existing, False
        built = await self.build(model_plan)
        inputs, outputs = _io(model_plan, built)
        totals = built.profile.totals
        return await run_in_threadpool(
            self._store.register,
            name,
            model_plan.content_hash,
            model_plan.normalized,
            kind,
            totals.params,
            totals.memory_bytes,
            inputs,
            outputs,
        )

    async def delete(self, name: str, version: int) -> None:
        """Deletes one version (its number is never reused).

        Raises:
            NotFoundError: no such version (404).
        """
        if not await run_in_threadpool(self._store.delete, name, version):
            raise _not_registered(name, version)

    # -- weights ---------------------------------------------------------------

    @asynccontextmanager
    async def upload(self) -> AsyncIterator[Upload]:
        """A temporary file to receive a weights upload into, holding one of
        the ``BNN_MAX_CONCURRENT_UPLOADS`` slots; discarded at the end unless
        :meth:`save_weights` moved it into place.

        Raises:
            BusyError: every upload slot is taken (503).
        """
        with self._runtime.upload_slot():
            upload = await run_in_threadpool(self._store.new_upload)
            try:
                yield upload
            finally:
                await run_in_threadpool(upload.discard)

    async def save_weights(
        self, name: str, version: int, upload: Upload
    ) -> SavedWeights:
        """Checks a received upload against the version's built model, then
        stores it atomically (the previous weights serve until the commit).

        Raises:
            NotFoundError: the version is not registered (or was deleted).
            WeightsRefusedError: the file is unreadable (400) or does not fit
                the model (422); nothing is stored.
        """
        from bnncore_service.weights import check_file

        record = await self.record(name, version)
        built = await self.built(record)
        checked = await self.run_keras(
            check_file,
            built.model,
            upload.path,
            self.settings.max_weights_bytes,
            upload.sha256,
        )
        tensors, kind = len(checked.arrays), checked.format
        del checked  # the decoded arrays: not needed to store the file
        saved = await run_in_threadpool(self._store.save_weights, name, version, upload)
        if saved is None:
            raise _not_registered(name, version)
        stored, previous = saved
        return SavedWeights(stored, previous, tensors, kind)

    # -- inference lookups -------------------------------------------------------

    def cached_record(
        self, name: str, version: int | None
    ) -> tuple[bool, VersionRecord | None]:
        """The version's record from memory only: ``(True, record or None)``,
        or ``(False, None)`` when :meth:`read_record` must read the store."""
        return self.view.cached_get(name, version)

    def read_record(self, name: str, version: int | None) -> VersionRecord | None:
        """The version's record, reused while the registry is unchanged
        (blocking on a miss)."""
        return self.view.get(name, version)

    def cached_weights(
        self, name: str, version: int
    ) -> tuple[bool, StoredWeights | None]:
        """The version's uploaded weights from memory only, as
        :meth:`cached_record`."""
        return self.view.cached_weights(name, version)

    def read_weights(self, name: str, version: int) -> StoredWeights | None:
        """The version's uploaded weights (``None``: initial), reused while
        the registry is unchanged (blocking on a miss)."""
        return self.view.weights(name, version)

    def invalidate(self) -> None:
        """Forgets the lookups (a file they pointed at has gone)."""
        self.view.invalidate()
