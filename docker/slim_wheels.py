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

The wheel's ``RECORD`` loses the rows of the dropped files (the hashes of
the others are unchanged), so pip installs it as any wheel.
"""

from __future__ import annotations

import csv
import io
import sys
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


def slim(wheel: Path) -> tuple[int, int]:
    """Rewrites ``wheel`` without the dropped members.

    Returns:
        The number of members dropped and their uncompressed bytes.
    """
    with zipfile.ZipFile(wheel) as source:
        members = source.infolist()
        gone = [m for m in members if dropped(m.filename)]
        if not gone:
            return 0, 0
        names = {m.filename for m in gone}
        (record,) = [
            m.filename for m in members if m.filename.endswith(".dist-info/RECORD")
        ]
        target = wheel.with_suffix(".slim")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
            for member in members:
                if member.filename in names:
                    continue
                data = source.read(member)
                if member.filename == record:
                    rows = csv.reader(io.StringIO(data.decode()))
                    text = io.StringIO()
                    csv.writer(text, lineterminator="\n").writerows(
                        row for row in rows if row and row[0] not in names
                    )
                    data = text.getvalue().encode()
                out.writestr(member, data, compress_type=zipfile.ZIP_DEFLATED)
    target.replace(wheel)
    return len(gone), sum(m.file_size for m in gone)


def main(directories: list[str]) -> int:
    if not directories:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    for directory in directories:
        for wheel in sorted(Path(directory).glob("*.whl")):
            count, size = slim(wheel)
            if count:
                print(f"{wheel.name}: {count} files ({size / 2**20:.1f} MB) dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
