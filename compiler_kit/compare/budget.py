"""The quantization error budget: how much of the int8 model's error each part of quantization causes.

Three variants of the float TFLite model each take ONE part of the int8 model's quantization, exactly as the int8
model has it (its own scales and zero points, read from it):
  - input: each sample is quantized and dequantized with the int8 model's input parameters before the float model;
  - weights: each weighted op's float weights and bias are replaced by the int8 model's, dequantized;
  - activations: a QUANTIZE/DEQUANTIZE pair follows every activation the int8 model quantizes (the model's input
    excepted: that is the input term), with that activation's parameters.
Each variant runs on the first BUDGET_SAMPLES verification samples; its SNR against the float model there, per
output, is that term's cost, set beside the int8 model's SNR on the same samples.
Independent errors add in power, so the terms combine to -10 log10(sum of 10^(-SNR/10)); the full int8 model's
SNR should be near that. The term with the lowest SNR dominates, and it says which remedy to reach for.

The int8 activations are paired with float ones by compiler_kit.compare.layers' matching rule; an int8 activation
with no float counterpart is left out of the activations term (the report counts them).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.compare.layers import TensorGraph, match_activations
from compiler_kit.compare.metrics import SNR_CEILING_DB, snr_db
from compiler_kit.frontends.base import FloatModel
from compiler_kit.runners.litert import LiteRtRunner, TensorCodec
from compiler_kit.tflite_edit import packed

TERMS = ("input", "weights", "activations")
BUDGET_SAMPLES = 32  # verification samples the budget runs (the first ones): an estimate, not the verdict
# The ops whose constant inputs the int8 model quantizes as weights: (weights position, bias position).
WEIGHTED_OPS = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2), "TRANSPOSE_CONV": (1, 3)}
REMEDIES = {
    "input": "the int8 input grid is coarse for the input's values: normalize the input so its values span the "
    "range evenly, without far outliers (calibration.preprocess), as the model was trained",
    "weights": "weights with outliers lose precision: keep per-channel weights (quantization.granularity: "
    "per-channel); the worst layers show where, and retraining with weight decay or clipping tightens them",
    "activations": "activation ranges come from calibration: calibrate on more, representative samples "
    "(calibration.num_samples), and bounded activations (ReLU6) in the model keep the ranges tight; the worst "
    "layers show where",
}
Outputs = dict[str, np.ndarray]  # output name -> one array over the samples


@dataclass(frozen=True)
class Int8Parameters:
    """What the int8 model quantizes, by the float model's tensor index: activations (scale, zero point) and the
    weighted ops' dequantized weights and biases."""

    activations: dict[int, tuple[float, int]]
    constants: dict[int, np.ndarray]
    input_codec: TensorCodec | None  # the int8 model's quantization of its input (None: not quantized)
    unmatched: int  # int8 activations with no float counterpart


def int8_parameters(float_tflite: Path, int8_tflite: Path) -> Int8Parameters:
    float_graph, int8_graph = TensorGraph(float_tflite, 1), TensorGraph(int8_tflite, 1)
    pairs, unmatched = match_activations(float_graph, int8_graph)
    float_inputs = {d["index"] for d in float_graph.inputs}
    activations: dict[int, tuple[float, int]] = {}
    input_codec = None
    for pair in pairs:
        detail = int8_graph.tensors[pair.int8_index]
        if pair.float_index in float_inputs:
            input_codec = input_codec or TensorCodec.of(detail)
            continue
        scale, zero_point = detail["quantization"]
        activations.setdefault(pair.float_index, (float(scale), int(zero_point)))
    constants = _weights(float_graph, int8_graph, {pair.float_index: pair.int8_index for pair in pairs})
    return Int8Parameters(activations, constants, input_codec, len(unmatched))


def _weights(float_graph: TensorGraph, int8_graph: TensorGraph, counterpart: dict[int, int]) -> dict[int, np.ndarray]:
    """The float weights and biases of each weighted op, as the int8 model holds them (dequantized), by the float
    model's tensor index; ops are paired through their matched outputs."""
    constants: dict[int, np.ndarray] = {}
    for float_op in float_graph.ops:
        positions = WEIGHTED_OPS.get(float_op["op_name"])
        int8_output = counterpart.get(int(float_op["outputs"][0]))
        int8_op = int8_graph.producer.get(int8_output) if int8_output is not None else None
        if positions is None or int8_op is None or int8_op["op_name"] != float_op["op_name"]:
            continue
        for position in positions:
            if position >= len(float_op["inputs"]) or position >= len(int8_op["inputs"]):
                continue
            float_index, int8_index = int(float_op["inputs"][position]), int(int8_op["inputs"][position])
            if min(float_index, int8_index) < 0:
                continue  # an omitted optional input (no bias)
            values = _dequantized_constant(int8_graph, int8_index)
            if values is not None and values.shape == float_graph.shape(float_index):
                constants[float_index] = values
    return constants


