"""What the browser tests share: ``scripts/screenshots.py`` (the browser
set-up the README's screenshots use), loaded once, and the check that the
browser is there (outside CI a missing browser skips the calling test module;
in CI, where ``.ci/run`` installs it, it fails loudly)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load_screenshots() -> Any:
    name = "bnn_screenshots"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "scripts" / "screenshots.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


shots = _load_screenshots()


def require_browser() -> None:
    """Skips the calling module (fails it in CI) without Selenium, Chromium
    or chromedriver; call it at module level before importing Selenium."""
    pytest.importorskip("selenium", reason="selenium (the dev extra) is not installed")
    if shots.browser_paths() is None:
        message = (
            f"the browser tests need {shots.CHROMIUM!r} and {shots.CHROMEDRIVER!r} "
            "(Debian: chromium, chromium-driver)"
        )
        if os.environ.get("CI"):
            raise RuntimeError(message)  # CI installs them: fail loudly
        pytest.skip(message, allow_module_level=True)
