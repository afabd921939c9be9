"""A TypeScript client generated from the service's OpenAPI types the report fully.

``openapi-typescript`` (pinned in ``package.json`` / ``package-lock.json``)
generates declarations from the app's ``/openapi.json``; ``tsc --noEmit
--strict`` compiles ``report_client.ts`` against them (it uses the report, the
estimate and the model list, checks at type level that nothing in them is
``any`` or ``unknown``, and expects errors where a typed client must refuse);
and the generated declarations of the report's components are searched for
loose types. Node and npm run the real tools: in CI (``CI`` set) they must be
present; elsewhere the test skips without them. ``npm ci`` installs into
``tests/typescript/node_modules`` (git-ignored) once and reuses it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
MODULES = HERE / "node_modules"
REPORT_COMPONENTS = re.compile(
    r"^(ProfileReport|Report\w+|EstimateReport\w*|EstimateMemory"
    r"|ModelList|ModelSummary|VersionSummary|Compar\w+|ChangeValue)$"
)
LOOSE = [
    re.compile(r"\bany\b"),
    re.compile(r"\bunknown\b"),
    re.compile(r"Record<string, never>"),
    re.compile(r"\[key: string\]: unknown"),
]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (Node.js 18+ with npm)")
        pytest.skip(f"{name} is not installed (Node.js 18+ with npm)")
    return found


def _run(args: list[str], cwd: Path, timeout: float) -> str:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (args, result.stdout[-4000:], result.stderr[-4000:])
    return result.stdout


@pytest.fixture(scope="module")
def node_tools() -> dict[str, Path]:
    node = _tool("node")
    npm = _tool("npm")
    major = int(_run([node, "--version"], HERE, 30).strip().lstrip("v").split(".")[0])
    assert major >= 18, f"Node.js 18+ is required, found {major}"
    lock = json.loads((HERE / "package-lock.json").read_text())
    installed = MODULES / ".package-lock.json"
    wanted = {
        name: lock["packages"][f"node_modules/{name}"]["version"]
        for name in ("openapi-typescript", "typescript")
    }

    def current() -> bool:
        if not installed.exists():
            return False
        packages = json.loads(installed.read_text()).get("packages", {})
        return all(
            packages.get(f"node_modules/{name}", {}).get("version") == version
            for name, version in wanted.items()
        )

    if not current():
        _run([npm, "ci", "--no-audit", "--no-fund"], HERE, 600)
    assert current(), wanted
    return {
        "node": Path(node),
        "openapi-typescript": MODULES / "openapi-typescript" / "bin" / "cli.js",
        "tsc": MODULES / "typescript" / "bin" / "tsc",
    }


@pytest.fixture(scope="module")
def generated(node_tools: dict[str, Path], tmp_path_factory) -> Iterator[Path]:
    from bnncore_service.config import Settings
    from bnncore_service.main import create_app

    work = tmp_path_factory.mktemp("typescript")
    # What GET /openapi.json serves, from the app in this process.
    app = create_app(Settings(data_dir=work / "data"))
    (work / "openapi.json").write_text(json.dumps(app.openapi()))
    _run(
        [
            str(node_tools["node"]),
            str(node_tools["openapi-typescript"]),
            str(work / "openapi.json"),
            "--output",
            str(work / "schema.d.ts"),
        ],
        work,
        120,
    )
    shutil.copy(HERE / "report_client.ts", work / "report_client.ts")
    yield work


def _components(declarations: str) -> dict[str, str]:
    """The text of each component schema in the generated declarations."""
    start = declarations.index("    schemas: {\n")
    end = declarations.index("\n    responses:", start)
    body = declarations[start:end]
    # Each schema starts at 8 spaces of indentation: "        Name: {".
    parts = re.split(r"\n        (?=[A-Za-z_]\w*: )", body)
    out = {}
    for part in parts[1:]:
        name = part.split(":", 1)[0]
        out[name] = part
    return out


def _without_comments(text: str) -> str:
    return re.sub(r"/\*\*.*?\*/", "", text, flags=re.S)


def test_generated_report_types_have_no_loose_types(generated: Path) -> None:
    components = _components((generated / "schema.d.ts").read_text())
    report = {n: t for n, t in components.items() if REPORT_COMPONENTS.match(n)}
    assert {
        "ProfileReport",
        "ReportLayer",
        "EstimateReport",
        "VersionSummary",
        "ComparisonReport",
    } <= set(report), sorted(components)
    loose = [
        (name, pattern.pattern, line.strip())
        for name, text in report.items()
        for line in _without_comments(text).splitlines()
        for pattern in LOOSE
        if pattern.search(line)
    ]
    assert loose == []


def test_loose_types_are_found_in_declarations() -> None:
    # The search above can fail: a loose component is reported.
    text = (
        "    schemas: {\n        ProfileReport: {\n            model: {\n"
        "                [key: string]: unknown;\n            };\n        };\n"
        "        Other: {\n            a: string;\n        };\n    };\n"
        "    responses: never;\n"
    )
    components = _components(text)
    assert set(components) == {"ProfileReport", "Other"}
    assert any(p.search(components["ProfileReport"]) for p in LOOSE)
    assert not any(p.search(components["Other"]) for p in LOOSE)


def _tsc(node_tools: dict[str, Path], cwd: Path) -> subprocess.CompletedProcess:
    """``tsc --noEmit --strict report_client.ts`` in ``cwd``."""
    return subprocess.run(
        [
            str(node_tools["node"]),
            str(node_tools["tsc"]),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            "report_client.ts",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_client_compiles_strictly_against_the_generated_types(
    node_tools: dict[str, Path], generated: Path
) -> None:
    result = _tsc(node_tools, generated)
    assert result.returncode == 0, result.stdout[-4000:]


def test_compiler_refuses_a_client_of_untyped_reports(
    node_tools: dict[str, Path], generated: Path, tmp_path: Path
) -> None:
    # The same client against a schema whose report is `any` must not compile
    # (the type-level checks and the expected errors fail).
    declarations = (generated / "schema.d.ts").read_text()
    loose = re.sub(
        r"(\n        ProfileReport: )\{.*?\n        \};",
        r"\1any;",
        declarations,
        count=1,
        flags=re.S,
    )
    assert loose != declarations
    (tmp_path / "schema.d.ts").write_text(loose)
    shutil.copy(HERE / "report_client.ts", tmp_path / "report_client.ts")
    result = _tsc(node_tools, tmp_path)
    assert result.returncode != 0
    # TS2578: the report's expected errors did not occur; TS2322: `true` is
    # not the path of the loose field (reportIsTyped). The estimate's stay.
    assert result.stdout.count("TS2578") == 4, result.stdout
    assert "error TS2322: Type 'true' is not assignable" in result.stdout