def _dequantized_constant(graph: TensorGraph, index: int) -> np.ndarray | None:
    """A quantized constant (per-tensor or per-channel) as float32; None when it is not a quantized constant."""
    detail = graph.tensors[index]
    parameters = detail.get("quantization_parameters") or {}
    scales = np.asarray(parameters.get("scales", []), dtype=np.float64)
    if not scales.size or not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return None
    try:
        values = graph.interpreter.get_tensor(index).astype(np.float64)
    except ValueError:  # not readable: not a constant
        return None
    zero_points = np.asarray(parameters.get("zero_points", [0]), dtype=np.float64)
    axis = int(parameters.get("quantized_dimension", 0))
    return ((values - _along(zero_points, axis, values.ndim)) * _along(scales, axis, values.ndim)).astype(np.float32)


def _along(per_channel: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """Per-channel parameters shaped to broadcast along `axis`; one value broadcasts as it is."""
    if per_channel.size == 1:
        return per_channel.reshape(())
    shape = [1] * ndim
    shape[axis] = per_channel.size
    return per_channel.reshape(shape)


def with_weights(model: Any, constants: dict[int, np.ndarray]) -> None:
    """The float model (schema.ModelT) with the given constants' buffers replaced."""
    tensors = model.subgraphs[0].tensors
    for index, values in constants.items():
        buffer = model.buffers[tensors[index].buffer]
        buffer.data = np.frombuffer(values.astype("<f4").tobytes(), dtype=np.uint8)
        buffer.offset, buffer.size = 0, 0


def with_activations_quantized(model: Any, activations: dict[int, tuple[float, int]]) -> None:
    """The float model (schema.ModelT) with a QUANTIZE/DEQUANTIZE pair (int8) after each listed activation; every
    reader of the activation, the subgraph's outputs and the signatures read the dequantized copy instead."""
    from ai_edge_litert import schema_py_generated as schema

    subgraph = model.subgraphs[0]
    quantize_code = _opcode(model, schema.BuiltinOperator.QUANTIZE)
    dequantize_code = _opcode(model, schema.BuiltinOperator.DEQUANTIZE)
    operators: list[Any] = []
    replaced: dict[int, int] = {}  # activation -> its dequantized copy
    for op in subgraph.operators:
        op.inputs = [replaced.get(int(i), int(i)) for i in op.inputs]
        operators.append(op)
        for output in (int(t) for t in op.outputs):
            if output not in activations:
                continue
            quantized = _add_tensor(subgraph, output, schema.TensorType.INT8, "fake_quant", activations[output])
            dequantized = _add_tensor(subgraph, output, schema.TensorType.FLOAT32, "fake_dequant", None)
            operators += [
                _operator(quantize_code, output, quantized),
                _operator(dequantize_code, quantized, dequantized),
            ]
            replaced[output] = dequantized
    subgraph.operators = operators
    subgraph.outputs = [replaced.get(int(t), int(t)) for t in subgraph.outputs]
    for signature in model.signatureDefs or []:
        for tensor_map in signature.outputs or []:
            tensor_map.tensorIndex = replaced.get(tensor_map.tensorIndex, tensor_map.tensorIndex)


def _opcode(model: Any, builtin: int) -> int:
    from ai_edge_litert import schema_py_generated as schema

    for position, code in enumerate(model.operatorCodes):
        if max(code.deprecatedBuiltinCode, code.builtinCode) == builtin:
            code.version = max(code.version, 2)  # version 2: int8 (version 1 knows uint8 only)
            return position
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, builtin, 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _add_tensor(subgraph: Any, like: int, dtype: int, suffix: str, parameters: tuple[float, int] | None) -> int:
    from ai_edge_litert import schema_py_generated as schema

    original = subgraph.tensors[like]
    tensor = schema.TensorT()
    tensor.shape, tensor.shapeSignature = original.shape, original.shapeSignature
    tensor.type, tensor.buffer = dtype, 0  # buffer 0: the empty buffer every TFLite model starts with
    name = original.name.decode() if isinstance(original.name, bytes) else str(original.name)
    tensor.name = f"{name}/{suffix}"
    if parameters is not None:
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [parameters[0]], [parameters[1]]
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _operator(opcode: int, source: int, target: int) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, [source], [target]
    return op


def _edited(float_tflite: Path, edit: Callable[[Any], None], target: Path) -> Path:
    """A copy of the float model with `edit` applied to its object tree, written to `target`."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(float_tflite.read_bytes(), 0)
    edit(model)
    target.write_bytes(packed(model))
    return target


def _run_outputs(runner: LiteRtRunner, samples: Iterable[np.ndarray], input_name: str, count: int) -> Outputs:
    """The runner's outputs on `count` samples, by output name (one float32 array each, allocated once)."""
    runner.prepare()
    outputs: Outputs = {}
    for position, sample in enumerate(samples):
        for name, y in runner.infer({input_name: sample}).items():
            if name not in outputs:
                outputs[name] = np.empty((count, *y.shape[1:]), dtype=np.float32)
            outputs[name][position] = y[0]
    return outputs


def combined_db(terms: Iterable[float]) -> float:
    """Independent errors add in power: the SNR the terms together predict."""
    noise = sum(10 ** (-snr / 10) for snr in terms)
    return SNR_CEILING_DB if noise == 0 else float(min(SNR_CEILING_DB, -10 * math.log10(noise)))


@dataclass(frozen=True)
class Probe:
    """What the error budget and the calibration curve measure with: the verification samples in the source layout
    (`samples()` yields them from the start each time; `count` of them), the float model's layout, and the outputs
    of the float TFLite model (`reference`) and of the int8 one on those samples."""

    float_model: FloatModel
    samples: Callable[[], Iterable[np.ndarray]]
    count: int
    input_name: str
    reference: Outputs
    int8: Outputs
    threads: int = 1

    def first(self, count: int = BUDGET_SAMPLES) -> Probe:
        """The same probe on the first `count` samples only (more float passes over a large set cost more than the
        estimates gain)."""
        count = min(count, self.count)
        samples = self.samples
        return dataclasses.replace(
            self,
            samples=lambda: itertools.islice(samples(), count),
            count=count,
            reference={name: y[:count] for name, y in self.reference.items()},
            int8={name: y[:count] for name, y in self.int8.items()},
        )

    def outputs(self, name: str, model: Path, samples: Iterable[np.ndarray] | None = None) -> Outputs:
        """`model`'s outputs (a float-layout TFLite model) on the probe's samples, or on `samples` instead."""
        runner = LiteRtRunner(name, model, self.threads, self.float_model.input_perms, self.float_model.outputs)
        return _run_outputs(runner, self.samples() if samples is None else samples, self.input_name, self.count)


def error_budget(float_tflite: Path, int8_tflite: Path, probe: Probe) -> dict[str, Any]:
    """The budget for the report: per output the SNR of each term, what they combine to and the int8 model's own
    SNR (all against the probe's reference, the float TFLite model's outputs), and the dominant term of the worst
    output with its remedy; on the probe's first BUDGET_SAMPLES samples."""
    probe = probe.first()
    parameters = int8_parameters(float_tflite, int8_tflite)
    codec = parameters.input_codec
    with tempfile.TemporaryDirectory(prefix="ckit-budget-") as scratch:
        folder = Path(scratch)
        weights = _edited(float_tflite, lambda m: with_weights(m, parameters.constants), folder / "weights.tflite")
        activations = _edited(
            float_tflite, lambda m: with_activations_quantized(m, parameters.activations), folder / "act.tflite"
        )
        fed = (codec.decode(codec.encode(x)) for x in probe.samples()) if codec else None
        variants = {
            "input": probe.outputs("budget-input", float_tflite, fed),
            "weights": probe.outputs("budget-weights", weights),
            "activations": probe.outputs("budget-act", activations),
        }
    outputs: dict[str, dict[str, Any]] = {}
    for name, expected in probe.reference.items():
        terms = {term: snr_db(expected, variants[term][name]) for term in TERMS}
        outputs[name] = {
            **{f"{term}_db": value for term, value in terms.items()},
            "combined_db": combined_db(terms.values()),
            "int8_db": snr_db(expected, probe.int8[name]),
            "dominant": min(terms, key=terms.__getitem__),
        }
    worst = min(outputs, key=lambda name: float(outputs[name]["int8_db"]))
    dominant: str = outputs[worst]["dominant"]
    return {
        "reference": "tflite-float",
        "samples": probe.count,
        "outputs": outputs,
        "worst_output": worst,
        "dominant": dominant,
        "remedy": REMEDIES[dominant],
        "weights_replaced": len(parameters.constants),
        "activations_quantized": len(parameters.activations),
        "activations_unmatched": parameters.unmatched,
    }
