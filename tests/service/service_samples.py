"""Sample definitions shared by the service tests."""

from __future__ import annotations

from typing import Any

MNIST: dict[str, Any] = {
    "name": "mnist-bnn",
    "input_shape": [28, 28, 1],
    "layers": [
        {
            "type": "QuantConv2D",
            "filters": 32,
            "kernel_size": 3,
            "kernel_quantizer": "ste_sign",
            "kernel_constraint": "weight_clip",
            "use_bias": False,
        },
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "BatchNormalization", "scale": False},
        {"type": "Flatten"},
        {
            "type": "QuantDense",
            "units": 10,
            "input_quantizer": "ste_sign",
            "kernel_quantizer": "ste_sign",
            "kernel_constraint": "weight_clip",
        },
    ],
}
