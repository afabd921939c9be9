"""The ``bnncore`` command line: in-process through ``main(argv)``, plus one
subprocess run of ``python -m bnncore``.

Expected sizes are written out from the models' shapes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from bnncore import cli, export, models
from bnncore import layers as bl
from bnncore.zoo import registry

ROOT = Path(__file__).resolve().parent.parent

# The service's MNIST sample, written out here so this test stands alone.
MNIST = {
    "name": "mnist-bnn",
    "input_shape": [28, 28, 1],
    "layers": [
        {"type": "QuantConv2D", "filters": 32, "kernel_size": 3,
         "kernel_quantizer": "ste_sign", "use_bias": False},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "BatchNormalization", "scale": False},
        {"type": "Flatten"},
        {"type": "QuantDense", "units": 10, "input_quantizer": "ste_sign",
         "kernel_quantizer": "ste_sign"},
    ],
}  # fmt: skip
# 3·3·1·32 one-bit kernel weights; BatchNorm folded: 2 floats per channel;
# 13·13·32 → 10 one-bit kernel weights and 10 float biases.
MNIST_BITS = 3 * 3 * 32 + 2 * 32 * 32 + 13 * 13 * 32 * 10 + 10 * 32
MNIST_BYTES = -(-MNIST_BITS // 8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    definition = folder / "mnist.json"
    definition.write_text(json.dumps(MNIST))
    model = keras.Sequential(
        [
            keras.Input((6,)),
            bl.QuantDense(
                5, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="qd"
            ),
            keras.layers.Dense(3, name="head"),
        ],
        name="tiny",
    )
    keras_file = folder / "tiny.keras"
    model.save(keras_file)
    lambda_model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)]
    )
    lambda_file = folder / "lambda.keras"
    lambda_model.save(lambda_file)
    broken = folder / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    return {
        "definition": definition,
        "keras": keras_file,
        "model": model,
        "lambda": lambda_file,
        "broken": broken,
        "folder": folder,
    }


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_subcommand(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    for command in ("summary", "compare", "export", "zoo", "serve", "bench"):
        assert command in out
    code, out, _ = _run(capsys, "summary", "--help")
    assert code == 0 and "--fail-over-bytes" in out and "html" in out


def test_summary_of_a_definition_file(capsys, files):
    code, out, err = _run(
        capsys, "summary", str(files["definition"]), "--format", "json"
    )
    assert code == 0, err
    totals = json.loads(out)["totals"]
    assert totals["memory_bytes"] == MNIST_BYTES == 7092
    assert totals["inference_params_by_bits"] == {
        "1": 3 * 3 * 32 + 13 * 13 * 32 * 10,
        "32": 2 * 32 + 10,
    }


def test_summary_of_a_keras_file_equals_the_profile(capsys, files):
    code, out, _ = _run(capsys, "summary", str(files["keras"]), "--format", "json")
    assert code == 0
    got, want = json.loads(out), models.profile(files["model"]).to_dict()
    assert got["totals"] == want["totals"]
    counts = ("name", "params_by_bits", "memory_bits", "macs_by_bits")
    assert [{k: row[k] for k in counts} for row in got["layers"]] == [
        {k: row[k] for k in counts} for row in want["layers"]
    ]
    assert json.loads(out)["totals"]["memory_bits"] == 6 * 5 + 5 * 32 + (5 * 3 + 3) * 32


def test_summary_writes_an_html_file(capsys, files):
    target = files["folder"] / "tiny.html"
    code, out, _ = _run(
        capsys, "summary", str(files["keras"]), "--format", "html", "-o", str(target)
    )
    assert code == 0 and str(target) in out
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and "https://" not in page
    assert not list(files["folder"].glob("*.partial"))


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(MNIST_BYTES - 1, 1), (MNIST_BYTES, 0), (10**9, 0)],
    ids=["one-byte-over", "exactly", "far-under"],
)
def test_fail_over_bytes_is_a_size_gate(capsys, files, limit, expected):
    code, out, err = _run(
        capsys, "summary", str(files["definition"]), "--fail-over-bytes", str(limit)
    )
    assert code == expected
    assert "Model size" in out  # the report is printed either way
    if expected:
        assert f"{MNIST_BYTES:,} bytes, over --fail-over-bytes {limit:,}" in err


PARSER_ERRORS = ("invalid choice", "non-negative", "expected a port")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "missing.keras"], "no such file: 'missing.keras'"),
        (["summary", "{folder}/mnist.json", "--format", "pdf"], "invalid choice"),
        (["summary", "{folder}/broken.keras"], "cannot load"),
        (["summary", "{folder}/lambda.keras"], "cannot load"),
        (["summary", "zoo:NoSuchNet"], "Unknown zoo model: name='NoSuchNet'"),
        (["summary", "{folder}/bad.json"], "not a valid definition"),
        (["summary", "{folder}/notjson.json"], "is not a JSON file"),
        (["summary", "{folder}/tiny.txt"], "unsupported source"),
        (["summary", "zoo:QuickNet", "--fail-over-bytes", "-3"], "non-negative"),
        (
            ["summary", "{folder}/mnist.json", "-o", "/no/such/dir/x.txt"],
            "no directory",
        ),
        (
            ["export", "{folder}/mnist.json", "{folder}/out"],
            "expected an existing .keras",
        ),
        (["serve", "--port", "99999"], "expected a port"),
        (["frobnicate"], "invalid choice"),
    ],
    ids=[
        "missing-file",
        "unknown-format",
        "not-a-zip",
        "lambda-refused-by-safe-mode",
        "unknown-zoo-model",
        "invalid-definition",
        "not-json",
        "unknown-suffix",
        "negative-limit",
        "unwritable-output",
        "export-needs-keras",
        "bad-port",
        "unknown-command",
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, files, argv, message):
    folder = files["folder"]
    (folder / "bad.json").write_text(json.dumps({"name": "x", "layers": "nope"}))
    (folder / "notjson.json").write_text("{not json")
    (folder / "tiny.txt").write_text("hello")
    code, _, err = _run(capsys, *(a.format(folder=folder) for a in argv))
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("bnncore") and message in last
    if message not in PARSER_ERRORS:  # argparse prints its usage lines first
        assert len(err.strip().splitlines()) == 1


def test_compare_a_definition_with_a_keras_file(capsys, files):
    code, out, _ = _run(
        capsys,
        "compare",
        str(files["keras"]),
        str(files["definition"]),
        "--format",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    tiny_bytes = -(-(6 * 5 + 5 * 32 + (5 * 3 + 3) * 32) // 8)
    assert doc["totals"]["memory_bytes"] == {
        "a": tiny_bytes,
        "b": MNIST_BYTES,
        "delta": MNIST_BYTES - tiny_bytes,
    }
    assert doc["only_in_a"] == ["qd", "head"]
    code, _, err = _run(capsys, "compare", str(files["keras"]), "missing.json")
    assert code == 2 and "no such file: 'missing.json'" in err


def test_debug_shows_the_exception(files):
    with pytest.raises(cli.UsageError, match="no such file"):
        cli.main(["--debug", "summary", "missing.keras"])


def test_export_writes_weights_that_reload(capsys, files):
    target = files["folder"] / "exported"
    code, out, _ = _run(capsys, "export", str(files["keras"]), str(target))
    assert code == 0 and "weights.safetensors" in out
    assert sorted(p.name for p in target.iterdir()) == [
        "definition.json",
        "weights.safetensors",
    ]
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    reloaded = export.load(target)
    np.testing.assert_allclose(reloaded(x), files["model"](x), rtol=1e-6, atol=1e-6)


def test_zoo_lists_every_model_with_its_size(capsys):
    code, out, _ = _run(capsys, "zoo")
    assert code == 0
    for entry in registry.entries():
        line = next(row for row in out.splitlines() if row.startswith(entry.name + " "))
        assert f"{entry.published_params:,}" in line
        assert f"{entry.published_memory_mib:.2f}" in line


def test_python_dash_m_bnncore_in_a_subprocess(files):
    result = subprocess.run(
        [sys.executable, "-m", "bnncore", "summary", str(files["definition"]),
         "--format", "json", "--fail-over-bytes", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert result.returncode == 1
    assert json.loads(result.stdout)["totals"]["memory_bytes"] == MNIST_BYTES
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("bnncore: model")
