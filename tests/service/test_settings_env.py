"""The pydantic-free settings reader (``bnncore_service/settings_env.py``).

Oracle: the real ``config.load_settings()`` (pydantic-settings) on the same
environment. For every environment tried, ``read_settings()`` must give the
same fields (type and value) and the same answers of the three methods, or
raise ``SettingsError`` with the identical message. The tests also show that
the fast path is really taken (no pydantic-settings imported) for the
default and a realistic deployment environment, and that the generated
field table is current.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from bnncore_service.config import (
    FIELDS_MODULE,
    WRITE_FIELDS,
    Settings,
    SettingsError,
    field_rows,
    fields_module,
    load_settings,
)
from bnncore_service.settings_env import (
    Secret,
    fast_settings,
    read_settings,
)
from bnncore_service.settings_env import SettingsError as EnvSettingsError

ROOT = Path(__file__).resolve().parents[2]
KINDS = {row[0]: row[1] for row in field_rows()}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` without any ``BNN_*`` variable (in any case), plus
    ``values``; restored afterwards."""
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.lower().startswith("bnn_"):
                del os.environ[key]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _shown(value: Any) -> Any:
    """A field's value as compared: its type and repr (``-0.0`` is not
    ``0.0``); a secret by its value and display."""
    if isinstance(value, Secret) or type(value).__name__ == "SecretStr":
        return ("secret", value.get_secret_value(), str(value), len(value))
    return (type(value), repr(value))


def outcome(reader: Any) -> tuple[str, Any]:
    """What ``reader()`` gives: every field and the three methods' answers,
    or the error's type and message."""
    try:
        got = reader()
    except SettingsError as exc:
        return ("error", str(exc))
    try:
        methods: Any = (
            got.preload_targets(),
            got.api_key_scopes(),
            got.resolved_database_url(),
        )
    except ValueError as exc:  # pragma: no cover - a failure shows it
        methods = ("method error", str(exc))
    fields = {name: _shown(getattr(got, name)) for name in Settings.model_fields}
    return ("settings", (fields, methods))


def check(values: dict[str, str]) -> bool:
    """Both readers agree on ``values``; returns whether the fast path
    decided (no deferral)."""
    with environment(values):
        expected = outcome(load_settings)
        fast = fast_settings(os.environ)
        decided = fast is not None
        if fast is not None:
            try:
                fast.api_key_scopes()
            except ValueError:
                decided = False
        got = outcome(read_settings)
    assert got == expected, values
    return decided


# Values of each kind: valid, edge and invalid forms.
INTS = [
    "0", "-0", "00", "0005", "+5", " 5", "5 ", "5\n", "\t5", "1_000", "5.0",
    "1e3", "\u0663", "\uff15", "0x10", "", " ", "-5", "9" * 18, "9" * 19,
    "-" + "9" * 18, "9" * 40, "inf", "nan", "5 5", "\u00a05", "1024", "2",
]  # fmt: skip
FLOATS = [
    "0", "-0", "-0.0", "0.0", ".5", "5.", "1e3", "1E3", "inf", "-inf", "nan",
    "Infinity", "+1.5", " 1.5", "1.5 ", "1_0.5", "0.1", "1.50", "00.5", "",
    "1" * 15 + "." + "1" * 15, "1" * 16, "0." + "0" * 15 + "1",
    "3600.0000000000001", "3600.000000000001", "1e-400", "\u0663.5", "1.5\n",
    "0x1p3", "-0.5", "0.5", "30", "1.7976931348623157e309", "1..5",
]  # fmt: skip
BOOLS = [
    "0", "1", "t", "f", "y", "n", "no", "on", "off", "yes", "true", "false",
    "TRUE", "False", "Yes", "oN", "OFF", " true", "true ", "2", "", "ye", "tru",
    "True\n", "\uff11", "\u0131", "00", "-1", "yes\t",
]  # fmt: skip
PATTERNED = {
    "migrate": ["auto", "off", "AUTO", "Off", "auto\n", " auto", ""],
    "engine": ["auto", "keras", "Keras", "keras\n", "numpy", ""],
    "role": ["full", "inference", "Inference", "inference\n", "replica", ""],
    "log_format": ["text", "json", "JSON", "json\n", "xml", ""],
    "log_level": [
        "debug", "info", "warning", "error", "critical", "INFO", "Warning",
        "info\n", "\u0131nfo", "debu\u212a", "trace", "", " info",
    ],
    "object_store_url": [
        "", "s3://bucket", "s3://b/p", "s3://my-bucket.x/pre/fix", "s3://ab",
        "S3://bucket", "s3://bucket/a b", "s3://bucket/a\tb", "s3://bucket\n",
        "s3://bucket/\u00e9", "s3://bucket/a\u2003b", "s3://bucket/a\x1cb",
        "s3://Bucket", "file:///tmp", "s3://bucket/a\u0085b",
    ],
}  # fmt: skip
STRINGS = [
    "", " ", "postgresql+psycopg://u:p@db:5432/bnn", "sqlite:///x.db",
    "\u00e9", "a\nb", "a\udcffb", "  padded  ", "~/data", ".",
]  # fmt: skip
SECRETS = [
    "", " ", "k1", "k1:read+infer,k2:admin", '{"k1": ["read"], "k2": "*"}',
    "k1:bogus", "{bad", "k1,k1", "k 1", '{"k1": 5}', "k1:*", "k\u00e9",
    ' {"k1": []} ', "k1:read,,k2",
]  # fmt: skip
ORIGINS = [
    "", " ", "a,b", " a , ,b ", '["a","b"]', ' ["a"] ', "[1]", "[bad",
    '{"a": 1}', '["a", 1]', "*", "[]", '["\\u00e9"]', "a,\u00a0,b", '"a"',
    "https://a.example,https://b.example", '["a"] x', "[null]",
]  # fmt: skip
PRELOADS = [
    "", " ", "mnist", "mnist,quicknet:3", " a , b:3 ,a", "a:0", "a:x", "1a",
    "a:2147483648", "a:2147483647", "a:\u0663", ",,", "a,,b", "a:+3", "a:03",
]  # fmt: skip


