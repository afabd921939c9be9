"""Memory to request for a replica that serves given models, from the service's
own estimate (``POST /v2/estimate``, its ``memory`` and ``totals`` sections).

    python deploy/memory.py http://127.0.0.1:8000 mnist:1 --batch 32 --workers 2
    BNN_API_KEY=... python deploy/memory.py https://reg.example a,b --image full

The formula (docs/deployment.md, "Resource requests"):

    per_request(model) = fixed_bytes + batch × (row_bytes + response_row_bytes)
    resident(model)    = 4 × params + memory_bytes
    BNN_MAX_REQUEST_BYTES = max over the models of per_request
    memory = base + Σ resident + BNN_INFERENCE_WORKERS × BNN_MAX_REQUEST_BYTES

``per_request`` is what the service charges one request of ``batch`` rows
against ``BNN_MAX_REQUEST_BYTES`` (the model's per-row peak, its temporaries
and the JSON response); ``resident`` is the served model's float weights (the
Keras model keeps float32 latent weights, 4 bytes a parameter) plus its packed
weights (the packed engine's copy; an inference-only replica keeps less, so
this bounds it); ``base`` is the process with no model: 627-629 MiB measured
for the full image, 93 MiB for the inference-only one (``--image``). With
``BNN_MAX_BATCH=batch`` and that ``BNN_MAX_REQUEST_BYTES`` the service refuses
(413) any request that would go beyond, so the figure is both the request and
the limit.

Uses only the standard library; needs a ``read`` key when the service has keys.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024
BASE_MIB = {"full": 640, "inference": 128}
"""Resident memory of an idle replica of each image, rounded up: 627-629 MiB
measured for the full image (``python -m bnncore_service``, TensorFlow 2.21), 93 MiB
for the inference-only one (``BNN_ROLE=inference``)."""
ROUND_MIB = 64


@dataclass(frozen=True)
class ModelMemory:
    """One model's figures, from its estimate.

    Attributes:
        name: ``name[:version]`` as asked.
        resident_bytes: ``4 × params + memory_bytes``.
        request_bytes: ``fixed_bytes + batch × (row_bytes + response_row_bytes)``.
    """

    name: str
    resident_bytes: int
    request_bytes: int


@dataclass(frozen=True)
class Sizing:
    """What to put in the manifest.

    Attributes:
        models: Each model's figures.
        batch: ``BNN_MAX_BATCH``.
        workers: ``BNN_INFERENCE_WORKERS``.
        max_request_bytes: ``BNN_MAX_REQUEST_BYTES`` (at least 1 MiB, the
            setting's minimum).
        memory_bytes: The total, unrounded.
        memory_mib: The total rounded up to a multiple of 64 MiB
            (``resources.requests.memory`` and ``limits.memory``).
    """

    models: tuple[ModelMemory, ...]
    batch: int
    workers: int
    max_request_bytes: int
    memory_bytes: int
    memory_mib: int


def model_memory(name: str, estimate: Mapping[str, Any], batch: int) -> ModelMemory:
    """One model's figures from its ``/v2/estimate`` answer."""
    memory, totals = estimate["memory"], estimate["totals"]
    per_row = memory["row_bytes"] + memory["response_row_bytes"]
    return ModelMemory(
        name=name,
        resident_bytes=4 * totals["params"] + totals["memory_bytes"],
        request_bytes=memory["fixed_bytes"] + batch * per_row,
    )


def sizing(
    estimates: Mapping[str, Mapping[str, Any]],
    batch: int,
    workers: int,
    base_mib: int = BASE_MIB["inference"],
) -> Sizing:
    """The memory of a replica serving ``estimates`` (name → estimate)."""
    if batch < 1 or workers < 1:
        raise ValueError(f"batch and workers must be >= 1; got {batch}, {workers}")
    models = tuple(model_memory(n, e, batch) for n, e in estimates.items())
    max_request = max([MIB, *(m.request_bytes for m in models)])
    total = (
        base_mib * MIB + sum(m.resident_bytes for m in models) + workers * max_request
    )
    rounded = math.ceil(total / (ROUND_MIB * MIB)) * ROUND_MIB
    return Sizing(models, batch, workers, max_request, total, rounded)


def render(result: Sizing) -> str:
    """The figures as text, ending with the manifest's lines."""
    lines = [
        f"{m.name}: resident {m.resident_bytes:,} B, one request of "
        f"{result.batch} rows {m.request_bytes:,} B"
        for m in result.models
    ]
    lines += [
        f"total {result.memory_bytes:,} B",
        "",
        f'BNN_MAX_BATCH: "{result.batch}"',
        f'BNN_INFERENCE_WORKERS: "{result.workers}"',
        f'BNN_MAX_REQUEST_BYTES: "{result.max_request_bytes}"',
        f"resources.requests.memory = resources.limits.memory: {result.memory_mib}Mi",
    ]
    return "\n".join(lines)


def _get(url: str, key: str | None, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="GET" if data is None else "POST"
    )
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def fetch_estimates(
    base_url: str, targets: Iterable[str], key: str | None
) -> dict[str, Any]:
    """Each registered model's definition, estimated by the service."""
    out = {}
    for target in targets:
        name, _, version = target.partition(":")
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
        definition = _get(f"{base_url}{path}/definition", key)
        out[target] = _get(f"{base_url}/v2/estimate", key, definition)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("models", help="name[:version],... as in BNN_PRELOAD")
    parser.add_argument("--batch", type=int, default=32, help="largest batch served")
    parser.add_argument("--workers", type=int, default=2, help="BNN_INFERENCE_WORKERS")
    parser.add_argument(
        "--image",
        choices=sorted(BASE_MIB),
        default="inference",
        help="the replica's image, for its base memory (default: inference)",
    )
    parser.add_argument("--base-mib", type=int, help="the base memory, measured")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.models.split(",") if t.strip()]
    try:
        estimates = fetch_estimates(
            args.url.rstrip("/"), targets, os.environ.get("BNN_API_KEY")
        )
    except urllib.error.HTTPError as exc:  # the service's {"error": ...}
        detail = exc.read().decode(errors="replace")
        print(f"{exc.url}: HTTP {exc.code}: {detail}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"{args.url}: {exc.reason}", file=sys.stderr)
        return 1
    base = args.base_mib if args.base_mib is not None else BASE_MIB[args.image]
    print(render(sizing(estimates, args.batch, args.workers, base)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
