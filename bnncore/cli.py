"""The ``bnncore`` command line (also ``python -m bnncore``).

Subcommands::

    bnncore summary SOURCE [--format F] [-o FILE] [--fail-over-bytes N]
    bnncore compare A B [--format text|json|html] [-o FILE]
    bnncore export MODEL.keras DIR
    bnncore zoo
    bnncore serve [--host H] [--port P]
    bnncore db upgrade
    bnncore bench [NAME ...]

``SOURCE`` is a ``.keras`` file (loaded with ``safe_mode=True``), a service
definition JSON file (built by the service's validated builder, never by Keras
deserialization), or ``zoo:NAME`` (``zoo:QuickNet``).

Exit codes follow Unix conventions: 0 on success, 1 when ``summary
--fail-over-bytes`` finds the model too large, 2 for bad input (a one-line
``bnncore: error: ...`` on stderr; ``--debug`` shows the traceback instead).

TensorFlow's native start-up lines (``I0000 ... cpu_feature_guard.cc:...]``,
absl's "All log messages before absl::InitializeLog()", the CUDA probe's
"failed call to cuInit" on a machine without a GPU) are not the command's
output: the commands that use TensorFlow set ``TF_CPP_MIN_LOG_LEVEL=2``
unless it is set, then import TensorFlow and initialise its devices with
stderr filtered (:func:`start_tensorflow`), and only then the library
(:func:`load_library`). ``--debug``, or ``TF_CPP_MIN_LOG_LEVEL`` set by the
user, leaves TensorFlow's logging alone. This works from the real entry points
because ``bnncore/__init__.py`` imports nothing when the process is the
command (the console script or ``python -m bnncore``); ``--help`` and usage
errors import no TensorFlow at all.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

__all__ = ["UsageError", "load_library", "load_source", "main", "start_tensorflow"]

PROG = "bnncore"
FORMATS = ("text", "json", "csv", "markdown", "html")


class UsageError(Exception):
    """Bad input from the command line: exit code 2, one line on stderr."""


# ----------------------------------------------------------------------------
# TensorFlow's native start-up logs
# ----------------------------------------------------------------------------

NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.+/-]+:\d+\] "  # absl/glog
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .*rebuild TensorFlow)"
)
"""A line that TensorFlow's C++ runtime writes to stderr: absl's and glog's
format (severity, date, time, thread, ``file:line]``), absl's warning before
its initialisation, and the second line of the CPU-feature notice."""


@contextmanager
def native_logs_filtered() -> Iterator[None]:
    """Captures what is written to file descriptor 2 (C++ code included)
    inside the block, then writes back every line that is not
    :data:`NATIVE_LOG_LINE`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture:
                if not NATIVE_LOG_LINE.match(line):
                    os.write(2, line)


def start_tensorflow(debug: bool = False) -> None:
    """Imports TensorFlow and initialises its devices without its native
    start-up lines on stderr.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (errors only) for the rest of the run
    when the user has not set it; it takes effect only if TensorFlow is not
    imported yet. With ``debug`` or a user's ``TF_CPP_MIN_LOG_LEVEL``, nothing
    is changed or filtered.
    """
    if debug or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with native_logs_filtered():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here


def load_library() -> None:
    """Imports every module of bnncore, as ``import bnncore`` does in a
    program (it registers the layers and quantizers with Keras): in the
    command, ``import bnncore`` defers them (see ``bnncore/__init__.py``)."""
    import bnncore

    for name in bnncore.__all__:
        importlib.import_module(f"bnncore.{name}")


# ----------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------


def _load_keras_file(path: Path) -> Any:
    import keras

    load_library()  # registers bnncore's layers and quantizers

    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad archive
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(
            f"cannot load {str(path)!r} as a Keras model: "
            f"{type(error).__name__}: {reason}"
        ) from error


