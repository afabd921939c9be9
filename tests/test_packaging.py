"""Packaging: the library installs without the web stack, and works without
its compiled core.

* Every third-party module imported under ``bnncore/`` and ``bnncore_runtime/``
  is provided by a core dependency of ``pyproject.toml``, and every one
  imported under ``bnncore_service/`` by the core dependencies plus the ``service``
  extra. An import inside ``try: ... except ImportError`` is optional: any
  extra may provide it (``boto3`` in ``s3``). Import names are mapped to
  distributions by the installed metadata
  (``importlib.metadata.packages_distributions``).
* With ``bnncore_runtime._kernels`` and the service extra's modules made
  unimportable (a ``sys.meta_path`` finder), ``import bnncore``, the
  quantizers, the layers, the summary and the export work, and the engine
  raises ``CoreUnavailableError`` saying how to build the core.
* ``setup.py`` with a compiler that fails: the build succeeds without the
  core, except in strict builds (``CI=true``, ``BNN_STRICT_BUILD=1``) and with
  ``BNN_REQUIRE_CORE=1``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
FIRST_PARTY = {"bnncore", "bnncore_runtime", "bnncore_service", "service", "bench"}
LIBRARY_PACKAGES = ("bnncore", "bnncore_runtime")
SERVICE_PACKAGES = ("bnncore_service", "service")


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str], seen: frozenset[str] = frozenset()):
    """The distributions named by ``requirements``, with this project's own
    extras (``bnncore[postgres,s3]``) expanded."""
    names: set[str] = set()
    for requirement in requirements:
        match = re.match(
            r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement
        )
        assert match, f"unreadable requirement {requirement!r}"
        name, extras = canonical(match[1]), match[2] or ""
        if name != canonical(PROJECT["name"]):
            names.add(name)
            continue
        for extra in (e.strip() for e in extras.split(",") if e.strip()):
            if extra not in seen:
                optional = PROJECT["optional-dependencies"][extra]
                names |= requirement_names(optional, seen | {extra})
    return names


CORE = requirement_names(PROJECT["dependencies"])
EXTRAS = {
    extra: requirement_names(requirements)
    for extra, requirements in PROJECT["optional-dependencies"].items()
}


@dataclass(frozen=True)
class Import:
    module: str  # the top-level name
    where: str  # file:line
    optional: bool  # inside try/except ImportError


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = {"ImportError", "ModuleNotFoundError"}
    kinds = handler.type
    if kinds is None:
        return True
    elements = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
    return any(isinstance(e, ast.Name) and e.id in names for e in elements)


def imports_of(source: str, filename: str) -> list[Import]:
    """The absolute imports of a module's source, by top-level name."""
    found: list[Import] = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                found.append(Import(top, f"{filename}:{node.lineno}", optional))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            found.append(Import(top, f"{filename}:{node.lineno}", optional))
        if isinstance(node, ast.Try):
            guarded = optional or any(_catches_import_error(h) for h in node.handlers)
            for child in node.body:
                visit(child, guarded)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, optional)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(ast.parse(source, filename), False)
    return found


def third_party(imports: list[Import]) -> list[Import]:
    return [
        i
        for i in imports
        if i.module not in sys.stdlib_module_names
        and i.module not in FIRST_PARTY
        and i.module != "__future__"
    ]


def unprovided(imports: list[Import], allowed: set[str]) -> list[str]:
    """What is imported but not provided by ``allowed`` (optional imports: by
    ``allowed`` or any extra but ``dev``)."""
    distributions = importlib.metadata.packages_distributions()
    any_extra = set().union(*(v for k, v in EXTRAS.items() if k != "dev"))
    problems = []
    for i in third_party(imports):
        providers = {canonical(d) for d in distributions.get(i.module, [])}
        if not providers:
            problems.append(f"{i.where}: {i.module} (no installed distribution)")
            continue
        permitted = allowed | any_extra if i.optional else allowed
        if not providers & permitted:
            problems.append(
                f"{i.where}: {i.module} (from {', '.join(sorted(providers))})"
            )
    return problems


def imports_under(packages: tuple[str, ...]) -> list[Import]:
    found = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            found += imports_of(path.read_text(encoding="utf-8"), name)
    return found


def test_the_library_needs_only_its_core_dependencies():
    imports = imports_under(LIBRARY_PACKAGES)
    assert {"tensorflow", "keras", "numpy"} <= {i.module for i in imports}
    assert unprovided(imports, CORE) == []


def test_the_service_needs_only_the_core_and_the_service_extra():
    imports = imports_under(SERVICE_PACKAGES)
    assert {"fastapi", "sqlalchemy"} <= {i.module for i in imports}
    assert unprovided(imports, CORE | EXTRAS["service"]) == []


