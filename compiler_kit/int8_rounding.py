"""GPTQ weight rounding of the int8 model (`calibration.weight_rounding: gptq`), a quantization remedy.

The converter rounds every weight to its nearest int8 step, each on its own. What a layer computes is W x, not W:
rounding errors that cancel over the inputs a layer actually sees cost nothing, and where a layer's inputs are
correlated (neighbouring pixels, channels that move together) most of the output error of nearest rounding can be
cancelled by rounding the other weights of the same output the other way. GPTQ (Frantar et al., 2023, "GPTQ:
Accurate Post-Training Quantization for Generative Pre-trained Transformers", after Optimal Brain Quantization)
does this in closed form: it rounds one input column at a time and spreads each rounding error over the columns not
yet rounded, weighted by the inverse of the layer's input Hessian H = sum of x x^T over the calibration inputs.

Here it runs on the converter's own int8 model: the scales (per channel or per tensor) and the zero points stay as
the converter chose them, only the int8 weights of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED change (the
model keeps its ops, compiles as before and stays fully int8); the float model's weights are the target, and H
comes from the int8 model's own inputs to each layer (as the layer will see them, int8 noise included). A
depthwise convolution has one H per channel (each channel sees its own input).

Two guards (README): an input that is zero on every calibration sample keeps its weights (nearest rounding),
never zeroed, since unseen data may use it (zeroing them cost EfficientNet-Lite0 9 dB on other photos); and a layer
seen at fewer input rows than it has weights per output (a classifier's head on 32 images) keeps nearest rounding,
since its H is singular there and the damping alone would decide. Asking for more rows per weight was measured and
lost (8 rows per weight against 1: rapidocr_cls 16.2 against 16.6 dB, EfficientNet-Lite0 23.2 against 23.7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler_kit.compare.layers import TensorGraph, match_activations
from compiler_kit.int8_bias import NotCorrectable
from compiler_kit.progress import NO_TASK, Task
from compiler_kit.runners.litert import dequantize_values
from compiler_kit.tflite_edit import packed, tensor_data, write_tensor_data

SUMMARY = (
    "int8 model (calibration.weight_rounding: gptq): the int8 weights of each CONV_2D, DEPTHWISE_CONV_2D and "
    "FULLY_CONNECTED rounded by GPTQ against the layer's inputs on the calibration samples (Frantar et al., 2023), "
    "scales unchanged; the float model does not move"
)
ROUNDED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
MIN_ROWS_PER_WEIGHT = 1
MAX_ROWS = 100_000  # input rows per layer kept for H, drawn evenly from every sample
DAMPING = 0.01  # of H's mean diagonal, added to its diagonal (GPTQ's default)
BLOCK = 128  # columns rounded before the rest are updated at once (GPTQ's lazy batch update)
HESSIAN_BYTES = 1 << 30  # the Hessians accumulated in one pass over the samples


@dataclass(frozen=True)
class WeightedLayer:
    """A layer of the int8 model whose weights may be re-rounded, and where its float weights are."""

    name: str
    op: int  # index of the op in the int8 model
    kind: str
    input: int
    weights: int
    float_weights: int
    geometry: tuple[int, ...]  # (kernel h, kernel w, stride h, stride w, dilation h, dilation w, same padding)

    def inputs_per_row(self, channels: int) -> int:
        """The weights of one output: kernel h x w, times the input channels unless depthwise."""
        kernel = self.geometry[0] * self.geometry[1]
        return kernel if self.kind == "DEPTHWISE_CONV_2D" else kernel * channels


def round_weights(
    float_tflite: bytes, int8_tflite: bytes, samples: Sequence[np.ndarray], threads: int = 1, task: Task = NO_TASK
) -> tuple[bytes, list[str]]:
    """The int8 model with its weights rounded by GPTQ on `samples` (in the TFLite models' input layout), and the
    names of the layers whose weights changed. `task` advances once per layer. NotCorrectable: a model of several
    inputs."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        float_graph, int8_graph = TensorGraph(float_tflite, threads), TensorGraph(int8_tflite, threads)
    except ValueError as exc:  # a model of several inputs: TensorGraph feeds one
        raise NotCorrectable(str(exc)) from None
    model = schema.ModelT.InitFromPackedBuf(int8_tflite, 0)
    layers = weighted_layers(float_graph, int8_graph, model)
    rounded = []
    for chunk in _chunks(layers, int8_graph):
        hessians = _hessians(int8_graph, chunk, samples)
        for layer in chunk:
            if _round_layer(model, float_graph, layer, *hessians[layer.op]):
                rounded.append(layer.name)
            task.advance()
    return packed(model), rounded


def weighted_layers(float_graph: TensorGraph, int8_graph: TensorGraph, model: Any) -> list[WeightedLayer]:
    """The int8 model's weighted ops with int8 weights whose float counterpart has float weights of the same
    shape, in execution order."""
    pairs, _ = match_activations(float_graph, int8_graph)
    counterpart = {pair.int8_index: pair.float_index for pair in pairs}
    layers = []
    for op in int8_graph.ops:
        output, weights = int(op["outputs"][0]), int(op["inputs"][1]) if len(op["inputs"]) > 1 else -1
        float_op = float_graph.producer.get(counterpart.get(output, -1))
        if op["op_name"] not in ROUNDED_OPS or float_op is None or weights < 0:
            continue
        float_weights = int(float_op["inputs"][1])
        if np.dtype(int8_graph.tensors[weights]["dtype"]) != np.int8 or not _same_shape(
            float_graph, float_weights, int8_graph, weights
        ):
            continue
        options = model.subgraphs[0].operators[op["index"]].builtinOptions
        geometry = _geometry(op["op_name"], options, int8_graph.shape(weights))
        name = int8_graph.tensors[output]["name"]
        layers.append(
            WeightedLayer(name, op["index"], op["op_name"], int(op["inputs"][0]), weights, float_weights, geometry)
        )
    return layers


def _same_shape(float_graph: TensorGraph, float_index: int, int8_graph: TensorGraph, int8_index: int) -> bool:
    detail = float_graph.tensors[float_index]
    return np.dtype(detail["dtype"]) == np.float32 and float_graph.shape(float_index) == int8_graph.shape(int8_index)


def _geometry(kind: str, options: Any, weight_shape: tuple[int, ...]) -> tuple[int, ...]:
    if kind == "FULLY_CONNECTED":
        return (1, 1, 1, 1, 1, 1, 0)
    from ai_edge_litert import schema_py_generated as schema

    same = int(options.padding == schema.Padding.SAME)
    strides = (options.strideH, options.strideW, options.dilationHFactor, options.dilationWFactor)
    return (weight_shape[1], weight_shape[2], *strides, same)


def _chunks(layers: list[WeightedLayer], graph: TensorGraph) -> list[list[WeightedLayer]]:
    """The layers in groups whose Hessians fit HESSIAN_BYTES together: one pass over the samples per group."""
    chunks: list[list[WeightedLayer]] = [[]]
    used = 0
    for layer in layers:
        channels = graph.shape(layer.input)[-1]
        size = layer.inputs_per_row(channels) ** 2 * 8 * (channels if layer.kind == "DEPTHWISE_CONV_2D" else 1)
        if chunks[-1] and used + size > HESSIAN_BYTES:
            chunks.append([])
            used = 0
        chunks[-1].append(layer)
        used += size
    return [chunk for chunk in chunks if chunk]


def _hessians(
    graph: TensorGraph, layers: list[WeightedLayer], samples: Sequence[np.ndarray]
) -> dict[int, tuple[np.ndarray, int]]:
    """Per layer (by op): H over its inputs on `samples` ([d, d], or [channels, d, d] for a depthwise layer) and
    how many input rows it holds."""
    rng = np.random.default_rng(0)
    rows_per_sample = max(1, MAX_ROWS // max(1, len(samples)))
    found: dict[int, tuple[np.ndarray, int]] = {}
    for sample in samples:
        values = graph.run(sample, {layer.input for layer in layers})
        for layer in layers:
            x = dequantize_values(values[layer.input], graph.tensors[layer.input])
            patches = _patches(x, layer, rows_per_sample, rng)  # rows x kernel x channels
            if layer.kind == "DEPTHWISE_CONV_2D":
                h = np.einsum("rkc,rlc->ckl", patches, patches)
            else:
                flat = patches.reshape(len(patches), -1)
                h = flat.T @ flat
            previous, rows = found.get(layer.op, (0.0, 0))
            found[layer.op] = (previous + h, rows + len(patches))
    return found


def _patches(x: np.ndarray, layer: WeightedLayer, rows: int, rng: np.random.Generator) -> np.ndarray:
    """The layer's input windows (rows x kernel h*w x channels, float64), at most `rows` of them drawn at random,
    in the weights' order (kernel row, kernel column, channel)."""
    kh, kw, sh, sw, dh, dw, same = layer.geometry
    if layer.kind == "FULLY_CONNECTED":
        flat = x.reshape(-1, x.shape[-1])
        return flat[_draw(len(flat), rows, rng), None, :].astype(np.float64)
    _, height, width, _ = x.shape
    pad_h, pad_w = (_same_padding(height, kh, sh, dh), _same_padding(width, kw, sw, dw)) if same else ((0, 0), (0, 0))
    x = np.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    out_h = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
    out_w = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    chosen = _draw(x.shape[0] * out_h * out_w, rows, rng)
    n, oy, ox = np.unravel_index(chosen, (x.shape[0], out_h, out_w))
    ky, kx = np.meshgrid(np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
    ys = (oy * sh)[:, None] + ky.ravel()[None, :]
    xs = (ox * sw)[:, None] + kx.ravel()[None, :]
    return x[n[:, None], ys, xs, :].astype(np.float64)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: the output has ceil(size / stride) positions, the extra row after."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _draw(count: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(count) if count <= rows else np.sort(rng.choice(count, rows, replace=False))


def _round_layer(model: Any, float_graph: TensorGraph, layer: WeightedLayer, hessian: np.ndarray, rows: int) -> bool:
    """Re-round one layer's int8 weights by GPTQ; False when the layer keeps nearest rounding (too few rows) or
    GPTQ rounds every weight as nearest rounding does."""
    if rows < MIN_ROWS_PER_WEIGHT * hessian.shape[-1]:
        return False
    tensor = model.subgraphs[0].tensors[layer.weights]
    quantization = tensor.quantization
    shape = tuple(tensor.shape)
    axis = 3 if layer.kind == "DEPTHWISE_CONV_2D" else 0  # the output channels: TFLite's per-channel axis
    target = np.moveaxis(float_graph.interpreter.get_tensor(layer.float_weights).astype(np.float64), axis, 0)
    rows_first = target.reshape(target.shape[0], -1)  # [outputs, inputs per output] in the weights' order
    scales = np.broadcast_to(np.asarray(quantization.scale, np.float64), (rows_first.shape[0],))
    if layer.kind == "DEPTHWISE_CONV_2D":  # output channel c reads input channel c // multiplier
        hessian = hessian[np.arange(rows_first.shape[0]) // (rows_first.shape[0] // hessian.shape[0])]
    rounded = gptq(rows_first, scales, _inverse_factor(hessian))
    weights = np.moveaxis(rounded.reshape(target.shape), 0, axis).reshape(shape).astype(np.int8)
    if np.array_equal(weights, tensor_data(model, layer.weights, np.int8).reshape(shape)):
        return False
    write_tensor_data(model, layer.weights, weights)
    return True


def _inverse_factor(hessian: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor U of H^-1 (H^-1 = U^T U), H damped; one per matrix of a stack. Inputs never seen
    (a zero diagonal) get a unit diagonal: they keep nearest rounding and take no error from others."""
    hessian = hessian.copy()
    diagonal = np.diagonal(hessian, axis1=-2, axis2=-1)
    unseen = diagonal == 0
    damping = DAMPING * np.mean(diagonal, axis=-1, keepdims=True)
    size = hessian.shape[-1]
    hessian[..., range(size), range(size)] = np.where(unseen, 1.0, diagonal + np.maximum(damping, 1e-12))
    return np.swapaxes(np.linalg.cholesky(np.linalg.inv(hessian)), -1, -2)


def gptq(weights: np.ndarray, scales: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """The int8 values (narrow range, as TFLite's weights) of `weights` [outputs, inputs] at `scales` [outputs], each
    input column rounded in turn and its error spread over the columns after it by `factor` (U: [inputs, inputs]
    shared by every output, or [outputs, inputs, inputs], one per output)."""
    weights = weights.copy()
    result = np.zeros_like(weights)
    columns = weights.shape[1]
    for start in range(0, columns, BLOCK):
        end = min(start + BLOCK, columns)
        errors = np.zeros((weights.shape[0], end - start))
        for i in range(start, end):
            result[:, i] = np.clip(np.round(weights[:, i] / scales), -127, 127)
            errors[:, i - start] = (weights[:, i] - result[:, i] * scales) / factor[..., i, i]
            weights[:, i + 1 : end] -= errors[:, i - start, None] * factor[..., i, i + 1 : end]
        if factor.ndim == 2:
            weights[:, end:] -= errors @ factor[start:end, end:]
        else:
            weights[:, end:] -= np.einsum("ob,obd->od", errors, factor[:, start:end, end:])
    return result