def _load_definition_file(path: Path) -> Any:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{str(path)!r} is not a JSON file: {error}") from error
    try:  # the service's builder: validated, allow-listed constructors only
        from pydantic import TypeAdapter, ValidationError

        from bnncore_service.builder import build, plan
        from bnncore_service.config import Settings
        from bnncore_service.estimate import DefinitionError, LimitError
        from bnncore_service.schemas.definitions import Definition
    except ImportError as error:
        raise UsageError(
            f"reading a definition file needs the service ({error}): "
            "pip install 'bnncore[service]'"
        ) from error
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, Definition))
        definition = adapter.validate_python(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(
            f"{str(path)!r} is not a valid definition: {where}: {first['msg']} "
            f"({error.error_count()} error(s))"
        ) from error
    settings = Settings()
    try:
        return build(plan(definition, settings), settings)
    except (DefinitionError, LimitError) as error:
        raise UsageError(f"{str(path)!r}: {error}") from error


def _load_zoo(name: str) -> Any:
    from bnncore import zoo

    try:
        constructor = zoo.get(name)
    except ValueError as error:
        raise UsageError(str(error)) from error
    return constructor()


def load_source(source: str) -> Any:
    """The Keras model named by a ``summary`` SOURCE.

    Args:
        source: ``zoo:NAME``, a ``.keras`` file or a ``.json`` definition file.

    Returns:
        A built ``keras.Model``.

    Raises:
        UsageError: the source does not exist or cannot make a model.
    """
    if source.startswith("zoo:"):
        return _load_zoo(source[len("zoo:") :])
    path = Path(source)
    if not path.is_file():
        raise UsageError(
            f"no such file: {source!r} (expected a .keras file, a definition "
            ".json file or zoo:NAME)"
        )
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return _load_keras_file(path)
    if suffix == ".json":
        return _load_definition_file(path)
    raise UsageError(
        f"unsupported source {source!r}: expected a .keras file, a definition "
        ".json file or zoo:NAME"
    )


# ----------------------------------------------------------------------------
# Subcommands
# ----------------------------------------------------------------------------


def _write(text: str, output: str | None) -> None:
    """Writes to stdout, or to a file through a temporary name (never half)."""
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    target = Path(output)
    if not target.parent.is_dir():
        raise UsageError(
            f"cannot write {output!r}: no directory {str(target.parent)!r}"
        )
    temporary = target.with_name(f".{target.name}.partial")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output!r}: {error.strerror}") from error


def _summary(args: argparse.Namespace) -> int:
    from bnncore import analysis, models

    model = load_source(args.source)
    report = models.profile(model)
    _write(analysis.render(report, format=args.format), args.output)
    if args.output not in (None, "-"):
        print(f"wrote the {args.format} report of {report.name} to {args.output}")
    limit = args.fail_over_bytes
    memory = report.totals.memory_bytes
    if limit is not None and memory > limit:
        print(
            f"{PROG}: model {report.name!r} is {memory:,} bytes, over "
            f"--fail-over-bytes {limit:,}",
            file=sys.stderr,
        )
        return 1
    return 0


