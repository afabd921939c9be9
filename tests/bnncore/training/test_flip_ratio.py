"""FlipRatio: the metric itself, how layers get it, and its values in fit logs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bnncore import context, quantizers
from bnncore.layers import QuantDense, QuantSeparableConv1D
from bnncore.metrics import FlipRatio


def test_flip_ratio_is_the_mean_changed_fraction_since_reset():
    rng = np.random.default_rng(0)
    values = [rng.choice([-1, 1], size=(4, 5))]
    for p in (0.1, 0.5, 0.0, 0.3, 1.0):
        values.append(np.where(rng.random((4, 5)) < p, -values[-1], values[-1]))
    fractions = [np.mean(a != b) for a, b in zip(values[1:], values[:-1], strict=True)]

    metric = FlipRatio(values_shape=(4, 5))
    assert float(metric.result()) == 0.0
    for v in values[:3]:
        metric.update_state(v)
    assert float(metric.result()) == pytest.approx(np.mean(fractions[:2]))
    assert float(metric.count) == 3.0  # updates since the reset, as in Larq
    metric.reset_state()  # the next update only records its values (Larq)
    for v in values[3:]:
        metric.update_state(v)
    # values[2] -> values[3] is not compared: fractions[2] is left out.
    assert float(metric.result()) == pytest.approx(np.mean(fractions[3:]))
    assert float(metric.count) == 3.0


@pytest.mark.parametrize(
    ("updates", "expected", "count"),
    [
        # Larq 0.14 (TF 2.16) gives these: 3 updates, (1 + 1/2) / 2.
        pytest.param([[1, 1], [2, 2], [1, 2]], 0.75, 3.0, id="three-updates"),
        # A reset forgets the past: [2, 2] -> [2, 1] is not a flip of this period.
        pytest.param([[1, 1], [2, 2], None, [2, 1], [2, 1]], 0.0, 2.0, id="reset"),
        pytest.param([[1, 1], [2, 2], None, [2, 1], [1, 1], [1, 2]], 0.5, 3.0, id="r3"),
        pytest.param([[1, 1]], 0.0, 1.0, id="one-update"),
        pytest.param([[1, 1], None], 0.0, 0.0, id="reset-only"),
    ],
)
def test_flip_ratio_matches_larqs_numbers(updates, expected, count):
    metric = FlipRatio()
    metric.build((2,))
    for values in updates:
        if values is None:
            metric.reset_state()
        else:
            metric.update_state(np.array(values))
    assert float(metric.result()) == expected
    assert float(metric.count) == count
    if updates[-1] is not None:
        np.testing.assert_array_equal(metric._previous_values.numpy(), updates[-1])


def test_flip_ratio_build_checks_the_shape():
    metric = FlipRatio()
    metric.build((3,))
    metric.build([3])  # the same shape again is fine
    with pytest.raises(ValueError, match=r"values_shape=\(2,\)"):
        metric.build((2,))
    with pytest.raises(ValueError, match=r"values.shape=\(2,\)"):
        metric.update_state(np.array([1, 1]))


def test_flip_ratio_worked_example_and_lazy_shape():
    metric = FlipRatio()  # shape taken from the first update
    metric.update_state([1, 1])
    metric.update_state([2, 2])  # 2 of 2 changed
    metric.update_state([1, 2])  # 1 of 2 changed
    assert float(metric.result()) == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"values.shape=\(3,\)"):
        metric.update_state([1, 2, 3])
    with pytest.raises(ValueError, match="sample_weight="):
        metric.update_state([1, 2], sample_weight=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"values_shape=\(None, 2\)"):
        FlipRatio(values_shape=(None, 2))
    original = FlipRatio(values_shape=(3, 2), values_dtype="float32", name="fr")
    clone = FlipRatio.from_config(original.get_config())
    assert (clone.values_shape, clone.values_dtype, clone.name) == (
        (3, 2),
        "float32",
        "fr",
    )


def flip_metrics(layer):
    return {m.name: m for m in layer.metrics if isinstance(m, FlipRatio)}


def test_quantizer_metrics_argument_and_scope_give_layers_the_metric():
    explicit = QuantDense(
        3, kernel_quantizer=quantizers.SteSign(metrics=["flip_ratio"]), name="a"
    )
    explicit.build((None, 4))
    assert list(flip_metrics(explicit)) == [
        f"flip_ratio/{explicit.kernel_quantizer.name}"
    ]

    plain = QuantDense(3, kernel_quantizer="ste_sign", name="b")
    plain.build((None, 4))
    assert flip_metrics(plain) == {}

    shared = quantizers.SteSign()
    with context.metrics_scope(["flip_ratio"]) as active:
        assert active == {"flip_ratio"}
        scoped = QuantDense(
            3, input_quantizer="ste_sign", kernel_quantizer=shared, name="c"
        )
        separable = QuantSeparableConv1D(
            2,
            3,
            depthwise_quantizer="ste_sign",
            pointwise_quantizer="ste_tern",
            name="d",
        )
    assert context.get_training_metrics() == set()
    assert shared.quantizer_metrics == []  # the caller's instance is not changed
    assert scoped.kernel_quantizer.quantizer_metrics == ["flip_ratio"]
    assert scoped.input_quantizer.quantizer_metrics == []
    assert scoped.get_config()["kernel_quantizer"]["config"]["metrics"] == [
        "flip_ratio"
    ]
    scoped.build((None, 4))
    separable.build((None, 6, 2))
    # Named after the kernel quantizer, as in Larq (the scope's copy keeps it).
    assert scoped.kernel_quantizer.name == shared.name
    assert list(flip_metrics(scoped)) == [f"flip_ratio/{shared.name}"]
    depthwise = f"flip_ratio/{separable.depthwise_quantizer.name}"
    pointwise = f"flip_ratio/{separable.pointwise_quantizer.name}"
    assert depthwise.startswith("flip_ratio/ste_sign")
    assert pointwise.startswith("flip_ratio/ste_tern")
    # Binary kernels are stored as signs, k-bit ones by value.
    dtypes = {n: m.values_dtype for n, m in flip_metrics(separable).items()}
    assert dtypes == {depthwise: "int8", pointwise: "float32"}
    reloaded = QuantDense.from_config(scoped.get_config())
    reloaded.build((None, 4))
    assert [m.values_shape for m in flip_metrics(reloaded).values()] == [(4, 3)]


def test_metrics_scope_restores_on_error_and_rejects_unknown_names():
    with pytest.raises(RuntimeError), context.metrics_scope(["flip_ratio"]):
        raise RuntimeError
    assert context.get_training_metrics() == set()
    with pytest.raises(ValueError, match=r"\['accuracy'\]"):
        context.metrics_scope(["accuracy"]).__enter__()
    with pytest.raises(ValueError, match="metrics='flip_ratio'"):
        context.metrics_scope("flip_ratio").__enter__()


class KernelRecorder(keras.callbacks.Callback):
    """Records each layer's kernel before every training step."""

    def __init__(self, layers):
        super().__init__()
        self.layers = layers
        self.kernels = {layer.name: [] for layer in layers}
        self.steps_per_epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps_per_epoch.append(0)

    def on_train_batch_begin(self, batch, logs=None):
        self.steps_per_epoch[-1] += 1
        for layer in self.layers:
            self.kernels[layer.name].append(layer.kernel.numpy().copy())


