"""Rewrites the wheels of the TensorFlow-free images without what a server never
reads: ``python slim_wheels.py DIR [DIR ...]`` (every ``*.whl`` in place).

``docker/Dockerfile.runtime`` runs it in its build stage, on the wheels the
final images then install, so the files never reach an image layer (deleting
them in a later layer would not shrink the image); ``bench/image_size.py``
runs it too, to estimate the images' sizes from the same wheels. Standard
library only (the build stage has nothing else).

Dropped (:func:`dropped`):

* test suites: every file under a directory named ``tests`` (NumPy's are
  15 MB installed);
* type stubs (``*.pyi``) and ``py.typed`` markers: for type checkers only;
* C and Cython sources, headers and static libraries (``.c``, ``.h``,
  ``.pyx``, ``.pxd``, ``.pxi``, ``.a``): for building extensions against a
  package (NumPy's ``_core/include``), never imported;
* botocore's service models (``botocore/data/<service>/``) except those an S3
  store and the AWS credential chain call: ``s3``, ``sts`` (web identity and
  assumed roles, as on EKS), ``sso`` and ``sso-oidc`` (SSO profiles); the
  files directly under ``botocore/data`` (endpoints, partitions, retries)
  stay. 23 MB installed, 0.6 MB kept.

Stripped (:func:`debug_sections`): the debugging information of shared
libraries built with it (``strip --strip-debug``, binutils, which the build
stage has with gcc): uvloop's ``loop.so`` is 13.6 MB with it, 1.9 MB
without; httptools' parsers and the runtime's own core lose 80 % too. Only
``.debug_*`` sections go: the symbols stay, so tracebacks and ``perf`` still
name functions. Libraries without such sections are left byte for byte (the
ones ``auditwheel`` repaired are never rewritten).

The wheel's ``RECORD`` loses the rows of the dropped files and gets the new
hash and size of the stripped ones, so pip installs it as any wheel.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

BUILD_ONLY_SUFFIXES = (".pyi", ".c", ".h", ".pyx", ".pxd", ".pxi", ".a")
BOTOCORE_SERVICES = frozenset({"s3", "sts", "sso", "sso-oidc"})


def dropped(name: str) -> bool:
    """Whether the wheel member ``name`` (a path inside the wheel) is left out."""
    path = PurePosixPath(name)
    if path.parent.name.endswith((".dist-info", ".data")):
        return False  # metadata: never
    if "tests" in path.parts[:-1]:
        return True
    if path.name == "py.typed" or path.name.endswith(BUILD_ONLY_SUFFIXES):
        return True
    parts = path.parts
    return (
        len(parts) >= 4
        and parts[:2] == ("botocore", "data")
        and parts[2] not in BOTOCORE_SERVICES
    )


def debug_sections(data: bytes) -> bool:
    """Whether ``data`` is a 64-bit little-endian ELF file (what an x86-64
    wheel ships) with a ``.debug_*`` section."""
    if len(data) < 64 or data[:6] != b"\x7fELF\x02\x01":
        return False
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if not shoff or shstrndx >= shnum or shoff + shnum * shentsize > len(data):
        return False
    _, _, _, _, names_at, names_size = struct.unpack_from(
        "<IIQQQQ", data, shoff + shstrndx * shentsize
    )
    names = data[names_at : names_at + names_size]
    for index in range(shnum):
        (name_at,) = struct.unpack_from("<I", data, shoff + index * shentsize)
        if names[name_at:].startswith(b".debug_"):
            return True
    return False


def strip_debug(data: bytes) -> bytes:
    """``data`` (an ELF file) without its debugging information
    (``strip --strip-debug``).

    Raises:
        RuntimeError: binutils' ``strip`` is not installed.
    """
    tool = shutil.which("strip")
    if tool is None:
        raise RuntimeError(
            "a shared library has debugging information to strip, and "
            "binutils' `strip` is not installed (apt-get install binutils)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "library.so"
        path.write_bytes(data)
        subprocess.run([tool, "--strip-debug", str(path)], check=True)
        return path.read_bytes()


def _record_row(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return [name, f"sha256={digest.decode()}", str(len(data))]


def slim(wheel: Path) -> tuple[int, int]:
    """Rewrites ``wheel`` without the dropped members and with its shared
    libraries' debugging information stripped.

    Returns:
        The number of members dropped or stripped and the uncompressed bytes
        saved.
    """
    with zipfile.ZipFile(wheel) as source:
        members = source.infolist()
        gone = {m.filename for m in members if dropped(m.filename)}
        stripped: dict[str, bytes] = {}
        for member in members:
            name = member.filename
            if name not in gone and (name.endswith(".so") or ".so." in name):
                data = source.read(member)
                if debug_sections(data):
                    stripped[name] = strip_debug(data)
        if not gone and not stripped:
            return 0, 0
        (record,) = [
            m.filename for m in members if m.filename.endswith(".dist-info/RECORD")
        ]
        target = wheel.with_suffix(".slim")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
            for member in members:
                if member.filename in gone:
                    continue
                data = stripped.get(member.filename) or source.read(member)
                if member.filename == record:
                    rows = csv.reader(io.StringIO(data.decode()))
                    text = io.StringIO()
                    csv.writer(text, lineterminator="\n").writerows(
                        _record_row(row[0], stripped[row[0]])
                        if row[0] in stripped
                        else row
                        for row in rows
                        if row and row[0] not in gone
                    )
                    data = text.getvalue().encode()
                out.writestr(member, data, compress_type=zipfile.ZIP_DEFLATED)
    target.replace(wheel)
    saved = sum(m.file_size for m in members if m.filename in gone)
    saved += sum(
        m.file_size - len(stripped[m.filename])
        for m in members
        if m.filename in stripped
    )
    return len(gone) + len(stripped), saved


def main(directories: list[str]) -> int:
    if not directories:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    for directory in directories:
        for wheel in sorted(Path(directory).glob("*.whl")):
            count, size = slim(wheel)
            if count:
                print(
                    f"{wheel.name}: {count} files dropped or stripped "
                    f"({size / 2**20:.1f} MB)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