def test_the_web_stack_is_not_a_core_dependency():
    assert not {"fastapi", "uvicorn", "sqlalchemy", "prometheus-client"} & CORE
    assert {"fastapi", "uvicorn", "sqlalchemy"} <= EXTRAS["service"]
    # make install / make test / make serve install .[dev]
    assert {"fastapi", "psycopg", "boto3", "pytest"} <= EXTRAS["dev"]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import fastapi\n", "fastapi"),
        ("from pydantic import BaseModel\n", "pydantic"),
        ("def f():\n    import sqlalchemy.orm\n", "sqlalchemy"),
        ("try:\n    import boto3\nexcept ImportError:\n    pass\n", None),
        ("try:\n    import boto3\nexcept ValueError:\n    pass\n", "boto3"),
        ("import numpy, os, json\nfrom bnncore import layers\n", None),
        ("from . import sibling\nimport bnncore_runtime.kernels\n", None),
    ],
    ids=["web-stack", "from-import", "in-function", "guarded-extra",
         "guarded-by-other-error", "core-stdlib-first-party", "relative"],
)  # fmt: skip
def test_the_check_flags_a_library_import_the_core_does_not_provide(source, problem):
    problems = unprovided(imports_of(source, "bnncore/x.py"), CORE)
    assert [p.split(": ")[1].split(" ")[0] for p in problems] == (
        [problem] if problem else []
    )


# ----------------------------------------------------------------------------
# Without the compiled core
# ----------------------------------------------------------------------------

WITHOUT_CORE = r"""
import importlib.abc, json, sys, tempfile

HIDDEN = set(json.loads(sys.argv[1]))

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "bnncore_runtime._kernels" or name.split(".")[0] in HIDDEN:
            raise ImportError(f"{name} hidden by the test")
        return None

sys.meta_path.insert(0, Hide())

import io, contextlib
import numpy as np
import bnncore as lq
import bnncore_runtime
from bnncore_runtime import kernels

out = {"available": kernels.core_available()}
x = np.array([[-1.5, -0.0, 0.0, 0.25, 2.0, -3.0]], dtype="float32")
out["sign"] = np.asarray(lq.quantizers.SteSign()(x)).tolist()

import keras
model = keras.Sequential([
    keras.Input((6,)),
    lq.layers.QuantDense(3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                         kernel_constraint="weight_clip", use_bias=False),
])
w = np.random.default_rng(0).uniform(-1, 1, (6, 3)).astype("float32")
model.layers[0].set_weights([w])
out["dense"] = np.asarray(model(x)).tolist()
out["kernel"] = w.tolist()
text = io.StringIO()
with contextlib.redirect_stdout(text):
    lq.models.summary(model)
out["summary"] = text.getvalue()
out["exported"] = lq.export.save(model, tempfile.mkdtemp()).weights_bytes

for what, call in [("compile", lambda: lq.engine.compile(model)),
                   ("load", lambda: bnncore_runtime.load("nowhere"))]:
    try:
        call()
        out[what] = None
    except ImportError as error:
        out[what] = [type(error).__name__, str(error)]
out["hidden_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN)
print(json.dumps(out))
"""


def service_only_modules() -> list[str]:
    """Top-level modules whose distributions are all in the service extra
    and none in the core's (fastapi, pydantic, sqlalchemy, ...)."""
    only = EXTRAS["service"] - CORE
    return sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if dists and {canonical(d) for d in dists} <= only
    )


def test_the_library_works_without_the_core_and_the_web_stack():
    hidden = service_only_modules()
    assert {"fastapi", "pydantic", "sqlalchemy", "uvicorn"} <= set(hidden)
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_CORE, json.dumps(hidden)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["available"] is False  # the finder did hide the core
    assert out["hidden_loaded"] == []
    x = [[-1.5, -0.0, 0.0, 0.25, 2.0, -3.0]]
    sign = [[-1.0 if v < 0 else 1.0 for v in row] for row in x]  # sign(0) = +1
    assert out["sign"] == sign
    kernel = [[-1.0 if v < 0 else 1.0 for v in row] for row in out["kernel"]]
    expected = [[sum(sign[0][k] * kernel[k][j] for k in range(6)) for j in range(3)]]
    assert out["dense"] == expected
    assert "quant_dense" in out["summary"] and "Total" in out["summary"]
    assert out["exported"] > 0
    for what in ("compile", "load"):
        name, message = out[what]
        assert name == "CoreUnavailableError"
        assert "bnncore_runtime._kernels" in message
        assert "_kernels hidden by the test" in message  # what failed
        assert "C compiler" in message and "Python headers" in message
        assert "pip install -e ." in message


# ----------------------------------------------------------------------------
# setup.py: the core is optional outside strict builds
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "builds"),
    [({}, True), ({"CI": "true"}, False), ({"BNN_STRICT_BUILD": "1"}, False),
     ({"BNN_REQUIRE_CORE": "1"}, False)],
    ids=["default", "ci", "strict", "require-core"],
)  # fmt: skip
def test_a_failed_compile_fails_the_build_only_where_the_core_is_required(
    tmp_path, env, builds
):
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "BNN_STRICT_BUILD", "BNN_REQUIRE_CORE")
    }
    environment.update(env, CC="false")  # a compiler that always fails
    lib = tmp_path / "lib"
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(lib),
         "--build-temp", str(tmp_path / "temp")],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert list(lib.rglob("_kernels*")) == []
    if builds:
        assert result.returncode == 0, output
        assert "compiled core (bnncore_runtime._kernels) was not built" in output
        assert "Python headers" in output
    else:
        assert result.returncode != 0, output
        assert "was not built" not in output
