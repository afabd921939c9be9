"""docker/slim_wheels.py: the wheels of the TensorFlow-free images lose their test
suites, stubs, C sources and unused botocore models, and still install.

Oracles: a wheel written here member by member, pip installing the result,
and the sha256 of every file left against its ``RECORD`` row.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from bench import image_size

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "slim_wheels.py"

KEPT = {
    "demo/__init__.py": b"VALUE = 1\n",
    "demo/core.py": b"from demo import VALUE\n",
    "demo/testing/helpers.py": b"# a 'testing' package is code: kept\n",
    "demo/data/table.json": b"{}",
    "botocore/data/endpoints.json": b"{}",
    "botocore/data/s3/2006-03-01/service-2.json.gz": b"s3",
    "botocore/data/sts/2011-06-15/service-2.json.gz": b"sts",
    "botocore/data/sso-oidc/2019-06-10/service-2.json.gz": b"sso-oidc",
    "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    "demo-1.0.dist-info/WHEEL": (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    ),
}
DROPPED = {
    "demo/tests/__init__.py": b"",
    "demo/tests/test_core.py": b"def test(): pass\n",
    "demo/sub/tests/data.bin": b"\0" * 100,
    "demo/core.pyi": b"VALUE: int\n",
    "demo/py.typed": b"",
    "demo/include/demo.h": b"int x;\n",
    "demo/_speedups.c": b"int y;\n",
    "demo/_speedups.pyx": b"cdef int z\n",
    "demo/lib/libdemo.a": b"!<arch>\n",
    "botocore/data/ec2/2016-11-15/service-2.json.gz": b"ec2",
}


def _record_row(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return [name, f"sha256={digest.decode()}", str(len(data))]


def _wheel(path: Path) -> None:
    files = {**KEPT, **DROPPED}
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        writer.writerow(_record_row(name, data))
    writer.writerow(["demo-1.0.dist-info/RECORD", "", ""])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("demo-1.0.dist-info/RECORD", record.getvalue())


def test_a_slimmed_wheel_keeps_the_code_and_installs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "demo-1.0-py3-none-any.whl"
    _wheel(wheel)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(wheels)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{len(DROPPED)} files" in result.stdout
    archive = zipfile.ZipFile(wheel)
    record = "demo-1.0.dist-info/RECORD"
    assert set(archive.namelist()) == {*KEPT, record}
    rows = list(csv.reader(io.StringIO(archive.read(record).decode())))
    assert rows == [_record_row(n, d) for n, d in KEPT.items()] + [[record, "", ""]]

    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    for name, data in KEPT.items():
        if ".dist-info/" not in name:
            assert (site / name).read_bytes() == data
    for name in DROPPED:
        assert not (site / name).exists()
    check = subprocess.run(
        [sys.executable, "-c", "import demo.core; print(demo.core.VALUE)"],
        cwd=site, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.stdout.strip() == "1"


def test_a_wheel_with_nothing_to_drop_is_left_as_it_was(tmp_path: Path) -> None:
    wheel = tmp_path / "plain-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("plain/__init__.py", b"")
    before = wheel.read_bytes()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout == ""
    assert wheel.read_bytes() == before


def test_the_build_stage_slims_both_wheel_directories_before_the_final_stages():
    text = (ROOT / "docker" / "Dockerfile.runtime").read_text()
    build, *finals = text.split("\nFROM ")[1:]
    assert " AS build" in build.split("\n")[0]
    assert (
        "RUN --mount=type=bind,source=docker/slim_wheels.py,"
        "target=/tmp/slim_wheels.py \\\n    python /tmp/slim_wheels.py /wheels "
        "/serve-wheels" in build
    )
    # After both directories are made, and nothing adds wheels after it.
    slim_at = build.index("slim_wheels.py /wheels")
    assert build.index("--wheel-dir /serve-wheels") < slim_at
    assert "pip wheel" not in build[slim_at:]
    assert all("slim_wheels" not in stage for stage in finals)


def test_the_estimate_sums_apparent_sizes_and_judges_the_target(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"\0" * 1000)
    (tmp_path / "y.bin").write_bytes(b"\0" * 24)
    (tmp_path / "link").symlink_to(tmp_path / "y.bin")
    assert image_size.apparent_bytes(tmp_path) == 1024
    base = image_size.BASE_IMAGE_BYTES
    small = image_size.Image("runtime, slimmed wheels", 20 * 10**6, 60 * 10**6, 0, [])
    big = image_size.Image(
        "inference, slimmed wheels", 40 * 10**6, 100 * 10**6, 10**6, [("numpy", 5)]
    )
    assert small.total == base + 80 * 10**6
    assert big.without_wheel_layer == base + 101 * 10**6
    text = image_size.render([small, big])
    assert f"OK: runtime, slimmed wheels: {(base + 80 * 10**6) // 10**6} MB" in text
    assert (
        f"MISS: inference, slimmed wheels: {(base + 141 * 10**6) // 10**6} MB" in text
    )


S3_CHILD = """
import json, sys
import botocore
from bnncore_service.blobs import S3Blobs