def values_of(name: str) -> list[str]:
    """The values tried for the field ``name``: its kind's forms, with its
    bounds ±1 for a number."""
    kind = KINDS[name]
    if name in PATTERNED:
        return PATTERNED[name]
    rows = {row[0]: row for row in field_rows()}
    extra = []
    for _sign, bound in rows[name][3]:
        extra += [str(bound - 1), str(bound), str(bound + 1)]
        if kind == "float":
            extra += [f"{bound}.0", f"{bound}.000001", f"{bound - 0.000001:.6f}"]
    return {
        "int": INTS,
        "float": FLOATS,
        "bool": BOOLS,
        "str": STRINGS,
        "path": STRINGS,
        "secret": SECRETS,
        "origins": ORIGINS,
        "preload": PRELOADS,
    }[kind] + extra


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_each_value_of_each_field_reads_as_pydantic_reads_it(name: str) -> None:
    decided = [check({f"BNN_{name.upper()}": value}) for value in values_of(name)]
    # The fast path reads the common forms itself (and a plain string or path
    # always); it defers the rest.
    assert any(decided), name
    assert not all(decided) or KINDS[name] in ("str", "path"), name


def test_the_default_environment_is_read_by_the_fast_path() -> None:
    assert check({})
    assert check({"BNN_ENGINE_ISA": "avx2", "BNN_ROUTE_FAST_PATH": "0"})


REALISTIC = {
    "BNN_ROLE": "inference",
    "BNN_DATABASE_URL": "postgresql+psycopg://bnn:s3cret@db:5432/registry",
    "BNN_OBJECT_STORE_URL": "s3://models/bnn",
    "BNN_API_KEYS": "reader:read+infer,ops:admin",
    "BNN_CORS_ORIGINS": "https://a.example, https://b.example",
    "BNN_PRELOAD": "mnist,quicknet:3",
    "BNN_LOG_FORMAT": "json",
    "BNN_MAX_BATCH": "64",
    "BNN_REGISTRY_POLL_S": "0.5",
    "BNN_PUBLIC_DOCS": "false",
    "BNN_MIGRATE": "off",
}


@pytest.mark.parametrize(
    "values",
    [
        REALISTIC,
        REALISTIC | {"BNN_API_KEYS": '{"reader": ["read", "infer"], "ops": "*"}'},
        REALISTIC | {"BNN_CORS_ORIGINS": '["https://a.example"]'},
    ],
    ids=["compact-keys", "json-keys", "json-origins"],
)
def test_a_deployment_environment_is_read_by_the_fast_path(
    values: dict[str, str],
) -> None:
    assert check(values)