def _compare(args: argparse.Namespace) -> int:
    from bnncore import analysis, models

    a = models.profile(load_source(args.a))
    b = models.profile(load_source(args.b))
    text = analysis.render_comparison(analysis.compare(a, b), format=args.format)
    _write(text, args.output)
    if args.output not in (None, "-"):
        print(f"wrote the {args.format} comparison to {args.output}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from bnncore import export

    path = Path(args.model)
    if path.suffix.lower() != ".keras" or not path.is_file():
        raise UsageError(f"expected an existing .keras file. Received: {args.model!r}")
    target = Path(args.directory)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{args.directory!r} exists and is not a directory")
    written = export.save(_load_keras_file(path), target)
    print(
        f"wrote {written.definition} and {written.weights} "
        f"({written.weights_bytes:,} bytes)"
    )
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from bnncore.zoo import registry

    del args
    rows = [("Model", "Parameters", "Memory (MiB)", "Reference")]
    rows += [
        (
            e.name,
            f"{e.published_params:,}",
            f"{e.published_memory_mib:.2f}",
            e.reference,
        )
        for e in registry.entries()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(
            f"{r[0].ljust(widths[0])}  {r[1].rjust(widths[1])}  "
            f"{r[2].rjust(widths[2])}  {r[3]}"
        )
    print(
        "\nLarq Zoo's published figures at 224x224x3; "
        "`bnncore summary zoo:NAME` builds and profiles one."
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from bnncore_service.server import main as serve
    except ImportError as error:
        raise UsageError(
            f"the service is not installed ({error}): pip install 'bnncore[service]'"
        ) from error
    load_library()
    serve(
        ["--host", args.host, "--port", str(args.port), "--log-level", args.log_level]
    )
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    del args
    try:
        from bnncore_service import migrations
        from bnncore_service.config import SettingsError, load_settings
        from bnncore_service.database import DatabaseURLError, shown
    except ImportError as error:
        raise UsageError(
            f"the service is not installed ({error}): pip install 'bnncore[service]'"
        ) from error
    try:
        settings = load_settings()
    except SettingsError as error:
        raise UsageError(str(error)) from error
    url = settings.resolved_database_url()
    if not settings.database_url:  # the default SQLite file: its directory
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        before, after = migrations.upgrade(url)
    except (DatabaseURLError, migrations.MigrationError) as error:
        raise UsageError(str(error)) from error
    if before == after:
        print(f"the registry at {shown(url)} is already at revision {after}")
    else:
        print(f"migrated the registry at {shown(url)}: {before or 'empty'} -> {after}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    try:
        from bench.__main__ import main as bench
    except ImportError as error:
        raise UsageError(
            "the benchmarks live in the source checkout's bench/ folder: run "
            f"bnncore bench from the repository root ({error})"
        ) from error
    return bench(list(args.names))


# ----------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer number of bytes, received {text!r}"
        )
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a port 1-65535, received {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Binarized neural networks on Keras 3: model reports, export, "
        "the zoo and the model service.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show Python tracebacks on errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    summary = commands.add_parser(
        "summary",
        help="profile a model: memory, bit widths, MACs",
        description="Profile a model (bnncore.models.profile) and render the "
        "report. Exit code 1 when --fail-over-bytes is exceeded.",
    )
    summary.add_argument(
        "source", help="a .keras file, a service definition .json file or zoo:NAME"
    )
    summary.add_argument("--format", choices=FORMATS, default="text")
    summary.add_argument("-o", "--output", metavar="FILE", help="write to FILE")
    summary.add_argument(
        "--fail-over-bytes",
        type=_non_negative_int,
        metavar="N",
        help="exit 1 if the model's memory exceeds N bytes (a CI size gate)",
    )
    summary.set_defaults(run=_summary)

    compare = commands.add_parser(
        "compare",
        help="compare two models: total and per-layer deltas (b - a)",
        description="Compare model B with model A (bnncore.analysis.compare); "
        "each is a .keras file, a service definition .json file or zoo:NAME.",
    )
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    compare.add_argument("--format", choices=("text", "json", "html"), default="text")
    compare.add_argument("-o", "--output", metavar="FILE", help="write to FILE")
    compare.set_defaults(run=_compare)

    export = commands.add_parser(
        "export",
        help="write a .keras model's definition and 1-bit packed weights",
        description="bnncore.export.save: definition.json and weights.safetensors.",
    )
    export.add_argument("model", metavar="MODEL.keras")
    export.add_argument("directory", metavar="DIR")
    export.set_defaults(run=_export)

    zoo = commands.add_parser("zoo", help="list the zoo's models with their sizes")
    zoo.set_defaults(run=_zoo)

    serve = commands.add_parser("serve", help="run the model service")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000, help="default: 8000")
    serve.add_argument("--log-level", default="info", help="default: info")
    serve.set_defaults(run=_serve)

    db = commands.add_parser(
        "db",
        help="the service's registry database (BNN_DATABASE_URL)",
        description="Manage the registry database of the service's BNN_* "
        "settings (BNN_DATABASE_URL, or SQLite in BNN_DATA_DIR).",
    )
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="migrate the schema to this release's (what BNN_MIGRATE=auto "
        "does at start-up)",
    )
    upgrade.set_defaults(run=_db_upgrade)

    bench = commands.add_parser(
        "bench", help="run the benchmarks (python -m bench) from a checkout"
    )
    bench.add_argument("names", nargs="*", help="run benchmarks containing these")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code.

    Args:
        argv: The arguments (``sys.argv[1:]`` when ``None``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) and usage errors (2)
        return int(exit_.code or 0)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        if run in (_summary, _compare, _export, _zoo):  # they use TensorFlow
            start_tensorflow(args.debug)
            load_library()
        return run(args)
    except UsageError as error:
        if args.debug:
            raise
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # unexpected: still one line without --debug
        if args.debug:
            raise
        print(
            f"{PROG}: error: {type(error).__name__}: {error} (rerun with --debug "
            "for the traceback)",
            file=sys.stderr,
        )
        return 1