def test_fit_logs_the_flip_ratio_of_each_kernel():
    keras.utils.set_random_seed(1)
    with context.metrics_scope(["flip_ratio"]):
        layers = [
            QuantDense(16, kernel_quantizer="ste_sign", name="sign"),
            QuantDense(16, kernel_quantizer="magnitude_aware_sign", name="scaled"),
            QuantDense(
                2, kernel_quantizer=quantizers.SteTern(threshold_value=0.1), name="tern"
            ),
        ]
    model = keras.Sequential([keras.Input((8,)), *layers])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 2)).astype("float32")
    recorder = KernelRecorder(layers)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[recorder])

    def ternary(w):
        return np.where(w >= 0.1, 1, np.where(w <= -0.1, -1, 0))

    views = {"sign": np.sign, "scaled": np.sign, "tern": ternary}
    keys = {layer.name: f"flip_ratio/{layer.kernel_quantizer.name}" for layer in layers}
    assert sorted(keys.values()) == sorted(k for k in history.history if "flip" in k)
    first = recorder.steps_per_epoch[0]
    for name, view in views.items():
        quantized = [view(k) for k in recorder.kernels[name]]
        expected = []
        # Keras resets metrics at each epoch start; as in Larq, the first step of
        # an epoch is then not compared with the last step of the one before.
        for epoch in (quantized[:first], quantized[first:]):
            pairs = zip(epoch[1:], epoch[:-1], strict=True)
            expected.append(np.mean([np.mean(a != b) for a, b in pairs]))
        logged = history.history[keys[name]]
        np.testing.assert_allclose(logged, expected, rtol=1e-5, atol=1e-7)
        assert max(logged) > 0  # something flipped: the check is not vacuous


