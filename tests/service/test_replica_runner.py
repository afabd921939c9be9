"""What ``python -m bnncore_service`` starts an inference replica with: NumPy's
OpenBLAS on one thread unless the user chose a count
(``bnncore_service.server.default_blas_threads``), uvicorn without its
WebSocket protocol (``websocket_implementation``), nor h11 when it parses
with httptools, and its start-up objects frozen (``startup_objects_frozen``).

Oracles: OpenBLAS itself, asked through its C API (``*_get_num_threads``) in a
fresh ``python -m bnncore_service`` process (``bnncore_service.__main__`` run
with only ``uvicorn.run`` replaced, after the app, and NumPy, are imported),
the environment that process ends up with, and the modules uvicorn's own
``Config.load()`` imports with the options ``main`` passes; the garbage
collector's own state (``gc.isenabled``, ``gc.get_freeze_count``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnncore_service.server import BLAS_THREAD_VARIABLES, default_blas_threads

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import ctypes, json, os, sys

def blas_threads():
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "openblas" in path.rsplit("/", 1)[-1]:
            lib = ctypes.CDLL(path)
            for name in ("scipy_openblas_get_num_threads64_",
                         "openblas_get_num_threads64_", "openblas_get_num_threads"):
                if hasattr(lib, name):
                    return getattr(lib, name)()
    return None
"""
CHILD = (
    PROBE
    + """
import gc, runpy
import uvicorn

seen = {}
variables = json.loads(sys.argv[1])

def run(app, **options):
    seen["gc"] = [gc.isenabled(), gc.get_freeze_count()]
    if isinstance(app, str):  # BNN_WORKERS > 1: the workers import the app
        return
    seen["numpy"] = "numpy" in sys.modules
    seen["threads"] = blas_threads()
    seen["env"] = {v: os.environ.get(v) for v in variables}
    config = uvicorn.Config(app, **options)
    config.load()  # what uvicorn.run does before it serves
    seen["ws"] = config.ws_protocol_class is not None
    seen["websockets"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("websockets", "wsproto")
    )
    seen["http"] = [c.__name__ for c in config.http_protocol_class.__mro__]
    seen["h11"] = "h11" in sys.modules

uvicorn.run = run
sys.argv = ["bnncore_service", "--port", "0"]
runpy.run_module("bnncore_service", run_name="__main__", alter_sys=True)
print(json.dumps(seen))
"""
)


def _plain_blas_threads() -> int:
    """OpenBLAS's own default here (one thread per core, capped)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE + "import numpy\nprint(blas_threads())"],
        capture_output=True, text=True, env=_clean_env(), check=True, timeout=60,
    )  # fmt: skip
    found = done.stdout.strip()
    if found == "None":
        pytest.skip("NumPy here is not linked with OpenBLAS")
    return int(found)


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BNN_") and k not in BLAS_THREAD_VARIABLES
    }


def _run_main(tmp_path: Path, **user: str) -> dict[str, object]:
    env = {**_clean_env(), "BNN_ROLE": "inference", **user}
    env["BNN_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(BLAS_THREAD_VARIABLES)],
        capture_output=True, text=True, cwd=ROOT, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def _replica(tmp_path: Path, **user: str) -> dict[str, object]:
    seen = _run_main(tmp_path, **user)
    assert seen["numpy"], "the app did not import NumPy: nothing was checked"
    return seen


def test_with_workers_the_supervisor_turns_the_collector_back_on(
    tmp_path: Path,
) -> None:
    """With ``BNN_WORKERS=2`` the runner's process imports no app (each worker
    does, in ``startup_objects_frozen``): the collector that
    ``python -m bnncore_service`` turned off is on again when it serves."""
    seen = _run_main(tmp_path, BNN_WORKERS="2")
    assert seen["gc"] == [True, 0]


def test_what_an_inference_replica_starts_with(tmp_path: Path) -> None:
    """One OpenBLAS thread, no WebSocket protocol, h11 only if it parses with
    it, and the collector on with the start-up objects frozen."""
    seen = _replica(tmp_path)
    assert seen["env"] == {
        "OPENBLAS_NUM_THREADS": "1",
        "GOTO_NUM_THREADS": None,
        "OMP_NUM_THREADS": None,
    }
    assert seen["threads"] == 1
    assert not seen["ws"] and seen["websockets"] == []
    # h11 is imported only by a server that parses with it.
    assert seen["h11"] == ("H11Protocol" in seen["http"])
    # The collector is on again, the start-up objects frozen (the app's,
    # NumPy's and the runner's own: python -m bnncore_service turned it off).
    enabled, frozen = seen["gc"]
    assert enabled and frozen > 50_000


def test_a_full_replica_keeps_uvicorn_s_websocket_choice() -> None:
    """The full replica's options are unchanged (``auto``: a WebSocket
    library when one is installed, which the check above would then see)."""
    from bnncore_service.config import Settings
    from bnncore_service.server import uvicorn_options

    assert uvicorn_options(Settings())["ws"] == "auto"
    assert uvicorn_options(Settings(role="inference"))["ws"] == "none"


@pytest.mark.parametrize(
    "variable", ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"], ids=str.lower
)
def test_a_count_the_user_set_is_kept(tmp_path: Path, variable: str) -> None:
    default = _plain_blas_threads()
    if default < 2:
        pytest.skip("one core: OpenBLAS runs one thread whatever the variable")
    seen = _replica(tmp_path, **{variable: "2"})
    expected = dict.fromkeys(BLAS_THREAD_VARIABLES)
    expected[variable] = "2"
    assert seen["env"] == expected
    assert seen["threads"] == 2


@pytest.mark.parametrize(
    ("role", "environ", "after"),
    [
        ("inference", {}, {"OPENBLAS_NUM_THREADS": "1"}),
        ("inference", {"GOTO_NUM_THREADS": "3"}, {"GOTO_NUM_THREADS": "3"}),
        ("inference", {"OPENBLAS_NUM_THREADS": ""}, {"OPENBLAS_NUM_THREADS": ""}),
        ("full", {}, {}),
    ],
    ids=["unset", "goto-set", "set-empty", "full-replica"],
)
def test_default_blas_threads(
    role: str, environ: dict[str, str], after: dict[str, str]
) -> None:
    changed = default_blas_threads(role, environ)
    assert environ == after
    assert changed == (after == {"OPENBLAS_NUM_THREADS": "1"})