blobs = S3Blobs(sys.argv[1])
blobs.open()
blobs.put_bytes("definitions/ab/x.json", b"{}")
found = {
    "botocore": botocore.__file__,
    "read": blobs.read("definitions/ab/x.json", 10).decode(),
    "listed": [info.key for info in blobs.list("definitions")],
}
blobs.delete("definitions/ab/x.json")
found["after"] = [info.key for info in blobs.list("definitions")]
blobs.close()
print(json.dumps(found))
"""


def test_the_s3_store_runs_on_the_slimmed_botocore(s3_server, tmp_path: Path) -> None:
    """botocore with only the service models slim_wheels keeps (the files of
    the installed botocore that its rule keeps, copied) reads and writes a
    bucket: the models it dropped are not needed."""
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location("slim_wheels", SCRIPT)
    assert spec is not None and spec.loader is not None
    slim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(slim)
    import botocore

    installed = Path(botocore.__file__).parent
    site = tmp_path / "site"
    kept = dropped = 0
    for path in installed.rglob("*"):
        name = path.relative_to(installed.parent).as_posix()
        if not path.is_file() or "__pycache__" in name:
            continue
        if slim.dropped(name):
            dropped += 1
            continue
        kept += 1
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(path.read_bytes())
    assert dropped > 1000 and kept < dropped  # the rule did drop models
    models = {p.name for p in (site / "botocore" / "data").iterdir() if p.is_dir()}
    assert models == set(slim.BOTOCORE_SERVICES)
    env = {**os.environ, **s3_server.env,
           "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", S3_CHILD, s3_server.new_bucket()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["botocore"].startswith(str(site))  # the slimmed copy ran
    assert found["read"] == "{}"
    assert found["listed"] == ["definitions/ab/x.json"]
    assert found["after"] == []


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("slim_wheels_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readelf_debug(path: Path) -> bool:
    """binutils' own reading: whether ``path`` has a ``.debug_*`` section."""
    out = subprocess.run(
        ["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return any(
        word.startswith(".debug_") for line in out.splitlines() for word in line.split()
    )


def _dynamic_symbols(path: Path) -> list[str]:
    return subprocess.run(
        ["nm", "-D", "--defined-only", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip


LIBRARY_C = "int demo_add(int a, int b) { return 3 * a + b; }\n"


def test_shared_libraries_lose_only_their_debugging_information(tmp_path: Path):
    """A library built with ``-g`` comes back smaller, without ``.debug_*``
    sections (readelf), with the same exported symbols (nm) and the same
    answer through ctypes; one built without ``-g`` comes back byte for
    byte; the installed files match the rewritten ``RECORD``."""
    import ctypes

    source = tmp_path / "demo.c"
    source.write_text(LIBRARY_C)
    built = {}
    for name, flags in (("debug", ["-g", "-O2"]), ("plain", ["-g0", "-O2"])):
        out = tmp_path / f"lib{name}.so"
        subprocess.run(
            ["gcc", "-shared", "-fPIC", *flags, "-o", str(out), str(source)],
            check=True,
        )
        built[name] = out
    assert _readelf_debug(built["debug"]) and not _readelf_debug(built["plain"])
    files = {
        "demo2/__init__.py": b"",
        "demo2/_debug.cpython-311-x86_64-linux-gnu.so": built["debug"].read_bytes(),
        "demo2.libs/libplain-1a2b.so.1.0": built["plain"].read_bytes(),
        "demo2-1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: demo2\nVersion: 1.0\n"
        ),
        "demo2-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    writer.writerows(_record_row(n, d) for n, d in files.items())
    writer.writerow(["demo2-1.0.dist-info/RECORD", "", ""])
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "demo2-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("demo2-1.0.dist-info/RECORD", record.getvalue())

    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(wheels)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 files dropped or stripped" in result.stdout
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    stripped = site / "demo2/_debug.cpython-311-x86_64-linux-gnu.so"
    plain = site / "demo2.libs/libplain-1a2b.so.1.0"
    assert stripped.stat().st_size < built["debug"].stat().st_size
    assert not _readelf_debug(stripped)
    assert _dynamic_symbols(stripped) == _dynamic_symbols(built["debug"])
    assert plain.read_bytes() == built["plain"].read_bytes()
    assert ctypes.CDLL(str(stripped)).demo_add(5, 4) == 19
    rows = csv.reader((site / "demo2-1.0.dist-info/RECORD").read_text().splitlines())
    for name, digest, size in rows:
        if digest:  # pip's own rows (bytecode it compiled) have none
            data = (site / name).read_bytes()
            assert [name, digest, size] == _record_row(name, data)


def test_the_debug_section_check_agrees_with_readelf(tmp_path: Path) -> None:
    """On every shared library of the installed NumPy, uvloop and httptools
    (some built with debugging information, some without) and on non-ELF
    bytes."""
    import importlib.util

    slim = _load_script()
    libraries = []
    for package in ("numpy", "uvloop", "httptools", "bnncore_runtime"):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).parent
        libraries += [
            p for p in root.parent.glob(f"{package}*/**/*.so*") if p.is_file()
        ]
    answers = {p: _readelf_debug(p) for p in libraries}
    assert any(answers.values()) and not all(answers.values()), answers
    for path, expected in answers.items():
        assert slim.debug_sections(path.read_bytes()) is expected, path
    assert slim.debug_sections(b"not an ELF file" * 10) is False
    assert slim.debug_sections(b"\x7fELF\x02\x01" + b"\0" * 10) is False
