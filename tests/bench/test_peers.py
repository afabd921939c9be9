"""The LCE peer's helpers in bench/ (weights by position, the pipe protocol, the
table and its verdicts), without the peer's environment: nothing here imports
TensorFlow 2.16, Larq or LCE."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

from bench import _peers
from bench import engine as bench_engine

TWO = f"LCE, {bench_engine.THREADS} threads (ms)"  # the engine's thread count
AVX2 = {"isa": "avx2", "supported_isas": ["portable", "avx2"], "kernel": "avx2"}


def test_weights_round_trip_in_order(tmp_path):
    # More than ten arrays: an order by key as text would put w10 before w2.
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(i % 4 + 1, 3)).astype(np.float32) for i in range(12)]
    path = tmp_path / "w.npz"
    _peers.save_weights(path, weights)
    loaded = _peers.load_weights(path)
    assert len(loaded) == len(weights)
    for ours, back in zip(weights, loaded, strict=True):
        assert back.dtype == ours.dtype
        np.testing.assert_array_equal(back, ours)


def test_load_weights_refuses_a_list_with_a_gap(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, w0000=np.zeros(2), w0002=np.zeros(3))
    with pytest.raises(ValueError, match="by position"):
        _peers.load_weights(path)


def test_dense_kernel_becomes_the_1x1_convolution_that_computes_the_same():
    # bnncore's BinaryAlexNet head is Dense on a flattened map; Larq Zoo's is a
    # 1x1 convolution on the map reshaped to (1, 1, n): the kernel moves by
    # position if the convolution then computes what the dense layer did.
    rng = np.random.default_rng(1)
    n, m = 24, 5
    dense = np.sign(rng.normal(size=(n, m))).astype(np.float32)
    bias = rng.normal(size=m).astype(np.float32)
    x = rng.normal(size=n).astype(np.float32)
    conv, conv_bias = _peers.by_position([dense, bias], [(1, 1, n, m), (m,)])
    assert conv.shape == (1, 1, n, m)
    by_conv = np.einsum("hwi,hwio->o", x.reshape(1, 1, n), conv) + conv_bias
    np.testing.assert_allclose(by_conv, x @ dense + bias, rtol=1e-6, atol=1e-6)


def test_by_position_keeps_arrays_whose_shape_fits():
    weights = [np.arange(6.0).reshape(2, 3), np.ones(4)]
    out = _peers.by_position(weights, [(2, 3), [4]])
    assert out[0] is weights[0] and out[1] is weights[1]


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ([(2, 3), (5,)], r"weight 1: shape \(4,\) does not fit \(5,\)"),
        ([(3, 2), (4,)], r"weight 0: shape \(2, 3\) does not fit \(3, 2\)"),
        ([(2, 3)], "2 weight arrays for a model that has 1"),
    ],
)
def test_by_position_names_what_does_not_fit(shapes, message):
    with pytest.raises(ValueError, match=message):
        _peers.by_position([np.zeros((2, 3)), np.zeros(4)], shapes)


def test_top1_agreement_counts_samples_whose_class_agrees():
    rng = np.random.default_rng(2)
    a = rng.random((9, 7))
    b = a.copy()
    for i in (1, 4, 8):  # move each of these samples' maximum elsewhere
        b[i, (a[i].argmax() + 3) % 7] = 2.0
    expected = sum(int(np.argmax(a[i]) == np.argmax(b[i])) for i in range(9))
    assert expected == 6
    assert _peers.top1_agreement(a, b) == (6, 9)


def test_serve_answers_errors_per_request_and_stops_at_quit():
    requests = io.StringIO(
        '{"cmd": "no_such_command"}\n{"cmd": "time", "n": 1, "threads": 1}\n'
        '{"cmd": "quit"}\n{"cmd": "no_such_command"}\n'
    )
    replies = io.StringIO()
    _peers.serve(requests, replies)
    answers = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert len(answers) == 2
    assert answers[0]["error"].startswith("AttributeError")
    assert answers[1]["error"] == "ValueError: time before set_input"


def test_peer_error_reaches_the_client_from_a_real_process():
    # This environment has no Larq: the peer's first request (its package
    # versions) fails in the server process and is raised here.
    with pytest.raises(_peers.PeerError, match="PackageNotFoundError"):
        _peers.Peer(_peers.Path(sys.executable), threads=1)


def test_peer_python_is_none_without_the_environment(tmp_path):
    assert _peers.peer_python(tmp_path / "missing") is None
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    assert _peers.peer_python(tmp_path / "venv") == python


def test_interleaved_takes_self_timed_seconds_and_varies_the_order():
    calls: list[str] = []
    reported = iter([9.0, 9.0, 0.3, 0.1, 0.2, 0.5, 0.4])  # 2 warm-up calls first

    def remote() -> float:
        calls.append("remote")
        return next(reported)

    def local(name: str):
        return lambda: calls.append(name)

    times = bench_engine.interleaved(
        {"a": local("a"), "b": local("b"), "remote": bench_engine.SelfTimed(remote)},
        5,
    )
    assert times["remote"] == 0.3  # median of what it reported, warm-up excluded
    assert times["a"] >= 0 and times["b"] >= 0
    rounds = [calls[6 + 3 * i : 9 + 3 * i] for i in range(5)]
    assert all(sorted(r) == ["a", "b", "remote"] for r in rounds)  # each once
    assert len({tuple(r) for r in rounds}) > 1  # not one fixed order


def _model_row(name, batch, engine_s, lce_s=None, lce_1_s=None):
    row = {
        "model": name,
        "batch": batch,
        "engine": engine_s,
        "keras_bnn": 4 * engine_s,
        "float_twin": 3 * engine_s,
        "max_abs_diff": 1e-7,
    }
    if lce_s is not None:
        row |= {
            "lce": lce_s,
            "lce_diff": 2e-7,
            "lce_top1": (1, batch),
            "transfer_diff": 5e-8,
            "lce_bconv": 16,
        }
    if lce_1_s is not None:
        row["lce_1"] = lce_1_s
    return row


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_model_table_with_lce_columns():
    rows = [
        _model_row("QuickNet 224", 1, 0.008, 0.048, 0.052),
        _model_row("MNIST BNN", 1, 0.0004, 0.0009, 0.0003),
    ]
    versions = {
        "larq-compute-engine": "0.16.0",
        "tensorflow": "2.16.2",
        "tf-keras": "2.16.0",
        "larq": "0.14.0",
        "larq-zoo": "2.4.0",
    }
    text = bench_engine.render([], rows, 3e9, None, "0.1 0.1 0.1", AVX2, (versions, ""))
    lines = text.splitlines()
    assert "instruction set `avx2`" in lines[0] and "portable, avx2" in lines[0]
    table = [line for line in lines if line.startswith("|")]
    header = _cells(table[0])
    assert all(len(_cells(line)) == len(header) for line in table)
    quick = dict(zip(header, _cells(table[2]), strict=True))
    assert quick[TWO] == "48.0"
    assert quick["LCE, 1 thread (ms)"] == "52.0"
    assert quick["LCE best / engine"] == f"{0.048 / 0.008:.1f}×" == "6.0×"
    assert quick["LCE vs engine: max abs diff, top-1 agree"] == "2.0e-07, 1/1"
    mnist = dict(zip(header, _cells(table[3]), strict=True))
    assert mnist[TWO] == "0.900"
    assert mnist["LCE best / engine"] == "0.75×"  # its one thread: 0.3 / 0.4
    assert "Larq Compute Engine 0.16.0" in lines[-1]
    assert "within 5.0e-08" in lines[-1]
    assert "QuickNet 224 16, MNIST BNN 16" in lines[-1]


def test_model_table_without_lce_says_na_and_how_to_get_it():
    rows = [_model_row("MNIST BNN", 1, 0.0004)]
    text = bench_engine.render(
        [],
        rows,
        3e9,
        2.4e9,
        "0.1 0.1 0.1",
        AVX2,
        (None, "the peer environment is not set up"),
    )
    table = [line for line in text.splitlines() if line.startswith("|")]
    cells = dict(zip(_cells(table[0]), _cells(table[2]), strict=True))
    lce = (TWO, "LCE, 1 thread (ms)", "LCE best / engine")
    assert [cells[c] for c in lce] == ["n/a"] * 3
    assert "make bench-peers" in text.splitlines()[-1]


def test_lce_verdicts_only_when_lce_ran():
    without = bench_engine.verdicts(
        [],
        [_model_row("QuickNet 224", 1, 0.008), _model_row("MNIST BNN", 1, 0.0004)],
        "avx2",
    )
    assert not any("LCE" in text for text, _ in without)
    assert not any("AVX-512" in text for text, _ in without)


def test_lce_verdicts_judge_the_ratios():
    rows = [
        _model_row("QuickNet 224", 1, 0.008, 0.2, 0.039),  # best 4.9x: missed
        _model_row("QuickNet 224", 8, 0.05, 0.5),
        _model_row("MNIST BNN", 1, 0.0004, 0.0004, 0.0009),  # equal: no slower
    ]
    judged = {text: ok for text, ok in bench_engine.verdicts([], rows, "avx512")}
    lce_quick = [ok for text, ok in judged.items() if "faster than LCE" in text]
    assert lce_quick == [False]
    mnist = [ok for text, ok in judged.items() if text.startswith("MNIST")]
    assert mnist == [True]
    avx512 = [ok for text, ok in judged.items() if "AVX-512" in text]
    assert avx512 == [False]  # 3x the float twin < 8x
    rows[0]["lce_1"] = 0.041
    rows[0]["float_twin"] = 0.065
    judged = {text: ok for text, ok in bench_engine.verdicts([], rows, "avx512")}
    assert all(ok for ok in judged.values()), judged


def test_without_the_peer_environment_lce_is_skipped_or_required(monkeypatch, tmp_path):
    monkeypatch.setattr(_peers, "PEER_VENV", tmp_path / "missing")
    peer, reason = bench_engine.start_peer("auto")
    assert peer is None and "not set up" in reason
    assert bench_engine.start_peer("off") == (None, "skipped with --lce off")
    with pytest.raises(SystemExit, match="make bench-peers"):
        bench_engine.start_peer("on")


def test_thread_scaling_column_and_verdict():
    rows = [_model_row("QuickNet 224", 1, 0.008), _model_row("MNIST BNN", 1, 0.0004)]
    rows[0]["engine_1"] = 0.012  # two threads faster
    rows[1]["engine_1"] = 0.0003  # two threads a third slower
    text = bench_engine.render([], rows, 3e9, None, "0.1 0.1 0.1", AVX2, (None, "off"))
    table = [line for line in text.splitlines() if line.startswith("|")]
    header = _cells(table[0])
    cells = [dict(zip(header, _cells(line), strict=True)) for line in table[2:]]
    assert [c["engine, 1 thread (ms)"] for c in cells] == ["12.0", "0.300"]
    judged = dict(bench_engine.verdicts([], rows, "avx2"))
    scaling = [(t, ok) for t, ok in judged.items() if "never slower than 1" in t]
    assert len(scaling) == 1 and scaling[0][1] is False and "MNIST BNN" in scaling[0][0]
    rows[1]["engine_1"] = 0.0004 / (1 + bench_engine.THREAD_SLACK / 2)  # within noise
    judged = dict(bench_engine.verdicts([], rows, "avx2"))
    assert [ok for t, ok in judged.items() if "never slower than 1" in t] == [True]
    del rows[0]["engine_1"], rows[1]["engine_1"]
    judged = dict(bench_engine.verdicts([], rows, "avx2"))
    assert not any("never slower" in t for t in judged)
