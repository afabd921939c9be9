"""Only public Keras/TensorFlow APIs: no ``keras.src`` nor ``tensorflow.python``.

Every ``.py`` file under ``bnncore/`` and ``bnncore_service/`` is parsed; the checker
flags imports of the private packages, attribute access that reaches them
(``tf.python.x``, ``keras.src.x``, ``from keras import src``) and the dynamic
ways of doing the same (``getattr(keras, "src")``, ``importlib.import_module(
"keras.src...")``, ``__import__``, ``sys.modules[...]``). Plain data strings
(e.g. the ``"module"`` field of a Keras config) are not imports and pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bnncore", "bnncore_runtime", "bnncore_service", "service")
PRIVATE = ("keras.src", "tensorflow.python")
TOP_LEVEL = {"keras", "tensorflow"}


def _is_private(dotted: str) -> bool:
    return any(dotted == p or dotted.startswith(p + ".") for p in PRIVATE)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def private_uses(source: str) -> list[str]:
    """Descriptions ("line N: ...") of every private Keras/TF use in ``source``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> module it stands for
    found: list[str] = []

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(f"line {node.lineno}: import {alias.name}")
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _is_private(node.module):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _is_private(full):
                    found.append(
                        f"line {node.lineno}: from {node.module} import {alias.name}"
                    )
                aliases[alias.asname or alias.name] = full

    def resolve(dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        base = aliases.get(head, head if head in TOP_LEVEL else None)
        if base is None:
            return ""
        return f"{base}.{rest}" if rest else base

    def string_arg(call: ast.Call, index: int) -> str | None:
        if len(call.args) > index and isinstance(call.args[index], ast.Constant):
            value = call.args[index].value
            return value if isinstance(value, str) else None
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted and _is_private(resolve(dotted)):
                found.append(f"line {node.lineno}: {dotted}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func) or ""
            if name == "getattr":
                target = _dotted(node.args[0]) if node.args else None
                attribute = string_arg(node, 1)
                if (
                    target
                    and attribute
                    and _is_private(f"{resolve(target)}.{attribute}")
                ):
                    found.append(
                        f"line {node.lineno}: getattr({target}, {attribute!r})"
                    )
            elif name in ("__import__", "import_module") or name.endswith(
                ".import_module"
            ):
                module = string_arg(node, 0)
                if module and _is_private(module):
                    found.append(f"line {node.lineno}: {name}({module!r})")
        elif isinstance(node, ast.Subscript) and _dotted(node.value) == "sys.modules":
            key = node.slice
            if (
                isinstance(key, ast.Constant)
                and isinstance(key.value, str)
                and _is_private(key.value)
            ):
                found.append(f"line {node.lineno}: sys.modules[{key.value!r}]")
    return found


def _project_files() -> list[Path]:
    files = sorted(f for p in PACKAGES for f in (ROOT / p).rglob("*.py"))
    return [f for f in files if ".venv" not in f.parts]


def test_the_scan_sees_the_project():
    names = {f.relative_to(ROOT).as_posix() for f in _project_files()}
    assert "bnncore/quantizers.py" in names
    assert "bnncore/layers/base.py" in names
    assert any(n.startswith("bnncore_service/") for n in names)


@pytest.mark.parametrize(
    "path", _project_files(), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_file_uses_only_public_keras_and_tensorflow(path):
    assert private_uses(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "import keras.src",
        "import keras.src.layers as kl",
        "import tensorflow.python.ops.array_ops",
        "from keras.src.layers import Dense",
        "from tensorflow.python.framework import ops",
        "from keras import src",
        "from tensorflow import python as tp",
        "import keras\nkeras.src.layers.Dense",
        "import tensorflow as tf\ntf.python.ops.math_ops.add",
        "import keras as K\nx = K.src",
        "import tensorflow as tf\ngetattr(tf, 'python')",
        "import keras\ngetattr(keras, 'src').backend",
        "import importlib\nimportlib.import_module('keras.src.backend')",
        "from importlib import import_module\nimport_module('tensorflow.python')",
        "__import__('keras.src.ops')",
        "import sys\nsys.modules['tensorflow.python.eager']",
    ],
)
def test_checker_flags_private_uses(source):
    assert private_uses(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import keras\nfrom keras import ops, layers\nkeras.layers.Dense(3)",
        "import tensorflow as tf\ntf.GradientTape()\ntf.nn.relu",
        "from keras.saving import register_keras_serializable",
        "MODULES = {'keras', 'keras.src.models.functional'}  # config data",
        "import keras\ngetattr(keras, 'layers')",
        "src = 1\nsrc.python = 2",
        "class A:\n    src = None\nA.src",
    ],
)
def test_checker_accepts_public_uses(source):
    assert private_uses(source) == []
