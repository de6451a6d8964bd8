"""Per-layer drift: where in the int8 model the error appears, and how much of it each layer adds.

The float and the int8 TFLite models run on the same samples with every intermediate tensor kept; each quantized
activation of the int8 model (the model's inputs and every op output with an integer type and a scale) is
dequantized with its own scale and zero point and compared with its float counterpart.

Matching rule, per int8 activation, first that applies:
  1. "input": a model input pairs with the float model's input at the same position (converters rename inputs);
  2. "name": the float model has an activation of that exact tensor name and the same shape (the TF converter
     keeps names such as `sequential_1/conv2d_1/Relu`);
  3. "quantize": a QUANTIZE op (float -> int, or a requantization) only changes the representation, so its
     output pairs with its input's counterpart;
  4. "op": otherwise by the producing op: the k-th not yet matched int8 op of a given type and output shape pairs
     with the k-th not yet matched float op of that type and output shape (execution order).
Whatever is left is unmatched: `layer_drift(...).unmatched` lists those tensor names.

Statistics accumulate over the samples in a few float64 sums per layer (signal power, squared error, element
count, max abs error): samples are read one at a time and never kept, so memory does not grow with their number.
Tensors are compared in the TFLite models' layout (both models share it); `input_perm` takes a source-layout
sample there. The default delegates (XNNPACK) are left out, so every intermediate tensor is really kept.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.compare.metrics import SNR_CEILING_DB
from compiler_kit.frontends.base import Perm
from compiler_kit.runners.litert import dequantize_values, quantize_values

INPUT_OP = "INPUT"  # the `op` of a layer that is a model input


@dataclass(frozen=True)
class LayerDrift:
    """One int8 activation against its float counterpart, over all samples."""

    name: str  # the int8 model's tensor name
    op: str  # the op producing it in the int8 model (INPUT for a model input)
    shape: list[int]
    snr_db: float  # 10 log10(signal power / error power), capped at +-SNR_CEILING_DB like metrics.snr_db
    rmse: float
    max_abs_error: float
    scale: float  # the tensor's quantization step
    error_steps: float  # rmse / scale: the error in quantization steps
    inherited_snr_db: float | None  # the worst SNR among the op's activation inputs; None when it has none
    added_db: float | None  # inherited_snr_db - snr_db: the drift this layer adds itself
    float_name: str  # the float model's tensor it was compared with
    matched_by: str  # "input", "name", "quantize" or "op" (see the module's matching rule)
    source_name: str | None = None  # the source model's layer (compare/source_names.py), when one was found
    clipped: float = 0.0  # share of the float values beyond the int8 tensor's range: its calibration saw less

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LayerDrifts(list[LayerDrift]):
    """The layers in execution order, plus the int8 activations that found no float counterpart."""

    def __init__(self, layers: Iterable[LayerDrift] = (), unmatched: Iterable[str] = ()) -> None:
        super().__init__(layers)
        self.unmatched = list(unmatched)


def worst_layers(layers: Iterable[LayerDrift], n: int = 5) -> list[LayerDrift]:
    """The `n` layers of lowest SNR, worst first (ties keep execution order)."""
    return sorted(layers, key=lambda layer: layer.snr_db)[:n]


@dataclass
class ActivationPair:
    """One matched activation and its running sums."""

    int8_index: int
    float_index: int
    op: str
    matched_by: str
    activation_inputs: list[int]  # int8 tensor indices
    representable: tuple[float, float] = (-math.inf, math.inf)  # the int8 tensor's range, half a step beyond
    signal: float = 0.0
    squared_error: float = 0.0
    count: int = 0
    max_abs_error: float = 0.0
    clipped: int = 0

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        reference = reference.astype(np.float64).ravel()
        error = reference - candidate.astype(np.float64).ravel()
        self.signal += float(np.dot(reference, reference))
        self.squared_error += float(np.dot(error, error))
        self.count += error.size
        low, high = self.representable
        self.clipped += int(np.count_nonzero((reference < low) | (reference > high)))
        if error.size:
            self.max_abs_error = max(self.max_abs_error, float(np.max(np.abs(error))))

    def snr_db(self) -> float:
        if self.squared_error == 0:
            return SNR_CEILING_DB
        if self.signal == 0:
            return -SNR_CEILING_DB
        return float(min(SNR_CEILING_DB, 10 * math.log10(self.signal / self.squared_error)))


class TensorGraph:
    """A TFLite model in an interpreter that keeps every tensor: its ops in execution order and its tensors."""

    def __init__(self, model: Path | bytes, threads: int) -> None:
        interpreter_class, _ = lazy.litert_interpreter()
        resolver = sys.modules[interpreter_class.__module__].OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        where = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
        self.interpreter = interpreter_class(
            **where,
            num_threads=threads,
            experimental_op_resolver_type=resolver,
            experimental_preserve_all_tensors=True,
        )
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        if len(self.inputs) != 1:
            name = "the model" if isinstance(model, bytes) else model.name
            raise ValueError(f"{name} has {len(self.inputs)} inputs; per-layer drift takes single-input models")
        self.tensors = {d["index"]: d for d in self.interpreter.get_tensor_details()}
        self.ops = [op for op in self.interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
        self.producer = {int(t): op for op in self.ops for t in op["outputs"]}
        # Activations: model inputs, then op outputs in execution order (dict: ordered, no duplicates).
        self.activations = dict.fromkeys(
            [d["index"] for d in self.inputs] + [int(t) for op in self.ops for t in op["outputs"]]
        )

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(int(n) for n in self.tensors[index]["shape"])

    def op_name(self, index: int) -> str:
        op = self.producer.get(index)
        return INPUT_OP if op is None else op["op_name"]

    def is_quantized(self, index: int) -> bool:
        detail = self.tensors[index]
        return np.issubdtype(np.dtype(detail["dtype"]), np.integer) and detail["quantization"][0] != 0

    def run(self, sample: np.ndarray, wanted: Iterable[int]) -> dict[int, np.ndarray]:
        detail = self.inputs[0]
        self.interpreter.set_tensor(detail["index"], quantize_values(sample, detail))
        self.interpreter.invoke()
        return {index: self.interpreter.get_tensor(index) for index in wanted}


def match_activations(float_graph: TensorGraph, int8_graph: TensorGraph) -> tuple[list[ActivationPair], list[str]]:
    """Pair every quantized activation of the int8 model with a float activation (the module's rule)."""
    float_by_name = {float_graph.tensors[t]["name"]: t for t in float_graph.activations}
    float_inputs = [d["index"] for d in float_graph.inputs]
    # (op type, output shape) -> the float model's op outputs of that kind, in execution order.
    float_by_op: dict[tuple[str, tuple[int, ...]], list[int]] = defaultdict(list)
    for op in float_graph.ops:
        for t in op["outputs"]:
            float_by_op[(op["op_name"], float_graph.shape(int(t)))].append(int(t))

    counterpart: dict[int, tuple[int, str]] = {}  # int8 tensor -> (float tensor, how), float or quantized
    taken: set[int] = set()
    for position, detail in enumerate(int8_graph.inputs):
        if position < len(float_inputs):
            counterpart[detail["index"]] = (float_inputs[position], "input")
    for op in int8_graph.ops:
        for t in (int(t) for t in op["outputs"]):
            name, shape = int8_graph.tensors[t]["name"], int8_graph.shape(t)
            by_name = float_by_name.get(name)
            if by_name is not None and float_graph.shape(by_name) == shape:
                counterpart[t] = (by_name, "name")
            elif op["op_name"] == "QUANTIZE" and int(op["inputs"][0]) in counterpart:
                counterpart[t] = (counterpart[int(op["inputs"][0])][0], "quantize")
            if t in counterpart:
                taken.add(counterpart[t][0])
    for op in int8_graph.ops:  # by op, once the names have claimed their tensors
        for t in (int(t) for t in op["outputs"]):
            if t in counterpart:
                continue
            candidates = [f for f in float_by_op.get((op["op_name"], int8_graph.shape(t)), []) if f not in taken]
            if candidates:
                counterpart[t] = (candidates[0], "op")
                taken.add(candidates[0])

    pairs, unmatched = [], []
    for t in int8_graph.activations:
        if not int8_graph.is_quantized(t):
            continue
        if t not in counterpart or float_graph.shape(counterpart[t][0]) != int8_graph.shape(t):
            unmatched.append(int8_graph.tensors[t]["name"])
            continue
        op = int8_graph.producer.get(t)
        inputs = [] if op is None else [int(i) for i in op["inputs"] if int(i) in int8_graph.activations]
        float_index, how = counterpart[t]
        pairs.append(ActivationPair(t, float_index, int8_graph.op_name(t), how, inputs, _representable(int8_graph, t)))
    return pairs, unmatched


def _representable(graph: TensorGraph, index: int) -> tuple[float, float]:
    """The float values an int8 tensor can hold, half a step wider on each side (what rounds into range)."""
    detail = graph.tensors[index]
    scale, zero_point = detail["quantization"]
    info = np.iinfo(np.dtype(detail["dtype"]))
    return (info.min - zero_point - 0.5) * scale, (info.max - zero_point + 0.5) * scale


def layer_drift(
    float_model: Path, int8_model: Path, samples: Iterable[np.ndarray], input_perm: Perm = None, threads: int = 1
) -> LayerDrifts:
    """Per-layer drift of `int8_model` against `float_model` over `samples` (single-input models, batch 1,
    source layout; `input_perm` takes them to the models' layout). Layers come in execution order."""
    float_graph, int8_graph = TensorGraph(Path(float_model), threads), TensorGraph(Path(int8_model), threads)
    pairs, unmatched = match_activations(float_graph, int8_graph)
    float_wanted = {pair.float_index for pair in pairs}
    int8_wanted = [pair.int8_index for pair in pairs]
    for sample in samples:  # one at a time: nothing of a sample outlives its iteration
        x = sample if input_perm is None else np.ascontiguousarray(sample.transpose(input_perm))
        x = np.asarray(x, dtype=np.float32)
        reference = float_graph.run(x, float_wanted)
        candidate = int8_graph.run(x, int8_wanted)
        for pair in pairs:
            quantized = candidate[pair.int8_index]
            pair.add(reference[pair.float_index], dequantize_values(quantized, int8_graph.tensors[pair.int8_index]))
        del sample, x, reference, candidate  # so the next sample is the only one alive

    snr = {pair.int8_index: pair.snr_db() for pair in pairs if pair.count}
    layers = []
    for pair in pairs:
        if not pair.count:
            continue
        detail = int8_graph.tensors[pair.int8_index]
        scale = float(detail["quantization"][0])
        rmse = math.sqrt(pair.squared_error / pair.count)
        inherited = [snr[i] for i in pair.activation_inputs if i in snr]
        inherited_snr = min(inherited) if inherited else None
        layers.append(
            LayerDrift(
                name=detail["name"],
                op=pair.op,
                shape=list(int8_graph.shape(pair.int8_index)),
                snr_db=snr[pair.int8_index],
                rmse=rmse,
                max_abs_error=pair.max_abs_error,
                scale=scale,
                error_steps=rmse / scale,
                inherited_snr_db=inherited_snr,
                added_db=None if inherited_snr is None else inherited_snr - snr[pair.int8_index],
                float_name=float_graph.tensors[pair.float_index]["name"],
                matched_by=pair.matched_by,
                clipped=pair.clipped / pair.count,
            )
        )
    return LayerDrifts(layers, unmatched)