@pytest.mark.parametrize(
    "values",
    [
        {"bnn_max_batch": "64"},  # another spelling: pydantic-settings reads it
        {"BNN_MAX_BATCH": "64", "bnn_max_batch": "65"},
        {"Bnn_Role": "inference"},
        {"BNN_MAX_BATCH": "+64"},  # pydantic reads it, the fast path does not
        {"BNN_MAX_BATCH": "lots", "BNN_MAX_LAYERS": "-3"},  # both named
        {"BNN_API_KEYS": "k1:bogus", "BNN_MAX_BATCH": "64"},
        {"BNN_PRELOAD": "a:0"},
        {"BNN_\u212aEEP_ALIVE_S": "2"},  # lower(): "bnn_keep_alive_s"
    ],
    ids=[
        "lower-name", "two-spellings", "mixed-name", "signed", "two-bad",
        "bad-keys", "bad-preload", "kelvin-name",
    ],
)  # fmt: skip
def test_what_pydantic_must_decide_is_deferred(values: dict[str, str]) -> None:
    assert not check(values)


def _environments() -> st.SearchStrategy[dict[str, str]]:
    """Several fields at once, each spelled upper case (mostly), lower or
    mixed case, with values from its kind's forms or arbitrary text."""
    names = list(Settings.model_fields)
    text = st.text(
        st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
        max_size=12,
    )

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, str]:
        values: dict[str, str] = {}
        for name in draw(st.lists(st.sampled_from(names), max_size=6, unique=True)):
            value = draw(st.sampled_from(values_of(name)) | text)
            spelling = draw(st.sampled_from(["upper"] * 6 + ["lower", "mixed"]))
            key = f"BNN_{name.upper()}"
            if spelling == "lower":
                key = key.lower()
            elif spelling == "mixed":
                key = "bnn_" + name.upper()
            values[key] = value
        if draw(st.booleans()):
            values["BNN_ENGINE_ISA"] = draw(text)
        return values

    return build()


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(values=_environments())
def test_any_environment_reads_as_pydantic_reads_it(values: dict[str, str]) -> None:
    check(values)


def test_settings_error_is_one_class() -> None:
    assert SettingsError is EnvSettingsError


def test_the_fast_settings_hide_the_keys() -> None:
    with environment({"BNN_API_KEYS": "topsecret:admin"}):
        fast = fast_settings(os.environ)
        assert fast is not None
        assert "topsecret" not in repr(fast) and "api_keys" not in repr(fast)
        assert "topsecret" not in repr(fast.api_keys)
        assert str(fast.api_keys) == str(load_settings().api_keys) == "**********"


CHILD = """
import json, sys
from bnncore_service.settings_env import read_settings
settings = read_settings()
print(json.dumps({
    "modules": [m for m in ("pydantic", "pydantic_settings", "bnncore_service.config")
                if m in sys.modules],
    "type": type(settings).__name__,
    "max_batch": settings.max_batch,
}))
"""


def _fresh(values: dict[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("bnn_")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env | values,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def test_a_fresh_process_reads_the_default_without_pydantic() -> None:
    assert _fresh({}) == {"modules": [], "type": "EnvSettings", "max_batch": 256}


def test_a_fresh_process_reads_a_deployment_without_pydantic_settings() -> None:
    seen = _fresh(REALISTIC)
    # BNN_PRELOAD's parser lives in bnncore_service/preload.py, which imports
    # bnncore_service/logs.py, which imports pydantic itself.
    assert seen["type"] == "EnvSettings" and seen["max_batch"] == 64
    assert not {"pydantic_settings", "bnncore_service.config"} & set(seen["modules"])


def test_a_fresh_process_defers_to_pydantic_when_it_must() -> None:
    # The check above can fail: a value outside the fast forms imports them.
    seen = _fresh({"BNN_MAX_BATCH": "+64"})
    assert seen["type"] == "Settings" and seen["max_batch"] == 64
    assert {"pydantic", "pydantic_settings", "bnncore_service.config"} <= set(
        seen["modules"]
    )


def test_the_generated_field_table_is_current() -> None:
    committed = FIELDS_MODULE.read_text(encoding="utf-8")
    assert fields_module() == committed, (
        f"{FIELDS_MODULE.name} is out of date with Settings: run {WRITE_FIELDS}"
    )


class _MoreSettings(Settings):
    new_limit: int = Field(default=3, ge=1)


class _UnreadableSettings(Settings):
    step: int = Field(default=2, multiple_of=2)


def test_a_new_field_changes_the_table_and_an_unreadable_one_is_refused() -> None:
    # The staleness check can fail: one more field changes the module's text.
    assert fields_module(_MoreSettings) != fields_module()
    assert ("new_limit", "int", 3, ((">=", 1),), None, False) in field_rows(
        _MoreSettings
    )
    with pytest.raises(TypeError, match=r"_UnreadableSettings.step's constraint"):
        field_rows(_UnreadableSettings)
