"""The operations of the quantized layers, written with ``keras.ops``.

Each function computes a layer family's output (bias included, activation not)
from already-quantized inputs and kernels, exactly as the Keras parent does,
plus explicit constant padding for ``pad_values``. That padding is the one call
outside ``keras.ops``: on the TensorFlow backend it is ``tf.pad`` with Larq's
arguments (see :func:`constant_pad`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _channels_last(layer: Any) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _add_bias(layer: Any, outputs: Any, channels: int) -> Any:
    if not layer.use_bias:
        return outputs
    rank = len(outputs.shape) - 2
    if _channels_last(layer):
        shape = (1,) * (rank + 1) + (channels,)
    else:
        shape = (1, channels) + (1,) * rank
    return ops.add(outputs, ops.reshape(layer.bias, shape))


def same_padding_amounts(size: Any, kernel: int, stride: int, dilation: int) -> Any:
    """(before, after) padding of one spatial axis under ``padding="same"``.

    ``size`` is an ``int`` or, for a spatial size only known at run time, a
    scalar integer tensor; the amounts are then tensors too.
    """
    out = (size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    total = (out - 1) * stride + effective - size
    total = max(total, 0) if isinstance(total, int) else ops.maximum(total, 0)
    before = total // 2
    return before, total - before


def constant_pad(inputs: Any, paddings: list[list[Any]], value: float) -> Any:
    """``inputs`` padded with the constant ``value`` (``paddings``: one
    ``[before, after]`` pair per axis, ints or scalar tensors).

    On the TensorFlow backend this is ``tf.pad(inputs, paddings,
    constant_values=value)``, the call Larq's conv layers make, so code that
    watches ``tf.pad`` (Larq's own tests spy on it) sees the same call;
    ``keras.ops.pad`` would add ``mode="CONSTANT"`` positionally. Other
    backends use ``keras.ops.pad``. The values are the same either way.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.pad(inputs, paddings, constant_values=value)
    return ops.pad(inputs, paddings, constant_values=value)


def pad_inputs(layer: Any, inputs: Any) -> tuple[Any, str]:
    """Pads ``inputs`` with ``layer.pad_values`` where the layer pads implicitly.

    Returns the (possibly padded) inputs and the padding mode to pass on to the
    convolution: unchanged when the native zero padding is what is asked for.
    Spatial sizes unknown when tracing (``None``) are read at run time.
    """
    padding = layer.padding
    value = getattr(layer, "pad_values", 0.0)
    if padding == "valid" or (padding == "same" and value == 0.0):
        return inputs, padding
    rank = layer.rank
    spatial_axes = (
        list(range(1, rank + 1)) if _channels_last(layer) else list(range(2, rank + 2))
    )
    pads: list[list[Any]] = [[0, 0] for _ in range(rank + 2)]
    for i, axis in enumerate(spatial_axes):
        kernel = layer.kernel_size[i]
        dilation = layer.dilation_rate[i]
        if padding == "causal":
            pads[axis] = [dilation * (kernel - 1), 0]
            continue
        size = inputs.shape[axis]
        if size is None:
            size = ops.shape(inputs)[axis]
        pads[axis] = list(
            same_padding_amounts(size, kernel, layer.strides[i], dilation)
        )
    return constant_pad(inputs, pads, value), "valid"


def dense(layer: Any, inputs: Any, kernels: dict[str, Any]) -> Any:
    outputs = ops.matmul(inputs, kernels["kernel"])
    if layer.use_bias:
        outputs = ops.add(outputs, layer.bias)
    return outputs


def conv(layer: Any, inputs: Any, kernels: dict[str, Any]) -> Any:
    inputs, padding = pad_inputs(layer, inputs)
    outputs = ops.conv(
        inputs,
        kernels["kernel"],
        strides=list(layer.strides),
        padding=padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )
    return _add_bias(layer, outputs, layer.filters)


def depthwise_conv(layer: Any, inputs: Any, kernels: dict[str, Any]) -> Any:
    inputs, padding = pad_inputs(layer, inputs)
    kernel = kernels["kernel"]
    outputs = ops.depthwise_conv(
        inputs,
        kernel,
        strides=layer.strides,
        padding=padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )
    channels = kernel.shape[-2] * kernel.shape[-1]
    return _add_bias(layer, outputs, channels)


def separable_conv(layer: Any, inputs: Any, kernels: dict[str, Any]) -> Any:
    inputs, padding = pad_inputs(layer, inputs)
    outputs = ops.separable_conv(
        inputs,
        kernels["depthwise_kernel"],
        kernels["pointwise_kernel"],
        strides=layer.strides,
        padding=padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )
    return _add_bias(layer, outputs, layer.filters)


def conv_transpose(layer: Any, inputs: Any, kernels: dict[str, Any]) -> Any:
    outputs = ops.conv_transpose(
        inputs,
        kernels["kernel"],
        strides=list(layer.strides),
        padding=layer.padding,
        output_padding=layer.output_padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )
    return _add_bias(layer, outputs, layer.filters)


def locally_connected(layer: Any, inputs: Any, kernels: dict[str, Any]) -> Any:
    """Unshared-weight convolution (``padding="valid"``) over 1 or 2 spatial axes.

    The weight layout is Keras 2's ``implementation=1``: output positions in
    row-major order; each patch flattened in the input's own axis order, that is
    (spatial..., channel) for ``channels_last`` and (channel, spatial...) for
    ``channels_first``; the bias, of shape ``(*output_spatial, filters)``, is
    reshaped (not transposed) to the output's layout, as Keras 2 did.
    """
    rank = layer.rank
    channels_last = _channels_last(layer)
    kernel = kernels["kernel"]
    out_sizes = layer.output_spatial_shape
    first_spatial = 1 if channels_last else 2
    gathered = inputs
    # Gather windows axis by axis: spatial axis i of size L becomes (out_i, k_i).
    for i in range(rank):
        starts = ops.arange(out_sizes[i]) * layer.strides[i]
        index = ops.expand_dims(starts, 1) + ops.expand_dims(
            ops.arange(layer.kernel_size[i]), 0
        )
        gathered = ops.take(gathered, index, axis=first_spatial + 2 * i)
    # channels_last:  (B, o1, k1, ..., C) -> (B, o1, ..., k1, ..., C)
    # channels_first: (B, C, o1, k1, ...) -> (B, o1, ..., C, k1, ...)
    out_axes = [first_spatial + 2 * i for i in range(rank)]
    k_axes = [first_spatial + 2 * i + 1 for i in range(rank)]
    if channels_last:
        perm = [0, *out_axes, *k_axes, 1 + 2 * rank]
    else:
        perm = [0, *out_axes, 1, *k_axes]
    gathered = ops.transpose(gathered, perm)
    patches = ops.reshape(gathered, (-1, kernel.shape[0], kernel.shape[1]))
    outputs = ops.einsum("bpk,pkf->bpf", patches, kernel)
    outputs = ops.reshape(outputs, (-1, *out_sizes, layer.filters))
    if not channels_last:
        outputs = ops.transpose(outputs, [0, rank + 1, *range(1, rank + 1)])
    if layer.use_bias:
        bias_shape = (
            (1, *out_sizes, layer.filters)
            if channels_last
            else (1, layer.filters, *out_sizes)
        )
        outputs = ops.add(outputs, ops.reshape(layer.bias, bias_shape))
    return outputs
