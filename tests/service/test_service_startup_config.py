"""Bad ``BNN_*`` values stop the start-up with one line naming the variable.

The service is started as an operator starts it (``python -m bnncore_service``, in
a subprocess; ``uvicorn bnncore_service.main:app`` stops on the same import); the
oracle is what a person needs to fix the value: the variable, what it held
and the expected form, and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnncore_service.config import SettingsError, expected_form, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _start(command: list[str], tmp_path: Path, **variables: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    env.update(BNN_DATA_DIR=str(tmp_path / "data"), **variables)
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stderr


def test_bad_value_stops_the_start_with_one_line(tmp_path: Path) -> None:
    # ``uvicorn bnncore_service.main:app`` fails on the same path (importing
    # bnncore_service.main reads the settings); one subprocess keeps the test quick.
    command = ["-m", "bnncore_service", "--port", "0"]
    code, stderr = _start(command, tmp_path, BNN_MAX_BATCH="lots")
    assert code == 2
    assert "Traceback" not in stderr and "pydantic" not in stderr.lower(), stderr
    ours = [line for line in stderr.splitlines() if "BNN_" in line]
    assert ours == [
        "bnncore service: invalid configuration: BNN_MAX_BATCH='lots': expected "
        "an integer >= 1"
    ], stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BNN_MAX_BATCH", "0", "an integer >= 1"),
        ("BNN_INFERENCE_TIMEOUT_S", "soon", "a number > 0"),
        ("BNN_PUBLIC_DOCS", "maybe", "true or false"),
        ("BNN_ENGINE", "fast", "auto or keras"),
        ("BNN_BATCH_MAX_SIZE", "5000", "an integer >= 1 and <= 4096"),
        ("BNN_CORS_ORIGINS", "[oops", "origins separated by commas, or a JSON list"),
    ],
)
def test_each_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert f"{variable}={value!r}: expected {expected}" in message, message


def test_several_bad_values_make_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNN_MAX_BATCH", "lots")
    monkeypatch.setenv("BNN_MAX_LAYERS", "-3")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert "BNN_MAX_BATCH='lots'" in message and "BNN_MAX_LAYERS='-3'" in message


def test_expected_form_of_every_setting_is_words() -> None:
    from bnncore_service.config import Settings

    for field in Settings.model_fields:
        assert expected_form(field) != "a value", field


def test_good_values_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNN_MAX_BATCH", "12")
    monkeypatch.setenv("BNN_PUBLIC_DOCS", "no")
    settings = load_settings()
    assert settings.max_batch == 12 and settings.public_docs is False


def test_bad_api_keys_name_the_variable_not_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BNN_API_KEYS", "s3cret-key:bogus")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message and "BNN_API_KEYS" in message and "bogus" in message
    assert "s3cret-key" not in message
