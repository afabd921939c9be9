"""A process that imports only ``bnncore_runtime`` has neither TensorFlow nor
Keras (nor ``bnncore``, which imports Keras), and answers as the engine does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from bnncore import engine

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import bnncore_runtime

    model = bnncore_runtime.load(sys.argv[1], threads=1)
    np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))
    heavy = sorted(
        name for name in sys.modules
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "bnncore")
    )
    print(",".join(heavy) or "none")
    """
)


def test_a_process_with_only_the_runtime_has_no_tensorflow(mnist, tmp_path):
    model, directory = mnist
    x = np.random.default_rng(4).normal(size=(5, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), str(tmp_path / "x.npy"),
         str(tmp_path / "y.npy")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "none"
    got = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(got, engine.compile(model, threads=1).predict(x))
