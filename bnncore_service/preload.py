"""Models loaded at start-up (``BNN_PRELOAD=name[:version],...``) and the
readiness they decide.

A replica that serves a known set of models (a KServe ``InferenceService``,
say) names them in ``BNN_PRELOAD``. The lifespan starts a :class:`Preloader`
in the background: the process answers ``/v2/health/live`` at once, while
``/v2/health/ready`` answers 503 with the reason until every named model is
registered, built with its uploaded weights and in the served-model cache.
A model that fails (not registered, a build error) keeps the replica not
ready, with the reason, and is tried again every ``BNN_PRELOAD_RETRY_S``
seconds, so that a replica started before its model was pushed becomes
ready once it is.

Readiness is about start-up: once every preload has succeeded the replica
stays ready, even if a model is later evicted from the cache (the next
request loads it again) or deleted (404, like any unknown model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bnncore_service.logs import log_event

__all__ = ["PreloadTarget", "Preloader", "parse_preload"]

log = logging.getLogger("service")

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
"""A registered model's name (as ``POST /v2/models`` and the routes accept)."""

MAX_VERSION = 2**31 - 1

FORM = (
    "model names separated by commas, each optionally with ':version' "
    "(name: a letter or _ then up to 63 letters, digits, _ or -; "
    "version: an integer >= 1), e.g. 'mnist,quicknet:3'"
)
"""What ``BNN_PRELOAD`` accepts, in words (its start-up error says so)."""

State = Literal["pending", "ready", "failed"]


@dataclass(frozen=True)
class PreloadTarget:
    """One entry of ``BNN_PRELOAD``.

    Attributes:
        name: Registered model name.
        version: A version, or ``None`` for the latest at load time.
    """

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


def parse_preload(text: str) -> tuple[PreloadTarget, ...]:
    """``BNN_PRELOAD``'s value as targets, in order, repeats dropped.

    Args:
        text: ``name[:version]`` entries separated by commas; blank: none.

    Returns:
        The targets.

    Raises:
        ValueError: an entry that is not ``name`` or ``name:version``; the
            message names the entry by position and value.
    """
    targets: dict[PreloadTarget, None] = {}
    entries = [entry.strip() for entry in text.split(",")]
    if all(not entry for entry in entries):
        return ()
    for position, entry in enumerate(entries, start=1):
        name, colon, version = entry.partition(":")
        name = name.strip()
        if not NAME_PATTERN.match(name):
            raise ValueError(f"entry #{position} {entry!r}: not a model name")
        number: int | None = None
        if colon:
            text_version = version.strip()
            if not text_version.isdigit() or not 1 <= int(text_version) <= MAX_VERSION:
                raise ValueError(
                    f"entry #{position} {entry!r}: the version is not an integer "
                    f"from 1 to {MAX_VERSION}"
                )
            number = int(text_version)
        targets[PreloadTarget(name, number)] = None
    return tuple(targets)


class Serving(Protocol):
    """What the preloader needs of the inference side
    (:class:`bnncore_service.inference.InferenceService`)."""

    async def record(self, name: str, version: int | None) -> Any: ...

    async def served(self, record: Any) -> Any: ...


@dataclass
class _Progress:
    state: State = "pending"
    reason: str = "not loaded yet"
    attempts: int = 0


class Preloader:
    """Loads the ``BNN_PRELOAD`` models in the background and tells readiness.

    Args:
        targets: The models to load.
        retry_s: Seconds between attempts for a model that failed.
    """

    def __init__(self, targets: tuple[PreloadTarget, ...], retry_s: float) -> None:
        self.targets = targets
        self.retry_s = retry_s
        self._progress = {target: _Progress() for target in targets}
        self._task: asyncio.Task[None] | None = None

    def start(self, serving: Serving) -> None:
        """Starts loading on the running event loop (returns at once)."""
        if self.targets and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(serving), name="bnncore-preload"
            )

    async def stop(self) -> None:
        """Cancels loading that is still going on (at shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def ready(self) -> bool:
        """Every preloaded model has been loaded."""
        return all(p.state == "ready" for p in self._progress.values())

    def states(self) -> dict[str, State]:
        """``name[:version]`` → its state, in the order of ``BNN_PRELOAD``."""
        return {str(t): p.state for t, p in self._progress.items()}

    def attempts(self) -> dict[str, int]:
        """``name[:version]`` → how many times its loading has started."""
        return {str(t): p.attempts for t, p in self._progress.items()}

    def reason(self) -> str:
        """Why the replica is not ready (empty when it is): every model not
        loaded yet, with its state and, for a failure, the error."""
        waiting = [
            (target, progress)
            for target, progress in self._progress.items()
            if progress.state != "ready"
        ]
        if not waiting:
            return ""
        parts = []
        for target, progress in waiting:
            if progress.state == "failed":
                parts.append(
                    f"{target} failed to load ({progress.reason}; attempt "
                    f"{progress.attempts}, retried every {self.retry_s:g} s)"
                )
            else:
                parts.append(f"{target} is loading")
        loaded = len(self._progress) - len(waiting)
        return (
            f"preloading models (BNN_PRELOAD): {loaded} of {len(self._progress)} "
            f"ready; " + "; ".join(parts)
        )

    async def _run(self, serving: Serving) -> None:
        started = time.perf_counter()
        await asyncio.gather(*(self._keep_trying(serving, t) for t in self.targets))
        log_event(
            log,
            logging.INFO,
            "preload_done",
            "every preloaded model is ready ({models}): ready in {duration_ms} ms",
            models=[str(t) for t in self.targets],
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _keep_trying(self, serving: Serving, target: PreloadTarget) -> None:
        progress = self._progress[target]
        while True:
            progress.attempts += 1
            try:
                record = await serving.record(target.name, target.version)
                await serving.served(record)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                # A warning when the reason is new; the same failure again
                # (every retry_s, possibly for hours) only at DEBUG.
                repeated = progress.state == "failed" and progress.reason == reason
                progress.state = "failed"
                progress.reason = reason
                log_event(
                    log,
                    logging.DEBUG if repeated else logging.WARNING,
                    "preload_failed",
                    "preload of {model} failed (attempt {attempt}, retry in "
                    "{retry_s} s): {error}",
                    model=str(target),
                    attempt=progress.attempts,
                    retry_s=self.retry_s,
                    error=progress.reason,
                )
                await asyncio.sleep(self.retry_s)
                continue
            progress.state = "ready"
            progress.reason = ""
            log_event(
                log,
                logging.INFO,
                "preload_ready",
                "preloaded {model} (version {version})",
                model=str(target),
                version=getattr(record, "version", None),
                attempt=progress.attempts,
            )
            return
