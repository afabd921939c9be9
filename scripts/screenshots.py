"""Screenshots of the service's home page and of a model's HTML report, for
the README, taken in headless Chromium; and the browser set-up that the browser
tests (``tests/service/browser/``) share.

Run from the repository root (needs Debian's ``chromium`` and
``chromium-driver``, and ``selenium`` from the ``dev`` extra)::

    python scripts/screenshots.py              # writes docs/img/screenshots/*.png
    python scripts/screenshots.py --out DIR

It starts the service on loopback with a temporary data directory, registers
a few models, and saves ``home.png`` and ``report.png``. Nothing is
downloaded: Selenium is pointed at the system's ``chromedriver`` (so Selenium
Manager never runs) and the browser is told to resolve no name but loopback
and to send anything not for loopback to a closed local port.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "screenshots"

CHROMIUM = os.environ.get("BNN_CHROMIUM", "chromium")
CHROMEDRIVER = os.environ.get("BNN_CHROMEDRIVER", "chromedriver")

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})

CHROME_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1280,860",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # Nothing of the browser's own: no updates, sync, metrics, safe browsing.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-pings",
    # Belt and braces: no name resolves but loopback, and a request not for
    # loopback goes to a closed local port (loopback bypasses the proxy).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)


def browser_paths() -> tuple[str, str] | None:
    """The system's Chromium and chromedriver, or ``None`` if one is missing."""
    chromium = shutil.which(CHROMIUM)
    driver = shutil.which(CHROMEDRIVER)
    return (chromium, driver) if chromium and driver else None


def chrome() -> Any:
    """A headless Chromium driven by Selenium through the system chromedriver,
    recording its network events (``goog:loggingPrefs`` performance log).

    Raises:
        RuntimeError: Chromium or chromedriver is not installed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError(
            f"headless browser tests need {CHROMIUM!r} and {CHROMEDRIVER!r} on "
            "PATH (Debian: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in CHROME_ARGUMENTS:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # With the driver's path given, Selenium skips Selenium Manager (which
    # would look for, and may download, a driver and a browser).
    return webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))


def requested_urls(driver: Any) -> list[tuple[str, str | None]]:
    """Requests the pages made since the last call (the performance log's
    ``Network.requestWillBeSent``, redirects included, and
    ``Network.webSocketCreated`` events): ``(url, refused)``, where
    ``refused`` is why the browser did not send it (``"csp"``: the page's
    Content-Security-Policy) or ``None``."""
    requests: list[tuple[str, str]] = []
    refused: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message["method"], message["params"]
        if method == "Network.requestWillBeSent":
            requests.append((params["requestId"], params["request"]["url"]))
        elif method == "Network.webSocketCreated":
            requests.append((params["requestId"], params["url"]))
        elif method == "Network.loadingFailed" and params.get("blockedReason"):
            refused[params["requestId"]] = params["blockedReason"]
    return [(url, refused.get(request)) for request, url in requests]


def sent_outside(requests: list[tuple[str, str | None]]) -> list[str]:
    """The URLs of :func:`requested_urls` that would leave the machine: not
    local, and not refused by the browser before sending (a page's CSP)."""
    return [url for url, refused in requests if not refused and not is_local(url)]


def is_local(url: str) -> bool:
    """Whether ``url`` stays on this machine: loopback HTTP, ``data:``,
    ``about:``, or a ``blob:`` of a loopback page."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "about"):
        return True
    if parts.scheme == "blob":
        return is_local(url[len("blob:") :])
    return parts.scheme in ("http", "https", "ws") and parts.hostname in LOCAL_HOSTS


def screenshot(driver: Any, path: Path, full_page: bool = False) -> Path:
    """Saves a PNG of the page: the viewport, cut below the end of the
    content on a short page, or with ``full_page`` the whole page."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    width = metrics["cssLayoutViewport"]["clientWidth"]
    height = metrics["cssContentSize"]["height"]
    if not full_page:
        content = driver.execute_script(
            "return Math.ceil(document.body.getBoundingClientRect().bottom)"
        )
        height = min(metrics["cssLayoutViewport"]["clientHeight"], content + 16)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": full_page,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


# ----------------------------------------------------------------------------
# Sample models
# ----------------------------------------------------------------------------


def sample_definitions() -> dict[str, dict[str, Any]]:
    """Small models to register: a binarized MNIST network, a wider one with
    a float first layer, and a ternary one."""

    def conv(filters: int, **extra: Any) -> dict[str, Any]:
        return {
            "type": "QuantConv2D",
            "filters": filters,
            "kernel_size": 3,
            "input_quantizer": "ste_sign",
            "kernel_quantizer": "ste_sign",
            "kernel_constraint": "weight_clip",
            "use_bias": False,
            **extra,
        }

    bn = {"type": "BatchNormalization", "scale": False}
    pool = {"type": "MaxPooling2D", "pool_size": 2}
    return {
        "mnist-bnn": {
            "name": "mnist_bnn",
            "input_shape": [28, 28, 1],
            "layers": [
                {**conv(32), "input_quantizer": None},
                pool,
                bn,
                conv(64),
                pool,
                bn,
                {"type": "Flatten"},
                {
                    "type": "QuantDense",
                    "units": 64,
                    "input_quantizer": "ste_sign",
                    "kernel_quantizer": "ste_sign",
                    "kernel_constraint": "weight_clip",
                    "use_bias": False,
                },
                bn,
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ],
        },
        "cifar-bnn": {
            "name": "cifar_bnn",
            "input_shape": [32, 32, 3],
            "layers": [
                {"type": "Conv2D", "filters": 32, "kernel_size": 3},
                bn,
                conv(64, padding="same"),
                pool,
                bn,
                conv(128, padding="same"),
                pool,
                bn,
                {"type": "GlobalAveragePooling2D"},
                {"type": "Dense", "units": 10},
            ],
        },
        "tern-mlp": {
            "name": "tern_mlp",
            "input_shape": [64],
            "layers": [
                {
                    "type": "QuantDense",
                    "units": 256,
                    "input_quantizer": "ste_tern",
                    "kernel_quantizer": "ste_tern",
                },
                {
                    "type": "QuantDense",
                    "units": 32,
                    "input_quantizer": "ste_sign",
                    "kernel_quantizer": "ste_sign",
                    "kernel_constraint": "weight_clip",
                },
            ],
        },
    }


def register(base: str, definitions: dict[str, dict[str, Any]]) -> None:
    """Registers each definition under its name (``POST /v2/models``)."""
    import httpx

    for name, definition in definitions.items():
        response = httpx.post(
            f"{base}/v2/models",
            json={"name": name, "definition": definition},
            timeout=120,
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"registering {name}: {response.text}")


@contextmanager
def running_service(data_dir: Path) -> Iterator[str]:
    """``python -m bnncore_service`` on a free loopback port; yields its base URL."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    env["BNN_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "bnncore_service", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError("the service exited during start-up")
            try:
                if httpx.get(f"{base}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the service was not ready in 120 s")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data, running_service(Path(data)) as base:
        register(base, sample_definitions())
        driver = chrome()
        try:
            driver.get(f"{base}/")
            home = screenshot(driver, args.out / "home.png")
            driver.get(f"{base}/v2/models/cifar-bnn/summary?format=html")
            report = screenshot(driver, args.out / "report.png")
            outside = sent_outside(requested_urls(driver))
        finally:
            driver.quit()
    if outside:
        print(f"requests left the machine: {outside}", file=sys.stderr)
        return 1
    for path in (home, report):
        print(
            f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
            f"{path.stat().st_size:,} bytes"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
