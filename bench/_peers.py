"""Larq Compute Engine (LCE), the direct BNN peer, run beside the engine.

LCE 0.16 needs TensorFlow 2.16 and Keras 2 (``tf-keras``), which cannot share a
virtual environment with this project (TensorFlow 2.21, Keras 3). ``make
bench-peers`` creates ``.venv-peers`` with the pins of
``bench/peers-requirements.txt``; this file is then run there as a server
(``.venv-peers/bin/python bench/_peers.py serve``, started by :class:`Peer`)
that ``bench/engine.py`` drives over a pipe, one JSON line per request:

* ``load``: build the architecture with Larq layers (``larq_zoo`` models, or
  Larq's MNIST tutorial BNN), set the weights that ``bench/engine.py`` saved
  from the bnncore model (an ``.npz``, by position), convert it with
  ``larq_compute_engine.convert_keras_model`` once per batch size (a converted
  model has a fixed batch) and open each with
  ``Interpreter(flatbuffer, num_threads=T, use_indirect_bgemm=True,
  use_xnnpack=True)``, LCE's fastest configuration on x86, for T threads (the
  engine's count) and for one thread: LCE's thread pool makes a call tens of
  times slower when another process holds one of its cores, one thread does
  not, so the better of the two is LCE's best on the machine as it is;
* ``keras`` / ``lce``: the Larq Keras model's / LCE's output for an input
  (``.npy`` files): the first checks that the weights landed where they belong
  (same architecture, same weights: same outputs within float rounding), the
  second compares LCE with the engine;
* ``time``: wall time of ``n`` calls of the interpreter for the ``set_input``
  input and a thread count (float in, float out, as the engine's ``predict``;
  one invoke on the whole batch), measured in the peer so
  that the pipe's round trip is not counted. ``bench/engine.py`` asks for one
  call per round, interleaved with its own candidates.

The top level imports only the standard library and NumPy: the module is
imported by the benchmark in the project's environment and run as a script in
the peer's.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".venv-peers"
REQUIREMENTS = Path(__file__).resolve().parent / "peers-requirements.txt"
ARCHITECTURES = ("QuickNet", "BinaryAlexNet", "MNIST BNN")
INTERPRETER_OPTIONS = {"use_indirect_bgemm": True, "use_xnnpack": True}


class PeerError(RuntimeError):
    """The peer process failed (its message and the tail of its log)."""


# ---------------------------------------------------------------------------
# Weights by position (pure: used on both sides, tested without the peer)
# ---------------------------------------------------------------------------


def save_weights(path: str | os.PathLike[str], weights: Sequence[np.ndarray]) -> None:
    """Saves ``model.get_weights()`` in order (keys ``w0000``, ``w0001``, …)."""
    np.savez(path, **{f"w{i:04d}": np.asarray(w) for i, w in enumerate(weights)})


def load_weights(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """The list :func:`save_weights` saved, in its order."""
    with np.load(path) as data:
        keys = sorted(data.files, key=lambda k: int(k[1:]))
        if keys != [f"w{i:04d}" for i in range(len(keys))]:
            raise ValueError(f"{path}: not a list of weights saved by position")
        return [data[k] for k in keys]


def by_position(
    weights: Sequence[np.ndarray], shapes: Sequence[Sequence[int]]
) -> list[np.ndarray]:
    """``weights`` laid out as ``shapes`` (another model's ``get_weights()``).

    Position ``i`` goes to position ``i``. Where the shapes differ but the sizes
    agree only by unit axes (bnncore's dense kernel ``(n, m)`` and Larq Zoo's
    1×1 convolution ``(1, 1, n, m)`` on a reshaped input), the array is
    reshaped: the element order is the same. Anything else is an error that
    names the first position that does not fit.
    """
    if len(weights) != len(shapes):
        raise ValueError(
            f"{len(weights)} weight arrays for a model that has {len(shapes)}"
        )
    out = []
    for i, (w, shape) in enumerate(zip(weights, shapes, strict=True)):
        shape = tuple(int(s) for s in shape)
        if w.shape != shape:
            squeezed = tuple(s for s in w.shape if s != 1)
            if squeezed != tuple(s for s in shape if s != 1):
                raise ValueError(
                    f"weight {i}: shape {w.shape} does not fit {shape} by position"
                )
            w = w.reshape(shape)
        out.append(w)
    return out


def top1_agreement(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(samples whose arg-max class agrees, samples)."""
    a, b = np.asarray(a), np.asarray(b)
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return int(np.sum(a.argmax(axis=1) == b.argmax(axis=1))), int(a.shape[0])


# ---------------------------------------------------------------------------
# Client (the project's environment)
# ---------------------------------------------------------------------------


def peer_python(venv: Path | None = None) -> Path | None:
    """The peer environment's interpreter (default ``PEER_VENV``), or None when
    it was not set up."""
    python = (venv or PEER_VENV) / "bin" / "python"
    return python if python.exists() and os.access(python, os.X_OK) else None


class Peer:
    """The peer server in its own process; requests one at a time.

    ``send`` and ``reply`` are split so that the caller can prepare its own
    models while the peer converts (nothing is timed then).
    """

    def __init__(self, python: Path, threads: int) -> None:
        self.threads = threads
        self.thread_counts = sorted({threads, 1}, reverse=True)
        self._dir = tempfile.TemporaryDirectory(prefix="bench-peers-")
        self.dir = Path(self._dir.name)
        self._log = open(self.dir / "peer.log", "wb")  # noqa: SIM115 (closed in close)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                   CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")  # fmt: skip
        env.pop("PYTHONPATH", None)
        self._proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=self.dir,
        )
        self._count = 0
        try:
            self.versions: dict[str, str] = self.request({"cmd": "hello"})["versions"]
        except BaseException:
            self.close()
            raise

    def send(self, request: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(request) + "\n").encode())
        self._proc.stdin.flush()

    def reply(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise PeerError(
                f"the peer exited ({self._proc.wait()}):\n{self.log_tail()}"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise PeerError(f"{answer['error']}\n{self.log_tail()}")
        return answer

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.reply()

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = (self.dir / "peer.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _array_path(self, stem: str) -> Path:
        self._count += 1
        return self.dir / f"{stem}{self._count}.npy"

    def load_send(
        self,
        arch: str,
        weights: Sequence[np.ndarray],
        input_shape: Sequence[int],
        num_classes: int,
        batches: Sequence[int],
    ) -> None:
        """Starts building, loading and converting ``arch`` (see ``load_reply``)."""
        path = self.dir / "weights.npz"
        save_weights(path, weights)
        self.send({"cmd": "load", "arch": arch, "weights": str(path),
                   "input_shape": list(input_shape), "num_classes": num_classes,
                   "batches": list(batches),
                   "thread_counts": self.thread_counts})  # fmt: skip

    def load_reply(self) -> dict[str, Any]:
        """Conversion seconds and flatbuffer bytes per batch size; the
        operators of the converted model (``ops``: name -> count)."""
        return self.reply()

    def _run(self, cmd: str, x: np.ndarray) -> np.ndarray:
        src, dst = self._array_path("in"), self._array_path("out")
        np.save(src, np.ascontiguousarray(x, dtype=np.float32))
        self.request({"cmd": cmd, "input": str(src), "output": str(dst)})
        return np.load(dst)

    def keras(self, x: np.ndarray) -> np.ndarray:
        """The Larq Keras model's output (``training=False``)."""
        return self._run("keras", x)

    def lce(self, x: np.ndarray) -> np.ndarray:
        """LCE's output (the model converted for ``len(x)``, ``threads``)."""
        return self._run("lce", x)

    def set_input(self, x: np.ndarray) -> None:
        """The input that ``time`` runs on (its batch picks the model)."""
        path = self._array_path("in")
        np.save(path, np.ascontiguousarray(x, dtype=np.float32))
        self.request({"cmd": "set_input", "input": str(path)})

    def time(self, n: int = 1, threads: int | None = None) -> list[float]:
        """Wall seconds of ``n`` calls on the ``set_input`` input, on
        ``threads`` (one of ``thread_counts``; default ``threads``)."""
        answer = self.request({"cmd": "time", "n": n,
                               "threads": threads or self.threads})  # fmt: skip
        return [float(s) for s in answer["seconds"]]

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(PeerError, OSError):
                self.request({"cmd": "quit"})
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        self._dir.cleanup()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Server (the peer's environment: TensorFlow 2.16, tf-keras, Larq, LCE)
# ---------------------------------------------------------------------------


def _larq_model(arch: str, input_shape: Sequence[int], num_classes: int) -> Any:
    """The architecture in Larq layers (Keras 2)."""
    import larq as lq
    import larq_zoo
    import tensorflow as tf

    shape = tuple(input_shape)
    if arch == "QuickNet":
        return larq_zoo.sota.QuickNet(input_shape=shape, weights=None,
                                      num_classes=num_classes)  # fmt: skip
    if arch == "BinaryAlexNet":
        return larq_zoo.literature.BinaryAlexNet(input_shape=shape, weights=None,
                                                 num_classes=num_classes)  # fmt: skip
    inputs = tf.keras.Input(shape)
    if arch == "MNIST BNN":
        # Larq's MNIST tutorial model, layer for layer (bench/engine.py's
        # mnist_bnn() is its bnncore twin).
        kw = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
              "kernel_constraint": "weight_clip", "use_bias": False}  # fmt: skip
        layers = tf.keras.layers
        x = lq.layers.QuantConv2D(32, (3, 3), kernel_quantizer="ste_sign",
                                  kernel_constraint="weight_clip",
                                  use_bias=False)(inputs)  # fmt: skip
        x = layers.MaxPooling2D((2, 2))(x)
        x = layers.BatchNormalization(scale=False)(x)
        x = lq.layers.QuantConv2D(64, (3, 3), **kw)(x)
        x = layers.MaxPooling2D((2, 2))(x)
        x = layers.BatchNormalization(scale=False)(x)
        x = lq.layers.QuantConv2D(64, (3, 3), **kw)(x)
        x = layers.BatchNormalization(scale=False)(x)
        x = layers.Flatten()(x)
        x = lq.layers.QuantDense(64, **kw)(x)
        x = layers.BatchNormalization(scale=False)(x)
        x = lq.layers.QuantDense(10, **kw)(x)
        x = layers.BatchNormalization(scale=False)(x)
        x = layers.Activation("softmax")(x)
        return tf.keras.Model(inputs, x, name="mnist_bnn")
    raise ValueError(f"unknown architecture {arch!r}; known: {ARCHITECTURES}")


def _fixed_batch(model: Any, batch: int) -> Any:
    """``model`` (its layers and weights) on an input of a fixed batch size."""
    import tensorflow as tf

    inputs = tf.keras.Input(tuple(model.inputs[0].shape[1:]), batch_size=batch)
    return tf.keras.Model(inputs, model(inputs, training=False))


def _op_counts(flatbuffer: bytes) -> dict[str, int]:
    """Operators of a converted model by name (TFLite's model analyzer), to show
    that LCE runs its binary kernels (``LceBconv2d``), not float fallbacks."""
    import collections
    import io
    import re

    import tensorflow as tf

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=flatbuffer)
    subgraph = text.getvalue().split("Subgraph#1", 1)[0]  # the main subgraph
    return dict(collections.Counter(re.findall(r"Op#\d+ (\w+)\(", subgraph)))


class _Server:
    def __init__(self) -> None:
        self.model: Any = None
        self.interpreters: dict[tuple[int, int], Any] = {}  # (batch, threads)
        self.input: np.ndarray | None = None

    def hello(self, _: dict[str, Any]) -> dict[str, Any]:
        from importlib.metadata import version

        names = ("larq-compute-engine", "larq", "larq-zoo", "tensorflow", "tf-keras")
        return {"versions": {name: version(name) for name in names}}

    def load(self, req: dict[str, Any]) -> dict[str, Any]:
        import larq_compute_engine as lce
        from larq_compute_engine.tflite.python.interpreter import Interpreter

        self.model, self.interpreters, self.input = None, {}, None
        arch, shape, classes = req["arch"], req["input_shape"], req["num_classes"]
        weights = load_weights(req["weights"])
        model = _larq_model(arch, shape, classes)
        shapes = [w.shape for w in model.get_weights()]
        model.set_weights(by_position(weights, shapes))
        convert_seconds, sizes, ops = {}, {}, {}
        for batch in req["batches"]:
            start = time.perf_counter()
            flatbuffer = lce.convert_keras_model(_fixed_batch(model, batch))
            convert_seconds[batch] = time.perf_counter() - start
            sizes[batch] = len(flatbuffer)
            ops = ops or _op_counts(flatbuffer)
            for threads in req["thread_counts"]:
                self.interpreters[batch, threads] = Interpreter(
                    flatbuffer, num_threads=threads, **INTERPRETER_OPTIONS
                )
        self.model = model
        return {"weights": len(weights), "convert_seconds": convert_seconds,
                "flatbuffer_bytes": sizes, "ops": ops}  # fmt: skip

    def _interpreter(self, batch: int, threads: int | None = None) -> Any:
        if threads is None:  # the most threads loaded
            threads = max(t for b, t in self.interpreters if b == batch)
        if (batch, threads) not in self.interpreters:
            raise ValueError(f"no interpreter for batch {batch}, {threads} threads;"
                             f" loaded: {sorted(self.interpreters)}")  # fmt: skip
        # The wrapper's own predict (one invoke on the whole input): the Python
        # API's predict() feeds a batch one sample at a time.
        return self.interpreters[batch, threads].interpreter

    def keras(self, req: dict[str, Any]) -> dict[str, Any]:
        x = np.load(req["input"])
        np.save(req["output"], np.asarray(self.model(x, training=False)))
        return {}

    def lce(self, req: dict[str, Any]) -> dict[str, Any]:
        x = np.load(req["input"])
        outputs = self._interpreter(len(x)).predict([x])
        np.save(req["output"], np.asarray(outputs[0]))
        return {}

    def set_input(self, req: dict[str, Any]) -> dict[str, Any]:
        self.input = np.load(req["input"])
        return {}

    def time(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.input is None:
            raise ValueError("time before set_input")
        x = [self.input]
        interpreter = self._interpreter(len(self.input), int(req["threads"]))
        seconds = []
        for _ in range(int(req["n"])):
            start = time.perf_counter()
            interpreter.predict(x)
            seconds.append(time.perf_counter() - start)
        return {"seconds": seconds}


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Answers one JSON line per request line until ``quit`` or end of input."""
    server = _Server()
    for line in requests:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        try:
            handler = getattr(server, req["cmd"])
            answer = handler(req)
        except Exception as error:  # reported to the client, which raises
            answer = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(answer) + "\n")
        replies.flush()


def _main(argv: list[str]) -> int:
    if argv != ["serve"]:
        print(f"usage: {sys.argv[0]} serve  (started by bench/engine.py)",
              file=sys.stderr)  # fmt: skip
        return 2
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    # Run as a script, bench/ leads sys.path: its modules must not shadow any.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != here]
    # Replies go to the original stdout; anything a library prints goes to the
    # log (stderr).
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    serve(sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
