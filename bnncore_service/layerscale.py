"""ConvNeXt's ``LayerScale``, rebuilt from the public Keras API.

``keras.applications.ConvNeXt*`` scale each residual branch by a learned
vector (Touvron et al., 2021, "Going deeper with Image Transformers",
https://arxiv.org/abs/2103.17239). Keras defines that layer in
``keras.src.applications.convnext``, a private module the service never
imports; this class computes the same thing — ``x * gamma``, one trainable
scale per channel, initialized to ``init_values`` — so that a ConvNeXt's
``to_json()`` can be served.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["LayerScale"]


@keras.saving.register_keras_serializable(package="bnncore_service")
class LayerScale(keras.layers.Layer):
    """``y = x * gamma`` with ``gamma`` of shape ``(projection_dim,)``.

    Args:
        init_values: Initial value of every scale.
        projection_dim: Channels of the input (its last axis).
    """

    def __init__(self, init_values: float, projection_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.init_values = init_values
        self.projection_dim = projection_dim

    def build(self, input_shape: Any) -> None:
        # Keras's own leaves it unnamed ("variable", "variable_1", ... by a
        # process-wide counter); a stable name here.
        self.gamma = self.add_weight(
            name="gamma",
            shape=(self.projection_dim,),
            initializer=keras.initializers.Constant(self.init_values),
            trainable=True,
        )

    def call(self, inputs: Any) -> Any:
        return inputs * self.gamma

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "init_values": self.init_values,
            "projection_dim": self.projection_dim,
        }
