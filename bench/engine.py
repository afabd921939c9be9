"""Packed inference engine vs TensorFlow: per-layer kernels and whole models.

Measured in one run, candidates interleaved call by call (so load changes hit
all of them alike), medians reported:

* per layer, batch 1 and 32: the engine's binary kernel (packed bits in,
  packed sign bits out), the compiled one-layer model (packing its float input
  and writing float32 output included), the same layer
  in TensorFlow float (``keras.layers.Conv2D``/``Dense``) and the Keras BNN
  layer (``QuantConv2D``/``QuantDense``, ``tf.function``); bit-MACs per cycle
  per core of the kernel, with the clock measured by a dependent-add loop;
* end to end: QuickNet 224×224 (batch 1 and 8), BinaryAlexNet 224×224 and the
  Larq MNIST BNN (batch 1 and 8): engine vs the Keras BNN vs the float twin
  (same architecture, plain Keras layers) vs Larq Compute Engine 0.16, the
  direct BNN peer, on the same weights (``bench/_peers.py``: LCE runs in its own
  process from ``.venv-peers``, which ``make bench-peers`` sets up; without it
  the LCE column says n/a).

Targets (2 cores): QuickNet batch 1 ≤ 10 ms median and ≥ 4.5× faster than its
float twin; binary kernels ≥ 75 bit-MACs per cycle per core. With LCE measured:
QuickNet batch 1 ≥ 5× faster than LCE (and ≥ 8× the float twin on AVX-512
machines); the MNIST BNN at batch 1 no slower than LCE.

Run: ``python -m bench.engine`` (or ``python -m bench engine``); add
``--write-docs`` to put the table into ``docs/engine.md`` (``--write-readme``:
into ``README.md`` and ``docs/engine.md``), ``--quick`` for
fewer repeats, ``--lce on|off`` to require or skip the peer, ``--models NAME``
(and ``--no-layers``) to measure only some models while developing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import _peers

# Timing noise allowed when comparing the engine on THREADS threads and on one.
THREAD_SLACK = 0.05
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
DOCS = Path(__file__).resolve().parent.parent / "docs" / "engine.md"
README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- bench:engine:start -->", "<!-- bench:engine:end -->"
TARGET_MS, TARGET_SPEEDUP, TARGET_BITMACS = 10.0, 4.5, 75.0
TARGET_LCE_QUICKNET, TARGET_LCE_MNIST, TARGET_SPEEDUP_AVX512 = 5.0, 1.0, 8.0
TRANSFER_TOLERANCE = 1e-4  # Larq's Keras model vs ours on the same weights
SETTLE_SECONDS = 0.1  # pause before a kernel burst (other threads go idle)


# ---------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------


def clock_hz() -> tuple[float, float | None]:
    """(clock from a dependent-add loop timed in CPU time, nominal from /proc/cpuinfo).

    CPU time (not wall time) so that time slices given to other processes on a
    shared machine do not count as cycles of ours.
    """
    from bnncore.engine import _kernels

    n = 20_000_000
    best = min(_cpu_timed_once(lambda: _kernels.spin(n)) for _ in range(7))
    nominal = None
    try:
        text = Path("/proc/cpuinfo").read_text()
        values = [float(v) for v in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)]
        nominal = max(values) * 1e6 if values else None
    except OSError:
        pass
    return 8 * n / best, nominal


def _timed_once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu_timed_once(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def least_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Least wall time of ``fn`` over ``repeats`` calls (after one warm-up).

    The least time is the one least disturbed by other processes. (CPU time is
    no better here: Linux adds a running worker thread's time to the process
    total only at scheduler ticks, so it undercounts calls shorter than a few
    milliseconds.) It starts after a pause: TensorFlow's worker threads keep
    spinning for a while after its last call and would share our cores.
    """
    time.sleep(SETTLE_SECONDS)
    fn()
    return min(_timed_once(fn) for _ in range(repeats))


