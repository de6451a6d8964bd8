"""Bias correction, a quantization remedy (opt-in: `legalize.bias_correction`), on the float ONNX graph.

int8 rounds every weight: W_q = W + dW. On real inputs a layer's output then moves by dW·x, and the mean of that over
the data, E[dW·x] per output channel, is a bias: it does not average out (inputs after a ReLU are all >= 0), and every
later layer inherits it. Bias correction (Nagel et al., 2019, "Data-Free Quantization Through Weight Equalization and
Bias Correction", section 4.2; here the empirical form, on the calibration samples) takes it out of the float bias,
b' = b - E[dW·x], so that the int8 layer's W_q·x + b' has the float layer's mean.

- dW is the int8 model's own weight error: the converter's symmetric int8 in [-127, 127] with scale max|W| / 127 per
  output channel (per tensor with `quantization.granularity: per-tensor`), on the weights as the ONNX graph holds
  them (onnxsim has folded BatchNorm into them; a constant that the TFLite converter folds in later is not seen).
- E[dW·x] is measured, not estimated from E[x]: onnxruntime runs the float model on the calibration samples with,
  beside every corrected layer, a copy of it that has dW for weights and no bias, averaged over all but the channel
  axis. The copy keeps the layer's padding, strides and groups, so the zero padding at the borders and grouped and
  depthwise filters count exactly (no spatially constant mean is assumed).
- Every layer is corrected from float input statistics (the classic method): the shift that an earlier layer's
  rounding adds to a later layer's input in the int8 model is not modelled.

Conv (grouped and depthwise included), Gemm and MatMul with constant weights are corrected; a layer without a bias
gets one (after a MatMul, in the Add that follows it or a new one). Not exact: the float model moves by the
correction, which the legalization report gives as the rewrite's float cost.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler_kit.errors import BadInputError, describe_exception
from compiler_kit.legalize.graph import Graph, RemedyData, attribute
from compiler_kit.legalize.rewrites import rewrite

INT8_LIMIT = 127  # TFLite's int8 weights: symmetric, zero point 0, values in [-127, 127]


@dataclass(frozen=True)
class Layer:
    """A weighted node whose bias can be corrected: its weights, the axis of their output channels, and the axes of
    its output that the mean is taken over (all but the channel axis)."""

    node: Any
    weights: np.ndarray
    channel_axis: int  # of the weights: the axis the quantizer scales per channel
    mean_axes: list[int]  # of the output


def int8_weight_error(weights: np.ndarray, channel_axis: int, per_tensor: bool = False) -> np.ndarray:
    """dequantize(quantize(W)) - W as the TFLite converter quantizes weights: symmetric int8 with scale
    max|W| / 127 per output channel (`channel_axis`) or for the whole tensor, rounded half away from zero."""
    w = weights.astype(np.float64)
    axes = None if per_tensor else tuple(axis for axis in range(w.ndim) if axis != channel_axis)
    scale = np.max(np.abs(w), axis=axes, keepdims=True) / INT8_LIMIT
    scale = np.where(scale > 0, scale, 1.0)  # an all-zero channel quantizes exactly
    steps = np.clip(np.sign(w) * np.floor(np.abs(w) / scale + 0.5), -INT8_LIMIT, INT8_LIMIT)
    return steps * scale - w


@rewrite(
    "bias_correction",
    "Conv, Gemm and MatMul with constant weights: the bias lowered by the mean shift that int8 weights cause in the "
    "layer's output on the calibration samples (Nagel et al., 2019); a quantization remedy, not exact",
    opt_in=True,
    exact=False,
)
def bias_correction(g: Graph) -> list[str]:
    if g.data is None:
        raise ValueError("bias_correction needs calibration samples: legalize(..., data=RemedyData(...))")
    layers = [layer for node in g.graph.node if (layer := weighted_layer(g, node)) is not None]
    shifts = mean_output_shifts(g, layers, g.data) if layers else []
    corrected = []
    for layer, shift in zip(layers, shifts, strict=True):
        if np.any(shift):
            _lower_bias(g, layer.node, shift.astype(np.float32))
            corrected.append(layer.node.name)
    return corrected


def weighted_layer(g: Graph, node: Any) -> Layer | None:
    """The node as a Layer: a Conv, Gemm or MatMul whose weights (input 1) are a float32 constant, whose input is
    computed, and whose bias is a constant or absent (a MatMul: 2-D weights on an input of known rank >= 2)."""
    if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2 or g.constant(node.input[0]) is not None:
        return None
    weights = g.constant(node.input[1])
    if weights is None or weights.dtype != np.float32 or not _bias_replaceable(g, node):
        return None
    if node.op_type == "Gemm":
        return Layer(node, weights, 0 if attribute(node, "transB", 0) else 1, [0])
    if node.op_type == "Conv":  # NCHW: the output has the weights' rank, its channels on axis 1
        return Layer(node, weights, 0, [a for a in range(weights.ndim) if a != 1])
    rank = len(g.shape(node.input[0]) or ())
    if weights.ndim != 2 or rank < 2:
        return None
    return Layer(node, weights, 1, list(range(rank - 1)))  # a MatMul's features are its last axis


def _bias_replaceable(g: Graph, node: Any) -> bool:
    """A MatMul gets its bias in an Add after it; Conv and Gemm need a constant bias or none (and Gemm a beta that
    does not zero it)."""
    if node.op_type == "MatMul":
        return True
    has_bias = len(node.input) > 2 and bool(node.input[2])
    beta = attribute(node, "beta", 1.0) if node.op_type == "Gemm" else 1.0
    return beta != 0 and (not has_bias or g.constant(node.input[2]) is not None)


def mean_output_shifts(g: Graph, layers: list[Layer], data: RemedyData) -> list[np.ndarray]:
    """E[layer(x; dW)] per output channel over the calibration samples, for every layer in one pass: a copy of the
    model computes each layer's output shift beside it, averaged per sample in the graph (onnxruntime returns one
    vector per layer and sample, never the activations)."""
    # Imported here: compiler_kit.compare imports the recipe module, which imports the legalization registry.
    from compiler_kit.compare.source_names import onnx_intermediates

    probe = copy.deepcopy(g.model)
    wanted = [_probe(g, probe, layer, data.per_tensor_weights) for layer in layers]
    try:
        runs = onnx_intermediates(probe, wanted, data.samples)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException types
        raise BadInputError(
            f"onnxruntime cannot run the model with the bias correction's probes ({describe_exception(exc)})",
            fix="build without legalize.bias_correction (and report the model)",
        ) from None
    if not runs:
        raise BadInputError("bias correction got no calibration samples", fix="check calibration.data")
    return [np.mean([run[name] for run in runs], axis=0, dtype=np.float64) for name in wanted]


def _probe(g: Graph, probe: Any, layer: Layer, per_tensor: bool) -> str:
    """In `probe` (a copy of g's model): the layer's op on the layer's input with the int8 weight error for weights
    and no bias, then its mean over `layer.mean_axes`; returns the mean's name."""
    from onnx import helper, numpy_helper

    node = layer.node
    base = node.name or node.op_type
    error = int8_weight_error(layer.weights, layer.channel_axis, per_tensor).astype(layer.weights.dtype)
    weights, shift, mean = (g.fresh(f"{base}_{part}") for part in ("weight_error", "shift", "mean_shift"))
    probe.graph.initializer.append(numpy_helper.from_array(error, weights))
    attributes = {a.name: attribute(node, a.name) for a in node.attribute}  # Gemm's beta has no C to scale here
    probe.graph.node.append(helper.make_node(node.op_type, [node.input[0], weights], [shift], shift, **attributes))
    probe.graph.node.append(_reduce_mean(g, probe, shift, layer.mean_axes, mean))
    return mean


def _reduce_mean(g: Graph, probe: Any, x: str, axes: list[int], out: str) -> Any:
    """ReduceMean over `axes`, which are dropped: an input from opset 18 on, an attribute before."""
    from onnx import helper, numpy_helper

    if g.opset < 18:
        return helper.make_node("ReduceMean", [x], [out], out, axes=axes, keepdims=0)
    axes_name = g.fresh(f"{out}_axes")
    probe.graph.initializer.append(numpy_helper.from_array(np.asarray(axes, dtype=np.int64), axes_name))
    return helper.make_node("ReduceMean", [x, axes_name], [out], out, keepdims=0)


def _lower_bias(g: Graph, node: Any, shift: np.ndarray) -> None:
    """The node's bias lowered by `shift` (per output channel); a bias of zeros first where it has none."""
    base = node.name or node.op_type
    if node.op_type == "MatMul":
        _add_after(g, node, -shift, base)
        return
    has_bias = len(node.input) > 2 and bool(node.input[2])
    bias = g.constant(node.input[2]) if has_bias else None
    beta = attribute(node, "beta", 1.0) if node.op_type == "Gemm" else 1.0  # Gemm adds beta * C
    lowered = (np.zeros_like(shift) if bias is None else bias) - shift / np.float32(beta)
    name = g.add_constant(f"{base}_corrected_bias", lowered.astype(np.float32))
    if len(node.input) > 2:
        node.input[2] = name
    else:
        node.input.append(name)


def _add_after(g: Graph, node: Any, bias: np.ndarray, base: str) -> None:
    """`bias` added to a MatMul's output: into the constant of the Add that follows it when that keeps its shape
    (a [N] or [1, N] bias, as exporters write a Linear layer), else in a new Add."""
    consumer = g.single_consumer(node.output[0])
    if consumer is not None and consumer.op_type == "Add":
        position = 1 - list(consumer.input).index(node.output[0])
        value = g.constant(consumer.input[position])
        if value is not None and value.dtype == np.float32 and _keeps_shape(value, bias):
            consumer.input[position] = g.add_constant(f"{base}_corrected_bias", value + bias)
            return
    output = node.output[0]
    node.output[0] = g.fresh(f"{base}_uncorrected")
    g.insert_after(node, "Add", [node.output[0], g.add_constant(f"{base}_bias", bias)], [output], f"{base}_bias")


def _keeps_shape(value: np.ndarray, bias: np.ndarray) -> bool:
    try:
        return np.broadcast_shapes(value.shape, bias.shape) == value.shape
    except ValueError:  # the shapes do not broadcast
        return False