def test_a_shared_quantizer_gives_each_kernel_its_own_log_key():
    shared = quantizers.SteSign(metrics=["flip_ratio"])
    model = keras.Sequential(
        [
            keras.Input((4,)),
            QuantDense(3, kernel_quantizer=shared, name="first"),
            QuantDense(2, kernel_quantizer=shared, name="second"),
        ]
    )
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    history = model.fit(x, np.zeros((8, 2)), epochs=1, verbose=0).history
    base = f"flip_ratio/{shared.name}"
    assert sorted(k for k in history if "flip" in k) == [base, f"{base}/second"]
    assert list(flip_metrics(model.layers[0])) == [base]


def _keys(model):
    return {layer.name: sorted(flip_metrics(layer)) for layer in model.layers}


def test_a_reloaded_model_logs_its_flip_ratios_under_the_same_keys(tmp_path):
    """A quantizer's automatic name is not saved (a reloaded quantizer gets a
    fresh one); the layer saves its metric keys, so .keras files and config
    round trips keep them, shared quantizers included."""
    shared = quantizers.SteSign(metrics=["flip_ratio"])
    with context.metrics_scope(["flip_ratio"]):
        scoped = QuantDense(3, kernel_quantizer="ste_sign", name="scoped")
        separable = QuantSeparableConv1D(
            2, 2, depthwise_quantizer=shared, pointwise_quantizer=shared, name="sep"
        )
    model = keras.Sequential(
        [
            keras.Input((5, 4)),
            scoped,
            QuantDense(3, kernel_quantizer=shared, name="first"),
            separable,
            QuantDense(2, kernel_quantizer="ste_sign", name="plain"),
        ]
    )
    keys = _keys(model)
    base = f"flip_ratio/{shared.name}"
    assert keys == {
        "scoped": [f"flip_ratio/{scoped.kernel_quantizer.name}"],
        "first": [base],
        "sep": sorted([f"{base}/sep", f"{base}/sep/pointwise_kernel"]),
        "plain": [],
    }
    assert "flip_ratio_names" not in model.layers[-1].get_config()

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    cloned = keras.Sequential.from_config(model.get_config())
    unbuilt = QuantDense.from_config(scoped.get_config())
    for other in (loaded, cloned):
        assert other.layers[0].kernel_quantizer is not scoped.kernel_quantizer
        assert other.layers[0].kernel_quantizer.name != scoped.kernel_quantizer.name
        assert _keys(other) == keys
    assert unbuilt.get_config()["flip_ratio_names"] == {"kernel": keys["scoped"][0]}

    loaded.compile("sgd", "mse")
    x = np.random.default_rng(1).normal(size=(4, 5, 4)).astype("float32")
    history = loaded.fit(x, np.zeros((4, 4, 2)), epochs=1, verbose=0).history
    logged = sorted(k for k in history if k.startswith("flip_ratio"))
    assert logged == sorted(k for names in keys.values() for k in names)


@pytest.mark.parametrize(
    "names",
    [{"bias": "flip_ratio/x"}, {"kernel": ""}, {"kernel": 3}, ["flip_ratio/x"]],
    ids=["not-a-kernel", "empty", "not-a-string", "not-a-dict"],
)
def test_bad_saved_flip_ratio_names_are_refused(names):
    config = QuantDense(3, kernel_quantizer="ste_sign").get_config()
    message = r"flip_ratio_names to map kernel attributes \(kernel\).*Received: flip"
    with pytest.raises(ValueError, match=message):
        QuantDense.from_config({**config, "flip_ratio_names": names})