class SelfTimed:
    """A candidate that returns its own wall seconds: a call in another process,
    timed there (the pipe's round trip is not counted)."""

    def __init__(self, fn: Callable[[], float]) -> None:
        self.fn = fn

    def __call__(self) -> float:
        return self.fn()


def interleaved(cands: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per candidate; one call of each per round, after warm-up.

    Each round calls the candidates in another order (shuffled, seeded), so
    that none always follows the same one (a call can leave threads spinning,
    in its process, that slow down the next call).
    """
    for fn in cands.values():
        fn()
        fn()
    names = list(cands)
    shuffle = random.Random(0).shuffle
    samples: dict[str, list[float]] = {name: [] for name in cands}
    for _ in range(repeats):
        shuffle(names)
        for name in names:
            fn = cands[name]
            seconds = fn() if isinstance(fn, SelfTimed) else _timed_once(fn)
            samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def _keras_runner(model: Any, x: np.ndarray) -> Callable[[], Any]:
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False))
    tensor = tf.constant(x)
    return lambda: np.asarray(fn(tensor))


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def float_twin(model: Any) -> Any:
    """The same architecture with plain Keras layers (quantizers removed)."""
    import keras

    from bnncore.layers.base import QuantizerBase

    drop = ("input_quantizer", "kernel_quantizer", "depthwise_quantizer",
            "pointwise_quantizer", "pad_values")  # fmt: skip

    def clone(layer: Any) -> Any:
        if not isinstance(layer, QuantizerBase):
            return layer.__class__.from_config(layer.get_config())
        config = {k: v for k, v in layer.get_config().items() if k not in drop}
        for key in list(config):
            if key.endswith("_constraint"):
                config[key] = None
        parent = next(
            base for base in type(layer).__mro__[1:]
            if issubclass(base, keras.layers.Layer)
            and not issubclass(base, QuantizerBase)
        )  # fmt: skip
        return parent.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def mnist_bnn() -> Any:
    """The BNN of Larq's MNIST tutorial (28×28×1, 3 binary convs, 2 binary dense)."""
    import keras

    from bnncore.layers import QuantConv2D, QuantDense

    kw = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
          "kernel_constraint": "weight_clip", "use_bias": False}  # fmt: skip
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            QuantConv2D(32, 3, kernel_quantizer="ste_sign",
                        kernel_constraint="weight_clip", use_bias=False),
            keras.layers.MaxPooling2D(2),
            keras.layers.BatchNormalization(scale=False),
            QuantConv2D(64, 3, **kw),
            keras.layers.MaxPooling2D(2),
            keras.layers.BatchNormalization(scale=False),
            QuantConv2D(64, 3, **kw),
            keras.layers.BatchNormalization(scale=False),
            keras.layers.Flatten(),
            QuantDense(64, **kw),
            keras.layers.BatchNormalization(scale=False),
            QuantDense(10, **kw),
            keras.layers.BatchNormalization(scale=False),
            keras.layers.Activation("softmax"),
        ],
        name="mnist_bnn",
    )  # fmt: skip


def _randomize_bn(model: Any, seed: int = 0) -> None:
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = layer.get_weights()
            new = [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in weights]
            new[-1] = rng.uniform(0.5, 2.0, weights[-1].shape).astype(np.float32)
            layer.set_weights(new)


# ---------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------

LAYERS = [
    # name, input shape, layer kind, units/filters, kernel
    ("conv 56x56x64 3x3", (56, 56, 64), "conv", 64, 3),
    ("conv 28x28x128 3x3", (28, 28, 128), "conv", 128, 3),
    ("conv 14x14x256 3x3", (14, 14, 256), "conv", 256, 3),
    ("conv 7x7x512 3x3", (7, 7, 512), "conv", 512, 3),
    ("dense 4096->4096", (4096,), "dense", 4096, 1),
    ("dense 512->1000", (512,), "dense", 1000, 1),
]


