"""``import bnncore_runtime`` imports nothing else; each public name imports its
module on first use, and is the object that module defines.

Oracle: ``sys.modules`` of a fresh process, and the defining modules imported
by their own names.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bnncore_runtime

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys

    def loaded():
        return sorted(m for m in sys.modules
                      if m.split(".")[0] in ("bnncore_runtime", "numpy",
                                             "tensorflow", "keras", "bnncore"))

    import bnncore_runtime
    found = {"import": loaded()}
    for name in sys.argv[1:]:
        getattr(bnncore_runtime, name)
        found[name] = loaded()
    print(json.dumps(found))
    """
)


def _child(*names: str) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *names],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_the_import_alone_imports_nothing_and_load_imports_what_it_needs():
    found = _child("WeightsFileError", "load")
    assert found["import"] == ["bnncore_runtime"]  # not even NumPy
    # The file reader's error: its module (and NumPy, which it uses), no planner.
    reader = set(found["WeightsFileError"])
    assert {"bnncore_runtime.container", "numpy"} <= reader
    assert "bnncore_runtime.model" not in reader
    assert "bnncore_runtime.planner" not in reader
    # load: the reader, the planner and the core; never Keras or TensorFlow.
    loading = set(found["load"])
    for module in ("model", "container", "codec", "definition", "planner", "_kernels"):
        assert f"bnncore_runtime.{module}" in loading
    assert {m.split(".")[0] for m in loading} == {"bnncore_runtime", "numpy"}


def test_submodules_are_attributes_without_their_own_import():
    found = _child("kernels")
    assert "bnncore_runtime.kernels" in found["kernels"]


@pytest.mark.parametrize("name", bnncore_runtime.__all__)
def test_each_public_name_is_its_module_s_object(name):
    defined_in = {
        "WeightsFileError": "container",
        "DefinitionError": "definition",
        "isa": "kernels",
        "set_isa": "kernels",
        "supported_isas": "kernels",
        "SUPPORTED_LAYERS": "layers",
        "UnsupportedLayerError": "layers",
        "Model": "model",
        "TensorSpec": "model",
        "from_bytes": "model",
        "load": "model",
    }
    module = importlib.import_module(f"bnncore_runtime.{defined_in[name]}")
    assert getattr(bnncore_runtime, name) is getattr(module, name)
    assert name in dir(bnncore_runtime)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(
        AttributeError, match="'bnncore_runtime' has no attribute 'nope'"
    ):
        _ = bnncore_runtime.nope  # type: ignore[attr-defined]
    assert not hasattr(bnncore_runtime, "tensorflow")
