"""The command line keeps TensorFlow's native start-up lines off stderr.

The commands are run as users run them: the console script
(``.venv/bin/bnncore``) and ``python -m bnncore``, in subprocesses. The
control is a program that imports bnncore, which does print such lines on
this machine: library users' TensorFlow logging is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bnncore
from bnncore import cli

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "bnncore"

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


def environment(**env: str) -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    found.pop("PYTHONPROFILEIMPORTTIME", None)
    found.update(env)
    return found


def command(entry: str) -> list[str]:
    """The ``bnncore`` command through one of its entry points."""
    if entry == "module":
        return [sys.executable, "-m", "bnncore"]
    if not CONSOLE_SCRIPT.is_file():
        message = f"no console script at {CONSOLE_SCRIPT} (pip install -e .)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return [str(CONSOLE_SCRIPT)]


def bnncore_command(
    entry: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(entry), *args],
        cwd=ROOT,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment(**env),
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


@pytest.fixture(scope="module")
def definition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A definition file for ``summary``, once a library user's import of
    bnncore is known to print native lines here (else nothing can fail)."""
    control = run("import bnncore")
    assert control.returncode == 0, control.stderr
    if not native_lines(control.stderr):
        pytest.skip("TensorFlow prints no native start-up line on this machine")
    path = tmp_path_factory.mktemp("quiet") / "tiny.json"
    path.write_text(json.dumps(DEFINITION))
    return str(path)


@pytest.mark.parametrize("entry", ["console", "module"])
def test_summary_prints_no_tensorflow_line(entry, definition):
    result = bnncore_command(entry, "summary", definition)
    assert result.returncode == 0, result.stderr
    assert "QuantDense" in result.stdout
    assert native_lines(result.stderr) == []


def test_debug_keeps_tensorflow_lines(definition):
    result = bnncore_command("console", "--debug", "summary", definition)
    assert result.returncode == 0, result.stderr
    assert "QuantDense" in result.stdout
    assert native_lines(result.stderr) != []


@pytest.mark.parametrize(
    ("entry", "argv", "code"),
    [("module", ["--help"], 0), ("module", ["summary", "--help"], 0),
     ("module", ["summary"], 2), ("module", [], 2), ("console", ["--help"], 0),
     ("console", ["summary"], 2)],
    ids=["module-help", "module-summary-help", "module-missing-source",
         "module-no-command", "console-help", "console-missing-source"],
)  # fmt: skip
def test_help_and_usage_errors_do_not_import_tensorflow(entry, argv, code):
    result = bnncore_command(entry, *argv, PYTHONPROFILEIMPORTTIME="1")
    assert result.returncode == code, result.stderr
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "bnncore.cli" in imported  # the import log is there to read
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]
    assert native_lines(result.stderr) == []


@pytest.mark.parametrize(
    ("argv", "orig_argv", "command_"),
    [(["/venv/bin/bnncore", "summary"], ["/venv/bin/python", "/venv/bin/bnncore"],
      True),
     (["-m", "summary"], ["python", "-m", "bnncore", "summary"], True),
     (["-m", "summary"], ["python", "-X", "dev", "-m", "bnncore"], True),
     (["-m"], ["python", "-m", "bench"], False),
     (["-m"], ["python", "-m", "bnncore.engine.x"], False),
     (["-c"], ["python", "-c", "import bnncore", "bnncore"], False),
     (["train.py"], ["python", "train.py"], False),
     (["/home/u/bnncore.py"], ["python", "/home/u/bnncore.py"], False),
     ([], ["python"], False)],
    ids=["console-script", "python-m", "python-options-m", "other-module",
         "submodule", "python-c", "script", "script-named-bnncore-py", "embedded"],
)  # fmt: skip
def test_the_command_is_recognised_from_argv(monkeypatch, argv, orig_argv, command_):
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert bnncore._run_as_the_command() is command_


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