def _layer_models(shape, kind, units, k):
    import keras

    from bnncore.layers import QuantConv2D, QuantDense

    binary = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
              "kernel_constraint": "weight_clip", "use_bias": False}  # fmt: skip
    inputs = keras.Input(shape)
    if kind == "conv":
        bnn = QuantConv2D(units, k, padding="same", pad_values=1.0, **binary)
        flt = keras.layers.Conv2D(units, k, padding="same", use_bias=False)
    else:
        bnn = QuantDense(units, **binary)
        flt = keras.layers.Dense(units, use_bias=False)
    bnn_model = keras.Model(inputs, bnn(inputs))
    flt_model = keras.Model(inputs, flt(inputs))
    flt_model.set_weights(bnn_model.get_weights())
    return bnn_model, flt_model


def bench_layers(repeats: int, hz: float) -> list[dict[str, Any]]:
    from bnncore import engine
    from bnncore.engine import kernels as K
    from bnncore.engine.buffers import BufferPool
    from bnncore.engine.steps import Env

    rows = []
    rng = np.random.default_rng(0)
    for name, shape, kind, units, k in LAYERS:
        bnn_model, flt_model = _layer_models(shape, kind, units, k)
        packed = engine.compile(bnn_model, threads=THREADS)
        step = packed.steps[-1]
        for batch in (1, 32):
            x = rng.normal(size=(batch, *shape)).astype(np.float32)
            env = Env()
            env.floats[packed._inputs[0]] = x
            packed.steps[0].run(env, THREADS)  # pack once: the kernel alone below
            packed_in = env.packed[(step.source, step.groups)]
            geo, _ = step._geometry(packed_in)

            pool = BufferPool()  # output arrays reused: no page faults timed

            # The kernel as between two binary layers: packed bits in, packed
            # sign bits out. (The layer column adds packing the float input and
            # writing float32 output, 32 bits per value: at batch 32 the 56x56x64
            # layer writes 25.7 MB and is bound by the machine's memory.)
            def kernel(p=packed_in, s=step, g=geo, pool=pool, threads=THREADS):
                with pool.lease("kernel") as lease:
                    K.bconv(p.words, s.kernel.panels, g, s.ops, float_out=False,
                            packed_groups=1, threads=threads)  # fmt: skip
                pool.give_back(lease, [])

            # Least times of bursts before and after the interleaved rounds (two
            # chances at a quiet moment of a shared machine), on one thread and
            # on all.
            one = lambda k=kernel: k(threads=1)  # noqa: E731
            n_burst = max(5, repeats if batch == 1 else repeats // 2)
            least_one = least_seconds(one, n_burst)
            least_all = least_seconds(kernel, n_burst)
            times = interleaved(
                {
                    "kernel": kernel,
                    "engine": lambda x=x, m=packed: m.predict(x),
                    "tf_float": _keras_runner(flt_model, x),
                    "keras_bnn": _keras_runner(bnn_model, x),
                },
                repeats if batch == 1 else max(3, repeats // 4),
            )
            macs = batch * int(np.prod(shape[:-1])) * units * k * k * shape[-1]
            if kind == "dense":
                macs = batch * shape[0] * units
            least_one = min(least_one, least_seconds(one, n_burst))
            least_all = min(least_all, least_seconds(kernel, n_burst))
            rows.append(
                {
                    "layer": name,
                    "batch": batch,
                    **times,
                    "bitmacs_per_cycle_core": macs / least_one / hz,
                    "bitmacs_per_cycle_core_all": macs / least_all / hz / THREADS,
                }
            )
    return rows


def bench_models(
    repeats: int, peer: _peers.Peer | None = None, only: list[str] | None = None
) -> list[dict[str, Any]]:
    """Whole models; with ``peer``, LCE on the same weights in the same rounds."""
    import keras

    from bnncore import engine, zoo

    cases = [
        # table name, peer architecture, builder, batch sizes
        ("QuickNet 224", "QuickNet",
         lambda: zoo.QuickNet(input_shape=(224, 224, 3)), (1, 8)),
        ("BinaryAlexNet 224", "BinaryAlexNet",
         lambda: zoo.BinaryAlexNet(input_shape=(224, 224, 3)), (1, 8)),
        ("MNIST BNN", "MNIST BNN", mnist_bnn, (1, 8)),
    ]  # fmt: skip
    rows = []
    rng = np.random.default_rng(1)
    for name, arch, build, batches in cases:
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        # Seeded initialisers: the same weights in every run, so the LCE
        # column (which depends on them, see docs/engine.md) is reproducible.
        keras.utils.set_random_seed(0)
        model = build()
        _randomize_bn(model)
        shape = tuple(model.inputs[0].shape[1:])
        if peer is not None:  # the peer converts while we compile
            classes = int(model.outputs[0].shape[-1])
            peer.load_send(arch, model.get_weights(), shape, classes, batches)
        twin = float_twin(model)
        packed = engine.compile(model, threads=THREADS)
        packed_1 = engine.compile(model, threads=1) if THREADS > 1 else None
        lce_ops = peer.load_reply()["ops"] if peer is not None else {}
        for batch in batches:
            x = rng.normal(size=(batch, *shape)).astype(np.float32)
            reference = np.asarray(model(x, training=False))
            ours = packed.predict(x)
            diff = float(np.max(np.abs(ours - reference)))
            row: dict[str, Any] = {"model": name, "batch": batch, "max_abs_diff": diff}
            cands: dict[str, Callable[[], Any]] = {
                "engine": lambda x=x, m=packed: m.predict(x),
                "keras_bnn": _keras_runner(model, x),
                "float_twin": _keras_runner(twin, x),
            }
            if packed_1 is not None:
                packed_1.predict(x)  # the first call of a shape makes its program
                cands["engine_1"] = lambda x=x, m=packed_1: m.predict(x)
            if peer is not None:
                # Same weights: Larq's Keras model of the architecture agrees
                # with ours (float rounding of two TensorFlow versions apart).
                theirs = peer.keras(x)
                row["transfer_diff"] = float(np.max(np.abs(theirs - reference)))
                lce_out = peer.lce(x)
                row["lce_diff"] = float(np.max(np.abs(lce_out - ours)))
                row["lce_top1"] = _peers.top1_agreement(lce_out, ours)
                row["lce_bconv"] = lce_ops.get("LceBconv2d", 0)
                peer.set_input(x)
                for threads in peer.thread_counts:
                    key = "lce" if threads == THREADS else f"lce_{threads}"
                    cands[key] = SelfTimed(lambda p=peer, t=threads: p.time(1, t)[0])
            times = interleaved(cands, repeats if batch == 1 else max(5, repeats // 3))
            rows.append({**row, **times})
    return rows


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def _ratio(value: float) -> str:
    return f"{value:.1f}×" if value >= 1 else f"{value:.2f}×"


def _cpu_model() -> str | None:
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    except OSError:
        return None
    return found.group(1).strip() if found else None


def machine_line(
    hz: float, nominal: float | None, load: str, info: dict[str, Any]
) -> str:
    """Cores, CPU, the instruction-set level the kernels ran at, clock, load."""
    isa = info.get("isa", info["kernel"])
    supported = info.get("supported_isas")
    cpu = _cpu_model()
    return (
        f"Machine: {THREADS} cores" + (f" ({cpu})" if cpu else "")
        + f", engine instruction set `{isa}`"
        + (f" (the CPU runs: {', '.join(supported)})" if supported else "")
        + f", clock {hz / 1e9:.2f} GHz measured (dependent-add loop, CPU time)"
        + (f", {nominal / 1e9:.2f} GHz nominal (/proc/cpuinfo)" if nominal else "")
        + f"; load average before the run: {load}. Times: wall-clock medians of "
        "interleaved runs. Engine kernel: packed bits in, packed sign bits out; "
        "engine layer: float in, float out. "
        "bit-MACs per cycle per core: the kernel's bit-MACs over "
        "its least wall time times the clock, on one thread (the kernel's "
        f"efficiency) and on {THREADS} threads (divided by {THREADS}: scaling "
        "losses included)."
    )  # fmt: skip


def lce_best(row: dict[str, Any]) -> float:
    """LCE's best time of the row: on the engine's thread count or on one."""
    return min(row["lce"], row.get("lce_1", row["lce"]))


def lce_line(
    model_rows: list[dict[str, Any]], versions: dict[str, str] | None, reason: str
) -> str:
    """What the LCE column is (or why it says n/a)."""
    transfer = [r["transfer_diff"] for r in model_rows if "transfer_diff" in r]
    if versions is None or not transfer:
        return (
            f"LCE: n/a ({reason}). `make bench-peers` sets up `.venv-peers` with "
            "Larq Compute Engine 0.16 and runs this benchmark with it."
        )
    v = versions
    bconvs = {r["model"]: r["lce_bconv"] for r in model_rows if "lce_bconv" in r}
    bconv_text = ", ".join(f"{name} {count}" for name, count in bconvs.items())
    return (
        f"LCE: Larq Compute Engine {v['larq-compute-engine']} (TensorFlow "
        f"{v['tensorflow']}, tf-keras {v['tf-keras']}, larq {v['larq']}, larq-zoo "
        f"{v['larq-zoo']}; `.venv-peers`, set up by `make bench-peers`) in its own "
        "process, timed there, interleaved call by call with the other "
        "candidates. Same weights: the bnncore model's weights set by position "
        "into the same architecture built with Larq layers (Larq's Keras model "
        f"agrees with ours within {max(transfer):.1e}), converted with "
        "`convert_keras_model` for each batch size and run with "
        f"`Interpreter(num_threads={THREADS} or 1, use_indirect_bgemm=True, "
        "use_xnnpack=True)`, one invoke per call (binary convolutions, "
        f"`LceBconv2d`, in LCE's converted models: {bconv_text}); the engine runs on "
        f"{THREADS} threads. LCE best: the faster of its two thread counts (its "
        "thread pool slows down many times over when another process holds a core; "
        "one thread does not). LCE vs engine: largest output difference and "
        "samples whose top-1 class agrees (LCE computes in its own order, with "
        "BatchNorm folded into its binary convolutions: not bit for bit; a sign "
        "it decides the other way near a threshold carries on through the later "
        "binary layers)."
    )


def _layer_table(layer_rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "| layer | batch | engine kernel (ms) | engine layer (ms) | TF float (ms) "
        "| Keras BNN (ms) | float / engine | BNN / engine "
        f"| bit-MACs/cycle/core, 1 thread | same, {THREADS} threads |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in layer_rows:
        float_ratio = r["tf_float"] / r["engine"]
        bnn_ratio = r["keras_bnn"] / r["engine"]
        lines.append(
            f"| {r['layer']} | {r['batch']} | {_ms(r['kernel'])} | {_ms(r['engine'])} "
            f"| {_ms(r['tf_float'])} | {_ms(r['keras_bnn'])} "
            f"| {float_ratio:.1f}× | {bnn_ratio:.1f}× "
            f"| {r['bitmacs_per_cycle_core']:.0f} "
            f"| {r['bitmacs_per_cycle_core_all']:.0f} |"
        )
    return lines


def render(
    layer_rows: list[dict[str, Any]],
    model_rows: list[dict[str, Any]],
    hz: float,
    nominal: float | None,
    load: str,
    info: dict[str, Any] | None = None,
    lce: tuple[dict[str, str] | None, str] = (None, "not run"),
) -> str:
    """The Markdown block: machine line, layer table, model table, LCE line.

    ``info`` is ``kernel_info()`` (read here when None); ``lce`` the peer's
    package versions (None when it did not run) and why it did not.
    """
    if info is None:
        from bnncore.engine import kernel_info

        info = kernel_info()
    lines = [machine_line(hz, nominal, load, info)]
    if layer_rows:
        lines += _layer_table(layer_rows)
    lines += [
        "",
        f"| model | batch | engine (ms) | engine, 1 thread (ms) "
        f"| LCE, {THREADS} threads (ms) "
        "| LCE, 1 thread (ms) | Keras BNN (ms) | float twin (ms) "
        "| LCE best / engine | BNN / engine | float / engine | max abs diff vs Keras "
        "| LCE vs engine: max abs diff, top-1 agree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in model_rows:
        if "lce" in r:
            lce_ms, lce_ratio = _ms(r["lce"]), _ratio(lce_best(r) / r["engine"])
            lce_1 = _ms(r["lce_1"]) if "lce_1" in r else lce_ms
            agree, total = r["lce_top1"]
            lce_agree = f"{r['lce_diff']:.1e}, {agree}/{total}"
        else:
            lce_ms = lce_1 = lce_ratio = lce_agree = "n/a"
        one = _ms(r["engine_1"]) if "engine_1" in r else "n/a"
        lines.append(
            f"| {r['model']} | {r['batch']} | {_ms(r['engine'])} | {one} "
            f"| {lce_ms} | {lce_1} "
            f"| {_ms(r['keras_bnn'])} | {_ms(r['float_twin'])} | {lce_ratio} "
            f"| {_ratio(r['keras_bnn'] / r['engine'])} "
            f"| {_ratio(r['float_twin'] / r['engine'])} | {r['max_abs_diff']:.1e} "
            f"| {lce_agree} |"
        )
    lines += ["", lce_line(model_rows, *lce)]
    return "\n".join(lines)


def verdicts(layer_rows, model_rows, isa: str | None = None) -> list[tuple[str, bool]]:
    """(text, met) per target whose rows were measured; the LCE targets only
    when LCE ran, the float-twin target of AVX-512 machines only at ``isa``
    ``"avx512"``."""

    def model(prefix: str, batch: int) -> dict[str, Any] | None:
        rows = [r for r in model_rows if r["model"].startswith(prefix)]
        return next((r for r in rows if r["batch"] == batch), None)

    out: list[tuple[str, bool]] = []
    quick = model("QuickNet", 1)
    if quick is not None:
        speedup = quick["float_twin"] / quick["engine"]
        out += [
            (f"QuickNet batch 1 median {quick['engine'] * 1e3:.2f} ms <= "
             f"{TARGET_MS} ms",
             quick["engine"] * 1e3 <= TARGET_MS),
            (f"QuickNet batch 1 {speedup:.2f}x faster than the float twin >= "
             f"{TARGET_SPEEDUP}x", speedup >= TARGET_SPEEDUP),
        ]  # fmt: skip
        if isa == "avx512":
            out.append(
                (f"QuickNet batch 1 {speedup:.2f}x faster than the float twin >= "
                 f"{TARGET_SPEEDUP_AVX512}x (AVX-512)",
                 speedup >= TARGET_SPEEDUP_AVX512)
            )  # fmt: skip
        if "lce" in quick:
            ratio = lce_best(quick) / quick["engine"]
            out.append(
                (f"QuickNet batch 1 {ratio:.2f}x faster than LCE at its best "
                 f"({lce_best(quick) * 1e3:.2f} ms) >= {TARGET_LCE_QUICKNET}x",
                 ratio >= TARGET_LCE_QUICKNET)
            )  # fmt: skip
    convs = [
        r for r in layer_rows if r["layer"].startswith("conv") and r["batch"] == 32
    ]
    if convs:
        worst = min(r["bitmacs_per_cycle_core"] for r in convs)
        out.append(
            (f"binary conv kernels (batch 32, one thread) >= {TARGET_BITMACS:.0f} "
             f"bit-MACs/cycle/core: worst {worst:.0f}", worst >= TARGET_BITMACS)
        )  # fmt: skip
    scaled = [r for r in model_rows if "engine_1" in r]
    if scaled:
        worst = max(scaled, key=lambda r: r["engine"] / r["engine_1"])
        ratio = worst["engine"] / worst["engine_1"]
        out.append(
            (f"{THREADS} threads never slower than 1 (within {THREAD_SLACK:.0%}): "
             f"worst {worst['model']} batch {worst['batch']}, "
             f"{worst['engine'] * 1e3:.3f} ms vs {worst['engine_1'] * 1e3:.3f} ms",
             ratio <= 1 + THREAD_SLACK)
        )  # fmt: skip
    mnist = model("MNIST", 1)
    if mnist is not None and "lce" in mnist:
        ratio = lce_best(mnist) / mnist["engine"]
        out.append(
            (f"MNIST BNN batch 1 engine {mnist['engine'] * 1e3:.3f} ms vs LCE at "
             f"its best {lce_best(mnist) * 1e3:.3f} ms: {ratio:.2f}x >= "
             f"{TARGET_LCE_MNIST}x (no slower)", ratio >= TARGET_LCE_MNIST)
        )  # fmt: skip
    transfer = [r["transfer_diff"] for r in model_rows if "transfer_diff" in r]
    if transfer:
        out.append(
            (f"same weights in LCE's model: Larq's Keras model vs ours max abs diff "
             f"{max(transfer):.1e} <= {TRANSFER_TOLERANCE:.0e}",
             max(transfer) <= TRANSFER_TOLERANCE)
        )  # fmt: skip
    return out


def start_peer(mode: str) -> tuple[_peers.Peer | None, str]:
    """The LCE peer (``mode`` auto, on or off), or None and why not."""
    if mode == "off":
        return None, "skipped with --lce off"
    python = _peers.peer_python()
    if python is None:
        if mode == "on":
            raise SystemExit(
                f"--lce on: {_peers.PEER_VENV} does not exist; run `make bench-peers`"
            )
        return None, "the peer environment `.venv-peers` is not set up"
    try:
        return _peers.Peer(python, THREADS), ""
    except (_peers.PeerError, OSError) as error:
        if mode == "on":
            raise
        print(f"LCE peer did not start: {error}", file=sys.stderr)
        return None, "the peer environment `.venv-peers` did not start"


def write_docs(table: str, path: Path = DOCS) -> None:
    """Puts ``table`` between the markers of ``path`` (added at its end when
    missing)."""
    text = path.read_text() if path.exists() else f"{START}\n{END}\n"
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; exit code 1 if a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--write-docs", action="store_true", help="update docs/engine.md"
    )
    parser.add_argument(
        "--write-readme", action="store_true",
        help="update the table in README.md (and docs/engine.md)",
    )  # fmt: skip
    parser.add_argument(
        "--lce", choices=("auto", "on", "off"), default="auto",
        help="Larq Compute Engine from .venv-peers: when set up (auto), required "
        "(on) or not run (off)",
    )  # fmt: skip
    parser.add_argument(
        "--models", nargs="+", metavar="NAME",
        help="only the models whose name contains one of these",
    )  # fmt: skip
    parser.add_argument(
        "--no-layers", action="store_true", help="skip the per-layer section"
    )
    args = parser.parse_args(argv if argv is not None else [])
    if (args.write_docs or args.write_readme) and (args.models or args.no_layers):
        parser.error("--write-docs and --write-readme write the whole benchmark only")
    repeats = 7 if args.quick else 21
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    hz, nominal = clock_hz()
    layer_rows = [] if args.no_layers else bench_layers(repeats, hz)
    peer, reason = start_peer(args.lce)
    with peer if peer is not None else contextlib.nullcontext():
        model_rows = bench_models(repeats, peer, args.models)
    from bnncore.engine import kernel_info

    info = kernel_info()
    versions = peer.versions if peer is not None else None
    table = render(layer_rows, model_rows, hz, nominal, load, info, (versions, reason))
    print(table)
    print()
    ok = True
    for text, passed in verdicts(layer_rows, model_rows, info.get("isa")):
        print(f"{'OK  ' if passed else 'MISS'} {text}")
        ok &= passed
    targets = ([README] if args.write_readme else []) + (
        [DOCS] if args.write_docs or args.write_readme else []
    )
    for path in targets:
        write_docs(table, path)
        print(f"table written to {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
