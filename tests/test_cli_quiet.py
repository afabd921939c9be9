"""The command line keeps TensorFlow's native start-up lines off stderr.

``bnncore/cli.py`` imports only the standard library at module level, so it is
loaded here on its own (from its file, before any ``import bnncore``): that is
how it runs when it is the first thing a process imports. The control is the
same process importing TensorFlow plainly, which does print such lines on
this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnncore import cli

ROOT = Path(__file__).resolve().parent.parent

CLI_FILE = str(ROOT / "bnncore" / "cli.py")
LOAD_CLI_ALONE = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("cli_alone", {CLI_FILE!r})
cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli)
"""  # fmt: skip

DEFINITION = {
    "name": "tiny",
    "input_shape": [12],
    "layers": [
        {
            "type": "QuantDense",
            "units": 4,
            "input_quantizer": "ste_sign",
            "kernel_quantizer": "ste_sign",
            "kernel_constraint": "weight_clip",
        }
    ],
}


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def native_lines(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if cli.NATIVE_LOG_LINE.match(line.encode())
    ]


@pytest.mark.parametrize(
    ("line", "native"),
    [
        (
            "I0000 00:00:1796291210.446512   31316 cudart_stub.cc:31] Could not "
            "find cuda drivers on your machine, GPU will not be used.",
            True,
        ),
        (
            "E0000 00:00:1796291216.156780   31316 cuda_platform.cc:52] failed "
            "call to cuInit: INTERNAL: CUDA error",
            True,
        ),
        (
            "W1203 10:05:56.358123 140 tensorflow/core/framework/op_kernel.cc:1857] x",
            True,
        ),
        (
            "WARNING: All log messages before absl::InitializeLog() is called are "
            "written to STDERR",
            True,
        ),
        (
            "To enable the following instructions: AVX2 FMA, in other operations, "
            "rebuild TensorFlow with the appropriate compiler flags.",
            True,
        ),
        ("bnncore: error: no such file: 'x.keras'", False),
        ("WARNING: the model has no weights", False),
        ("I0000 is not a log line without the rest", False),
    ],
    ids=["info", "error", "glog-date", "absl-preinit", "cpu-notice", "ours",
         "other-warning", "prefix-only"],
)  # fmt: skip
def test_native_log_line_pattern(line, native):
    assert bool(cli.NATIVE_LOG_LINE.match(line.encode())) is native


def test_filter_drops_native_lines_written_to_fd_2_and_keeps_the_rest(capfd):
    with cli.native_logs_filtered():
        os.write(2, b"I0000 00:00:1796291210.4 31316 cudart_stub.cc:31] noise\n")
        os.write(2, b"kept: an ordinary line\n")
        os.write(2, b"kept: WARNING: I0000 not at the start\n")
        os.write(2, b"E0000 00:00:1796291216.1 31316 cuda_platform.cc:52] noise\n")
    assert capfd.readouterr().err.splitlines() == [
        "kept: an ordinary line",
        "kept: WARNING: I0000 not at the start",
    ]


def test_filter_restores_stderr_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError), cli.native_logs_filtered():
        os.write(2, b"kept before the error\n")
        raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err.splitlines() == ["kept before the error", "after"]


def test_summary_run_first_in_a_process_prints_no_tensorflow_line(tmp_path):
    control = run("import tensorflow")
    if not native_lines(control.stderr):  # the test could not fail here
        pytest.skip("TensorFlow prints no native start-up line on this machine")
    definition = tmp_path / "tiny.json"
    definition.write_text(json.dumps(DEFINITION))
    result = run(
        LOAD_CLI_ALONE + f"sys.exit(cli.main(['summary', {str(definition)!r}]))"
    )
    assert result.returncode == 0, result.stderr
    assert "QuantDense" in result.stdout
    assert native_lines(result.stderr) == []


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["--help"], 0), (["summary", "--help"], 0), (["summary"], 2), ([], 2)],
    ids=["help", "summary-help", "missing-source", "no-command"],
)
def test_help_and_usage_errors_do_not_import_tensorflow(argv, code):
    result = run(
        LOAD_CLI_ALONE
        + f"code = cli.main({argv!r})\n"
        + "print('tensorflow' in sys.modules, file=sys.stderr)\n"
        + "sys.exit(code)"
    )
    assert result.returncode == code
    assert result.stderr.splitlines()[-1] == "False"
    assert native_lines(result.stderr) == []


def test_debug_and_a_users_level_leave_tensorflow_logging_alone(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    cli.start_tensorflow(debug=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    cli.start_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    cli.start_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
