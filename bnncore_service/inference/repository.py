"""Answers of the Triton/KServe extensions the server metadata lists, besides
inference: the model repository index, model configuration and statistics
(the routes are in ``bnncore_service/routes/triton.py``).

Shapes follow Triton's HTTP/REST JSON: ``$repository_index_response`` entries
``{name, version, state, reason}``, the ``ModelConfig`` message and the
``ModelStatistics`` message.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

from bnncore_service.config import Settings
from bnncore_service.records import VersionRecord

__all__ = [
    "IndexEntry",
    "LoadRequest",
    "ModelConfig",
    "RepositoryIndexRequest",
    "StatisticsResponse",
    "UnloadRequest",
    "model_config",
]

READY_REASON = ""
UNLOADED_REASON = "not loaded; a load request or the first inference loads it"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepositoryIndexRequest(_Strict):
    """``$repository_index_request``: ``ready: true`` lists only the versions
    loaded in memory."""

    ready: Annotated[bool, Strict()] | None = None


class LoadRequest(_Strict):
    """``$repository_load_request``. ``parameters`` may not carry ``config``
    or ``file:`` entries: the service builds models only from registered
    definitions (``POST /v2/models``), never from client files."""

    parameters: dict[str, Any] | None = None


class UnloadRequest(_Strict):
    """``$repository_unload_request`` (``unload_dependents`` is accepted; a
    model here has no dependents)."""

    parameters: dict[str, Any] | None = None


class IndexEntry(BaseModel):
    """One registered version in the repository index: ``state`` is
    ``READY`` (in memory), ``LOADING`` or ``UNAVAILABLE`` (not in memory;
    ``reason`` says so)."""

    name: str
    version: str
    state: str
    reason: str


class ModelTensor(BaseModel):
    """A ``ModelInput``/``ModelOutput``: ``dims`` without the batch
    dimension (``-1``: any size)."""

    name: str
    data_type: str
    dims: list[int]


class ModelConfig(BaseModel):
    """Triton's ``ModelConfig`` message (the fields that apply here)."""

    name: str
    platform: str
    backend: str
    version_policy: dict[str, Any]
    max_batch_size: int
    input: list[ModelTensor]
    output: list[ModelTensor]
    dynamic_batching: dict[str, Any] | None = None
    parameters: dict[str, Any]


class Duration(BaseModel):
    count: int
    ns: int


class InferStatistics(BaseModel):
    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration
    cache_hit: Duration
    cache_miss: Duration


class BatchStatistics(BaseModel):
    batch_size: int
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


class ModelStatistics(BaseModel):
    """Triton's ``ModelStatistics`` of one version: ``inference_count``
    counts rows, ``execution_count`` model executions, durations are
    nanoseconds (see ``bnncore_service/inference/statistics.py``)."""

    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch")
    inference_count: int
    execution_count: int
    inference_stats: InferStatistics
    response_stats: dict[str, Any]
    batch_stats: list[BatchStatistics]
    memory_usage: list[Any]


class StatisticsResponse(BaseModel):
    """``$stats_model_response``."""

    model_stats: list[ModelStatistics]


def _tensor(tensor: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": tensor["name"],
        "data_type": "TYPE_FP32",
        "format": "FORMAT_NONE",
        "dims": list(tensor["shape"][1:]),
    }


def model_config(
    record: VersionRecord, settings: Settings, max_batch_size: int
) -> dict[str, Any]:
    """The Triton ``ModelConfig`` of a version: its inputs and outputs (float32,
    batch dimension left out), the largest batch it accepts and, with
    ``BNN_BATCHING``, the dynamic batcher's settings."""
    config: dict[str, Any] = {
        "name": record.name,
        "platform": "bnncore",
        "backend": "",
        "version_policy": {"specific": {"versions": [record.version]}},
        "max_batch_size": max_batch_size,
        "input": [_tensor(t) for t in record.inputs],
        "output": [
            {key: value for key, value in _tensor(t).items() if key != "format"}
            for t in record.outputs
        ],
        "parameters": {},
    }
    if settings.batching:
        config["dynamic_batching"] = {
            "preferred_batch_size": [settings.batch_max_size],
            "max_queue_delay_microseconds": round(settings.batch_max_wait_ms * 1000),
        }
    return config
