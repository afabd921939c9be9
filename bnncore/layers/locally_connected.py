"""Locally connected layers (unshared convolution), which Keras 3 no longer has.

They behave like Keras 2's ``LocallyConnected1D/2D`` with ``implementation=1``,
weight layout included, so Keras 2 / Larq weights load unchanged:

* ``padding="valid"`` only;
* ``kernel`` has shape ``(output_positions, prod(kernel_size) * input_channels,
  filters)``; output positions are in row-major order and each input patch is
  flattened in the input's own axis order: (spatial..., channel) for
  ``channels_last``, (channel, spatial...) for ``channels_first``;
* ``bias`` has shape ``(*output_spatial_shape, filters)``; for
  ``channels_first`` it is *reshaped* (not transposed) to
  ``(filters, *output_spatial_shape)`` before being added, as Keras 2 did.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import initializers, regularizers

from bnncore import activations, constraints
from bnncore.layers import forward

__all__ = ["LocallyConnected1D", "LocallyConnected2D"]


def _tuple(name: str, value: Any, rank: int) -> tuple[int, ...]:
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(values) != rank or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ValueError(
            f"Expected `{name}` to be a positive integer or a tuple of {rank} positive "
            f"integers. Received: {name}={value!r}"
        )
    return values


class _LocallyConnected(keras.layers.Layer):
    rank: int

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        implementation: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(
                f"Expected a positive integer. Received: filters={filters!r}"
            )
        if padding != "valid":
            raise ValueError(
                "Locally connected layers support only padding='valid'. "
                f"Received: padding={padding!r}"
            )
        if implementation != 1:
            raise ValueError(
                "Only implementation=1 (Keras 2's weight layout) is supported. "
                f"Received: implementation={implementation!r}"
            )
        self.filters = filters
        self.kernel_size = _tuple("kernel_size", kernel_size, self.rank)
        self.strides = _tuple("strides", strides, self.rank)
        self.padding = padding
        data_format = data_format or keras.config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                "Expected data_format to be 'channels_last' or 'channels_first'. "
                f"Received: data_format={data_format!r}"
            )
        self.data_format = data_format
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.implementation = implementation
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2)

    def _split_shape(self, input_shape: Any) -> tuple[tuple[Any, ...], Any]:
        if self.data_format == "channels_last":
            return tuple(input_shape[1:-1]), input_shape[-1]
        return tuple(input_shape[2:]), input_shape[1]

    def _output_sizes(self, spatial: tuple[Any, ...]) -> tuple[int, ...]:
        sizes = []
        for size, k, s in zip(spatial, self.kernel_size, self.strides, strict=True):
            if size is None:
                raise ValueError(
                    f"{self.name}: locally connected layers need known spatial "
                    f"dimensions. Received spatial shape {spatial}."
                )
            out = (size - k) // s + 1
            if out <= 0:
                raise ValueError(
                    f"{self.name}: kernel_size={self.kernel_size} is larger than the "
                    f"input's spatial shape {spatial}."
                )
            sizes.append(out)
        return tuple(sizes)

    def build(self, input_shape: Any) -> None:
        spatial, channels = self._split_shape(input_shape)
        if channels is None:
            raise ValueError(f"{self.name}: the channel dimension must be known.")
        self.output_spatial_shape = self._output_sizes(spatial)
        channel_axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = keras.layers.InputSpec(
            ndim=self.rank + 2, axes={channel_axis: channels}
        )
        positions = math.prod(self.output_spatial_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(positions, math.prod(self.kernel_size) * channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(*self.output_spatial_shape, self.filters),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    def call(self, inputs: Any) -> Any:
        outputs = forward.locally_connected(self, inputs, {"kernel": self.kernel})
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        spatial, _ = self._split_shape(input_shape)
        sizes = self._output_sizes(spatial)
        if self.data_format == "channels_last":
            return (input_shape[0], *sizes, self.filters)
        return (input_shape[0], self.filters, *sizes)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "implementation": self.implementation,
        }


@keras.saving.register_keras_serializable(package="bnncore")
class LocallyConnected1D(_LocallyConnected):
    """Locally connected layer over one spatial axis: input ``(batch, steps, chans)``.

    Args:
        filters: Number of output channels.
        kernel_size: Window length, an integer or 1-tuple.
        strides: Stride, an integer or 1-tuple.
        padding: Only ``"valid"``.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        activation, use_bias, *_initializer, *_regularizer, *_constraint: as in
            ``keras.layers.Conv1D``.
        implementation: Only ``1`` (Keras 2's weight layout).
    """

    rank = 1


@keras.saving.register_keras_serializable(package="bnncore")
class LocallyConnected2D(_LocallyConnected):
    """Locally connected layer over two spatial axes; input ``(batch, h, w, channels)``.

    Args are those of :class:`LocallyConnected1D`, with 2-tuples.
    """

    rank = 2
