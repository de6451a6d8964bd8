"""Edge TPU latency without a device: a cost model of one inference on a target = an interface and a host CPU.

    predicted = host overhead + TPU compute + parameter streaming + input/output transfer + host CPU part

Targets (TARGETS): "usb" (a USB Accelerator on an x86-64 desktop), "devboard" (the Dev Board: its Edge TPU on PCIe,
its host a quad-core Cortex-A53) and "pcie" (an M.2 / Mini PCIe card in an x86-64 desktop). Coral publishes figures
for the first two only; "pcie" is their composition (the PCIe link of the Dev Board, the desktop host of the USB
rows) and is never compared with a measurement.

- TPU compute: each mapped op's multiply-accumulates on the peak 4 TOPS array (2e12 MAC/s), divided by a
  utilisation. A convolution (and a fully connected layer) fills the 64x64 systolic array with its input and
  output channels: channel counts that are not multiples of 64 waste the rest of a pass, and a full array still
  reaches only conv_utilisation of its peak. A depthwise convolution has no input-channel reduction to spread
  over the array, so it uses it far worse: depthwise_utilisation. Every other mapped op (adds, pools,
  concatenations, reshapes) costs its output elements at elementwise_per_second.
- Parameter streaming: parameter bytes beyond the usable on-chip cache (hardware.ON_CHIP_CACHE_BYTES, from real
  compiler-16 logs) cross the interface on every inference at its bandwidth; so do the input and output tensors.
- Host: a fixed per-inference overhead (driver, invoke(), transfer set-up: slower on a slower CPU), and the ops the
  Edge TPU leaves to the CPU, ESTIMATED for the target's CPU from their sizes: multiply-accumulates at
  macs_per_second plus activation elements read and written at elements_per_second. Custom ops count too (a
  detection model's TFLite_Detection_PostProcess reads every box's class scores on the host). The rates are fitted
  on Coral's published CPU-only figures (the whole int8 model on the desktop CPU and on the Cortex-A53), the rest on
  the published Edge TPU figures: see benchmarks/edgetpu_fit.py and the README ("Edge TPU latency without a device").
  A prediction depends on the model file alone, never on this machine: the CPU part timed HERE with LiteRT is
  reported beside it (`cpu_part_here`), never inside it.

The constants between the FITTED markers are written by `python -m benchmarks.edgetpu_fit --write`. It is a
prediction, and every report labels it as one, with its leave-one-model-out error on Coral's published rows and its
error on the published rows no fit saw (segmentation, pose and detection models among them: larger).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.edgetpu.analysis import EdgeTpuPrediction
from compiler_kit.edgetpu.hardware import ARRAY_SIDE, PEAK_MACS_PER_SECOND
from compiler_kit.edgetpu.tflite_graph import Op
from compiler_kit.errors import BadInputError, describe_exception
from compiler_kit.tflite_edit import packed

MATRIX_OPS = frozenset({"CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})
FREE_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "QUANTIZE"})  # layout changes: no array work


@dataclass(frozen=True)
class Interface:
    """The link between the host and the Edge TPU: what crosses it (streamed parameters, input, output) per second."""

    name: str
    bytes_per_second: float


@dataclass(frozen=True)
class Host:
    """The CPU that drives the Edge TPU and runs the ops it cannot."""

    name: str
    overhead_ms: float  # per inference: invoke(), the driver, the transfer set-up
    macs_per_second: float  # int8 multiply-accumulates of an op left to this CPU
    elements_per_second: float  # activation elements an op left to this CPU reads and writes


@dataclass(frozen=True)
class Target:
    name: str
    interface: str  # a key of CostModel.interfaces
    host: str  # a key of CostModel.hosts


TARGET_SPECS = {
    "usb": Target("USB Accelerator on an x86-64 desktop", "usb", "desktop"),
    "devboard": Target("Dev Board (Edge TPU on PCIe, quad Cortex-A53 host)", "pcie", "cortex-a53"),
    "pcie": Target("M.2 / Mini PCIe card in an x86-64 desktop (composed, not fitted)", "pcie", "desktop"),
}
TARGETS = tuple(TARGET_SPECS)


@dataclass(frozen=True)
class CostModel:
    conv_utilisation: float  # share of the array's peak a channel-filling convolution reaches
    depthwise_utilisation: float  # the same for a depthwise convolution, per channel-filled pass
    elementwise_per_second: float  # output elements per second of mapped ops without multiply-accumulates
    interfaces: dict[str, Interface]
    hosts: dict[str, Host]


# --- FITTED: written by `python -m benchmarks.edgetpu_fit --write`; edit the script, not these lines ---
FITTED = CostModel(
    conv_utilisation=1,
    depthwise_utilisation=0.008015,
    elementwise_per_second=1.624e9,
    interfaces={
        "usb": Interface("USB 3.0", bytes_per_second=500e6),
        "pcie": Interface("PCIe Gen2 x1", bytes_per_second=415.3e6),
    },
    hosts={
        "desktop": Host(
            "x86-64 desktop",
            overhead_ms=0.001,
            macs_per_second=21.98e9,
            elements_per_second=396.2e6,
        ),
        "cortex-a53": Host(
            "quad Cortex-A53",
            overhead_ms=0.04087,
            macs_per_second=4.244e9,
            elements_per_second=224.8e6,
        ),
    },
)
# Leave-one-model-out |error| in % on Coral's published Edge TPU rows: {target: {rows, median, worst}}.
LOO_ERRORS_PCT: dict[str, dict[str, float]] = {
    "usb": {"rows": 16, "median": 12.4, "worst": 104.5},
    "devboard": {"rows": 16, "median": 10.6, "worst": 97.8},
}
# |error| in % on the held-out published rows (no fit saw them): {target: {rows, median, worst}}.
HELD_OUT_ERRORS_PCT: dict[str, dict[str, float]] = {
    "usb": {"rows": 15, "median": 25.7, "worst": 50.1},
    "devboard": {"rows": 6, "median": 51.3, "worst": 62.3},
}
# --- end FITTED ---


@dataclass(frozen=True)
class Features:
    """What the cost model reads of an analyzed model: each sum is the constant it is divided by away."""

    mapped: bool  # anything on the Edge TPU at all (no overhead without it)
    conv_seconds: float  # convolutions' MACs / (peak x channel fill): seconds at conv_utilisation = 1
    depthwise_seconds: float  # the same for depthwise convolutions
    tpu_elements: int  # output elements of the other mapped ops
    streamed_bytes: int  # parameters beyond the on-chip cache
    io_bytes: int  # activations entering and leaving the Edge TPU part
    cpu_macs: int  # of the ops left to the host CPU
    cpu_elements: int  # activation elements those ops read and write


@dataclass(frozen=True)
class LatencyEstimate:
    target: str
    host: str
    overhead_ms: float
    tpu_compute_ms: float
    parameter_stream_ms: float
    io_ms: float
    cpu_ms: float  # the ops left to the CPU, ESTIMATED for the target's host CPU (never timed here)

    @property
    def total_ms(self) -> float:
        return self.overhead_ms + self.tpu_compute_ms + self.parameter_stream_ms + self.io_ms + self.cpu_ms

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "predicted_ms": self.total_ms}


def channel_fill(channels: int) -> float:
    """The share of a pass over the 64-wide array that `channels` fill (64 -> 1.0, 32 -> 0.5, 65 -> 65/128)."""
    channels = max(channels, 1)
    return channels / (ARRAY_SIDE * math.ceil(channels / ARRAY_SIDE))


def _array_kind(op: Op) -> str:
    """How a mapped op uses the array: "free", "depthwise", "conv" or "elementwise"."""
    if op.operator in FREE_OPS or not op.outputs:
        return "free"
    if op.operator == "DEPTHWISE_CONV_2D":
        return "depthwise"
    return "conv" if op.operator in MATRIX_OPS and op.macs else "elementwise"


def _full_array_seconds(op: Op) -> float:
    """An op's MACs over the peak, divided by the share of the array its channels fill."""
    fill = channel_fill(op.outputs[0].shape[-1])
    if op.operator != "DEPTHWISE_CONV_2D":
        weights = op.input(1)
        fill *= channel_fill(weights.shape[-1] if weights is not None and weights.shape else 1)
    return op.macs / (PEAK_MACS_PER_SECOND * fill)


def activation_elements(op: Op) -> int:
    """Elements an op reads (its non-constant inputs) and writes: the memory traffic of running it on a CPU."""
    read = [t for t in op.inputs if t is not None and not t.constant]
    return sum(_elements(t.shape) for t in read + op.outputs)


def features(prediction: EdgeTpuPrediction, off_chip_bytes: int | None = None) -> Features:
    """The sums the cost model needs. `off_chip_bytes` overrides the static analysis with the compiler's figure."""
    by_kind: dict[str, list[Op]] = {"free": [], "depthwise": [], "conv": [], "elementwise": []}
    for op in prediction.per_op:
        if op.mapped:
            by_kind[_array_kind(op)].append(op)
    cpu = [op for op in prediction.per_op if not op.mapped]
    return Features(
        mapped=any(op.mapped for op in prediction.per_op),
        conv_seconds=sum(map(_full_array_seconds, by_kind["conv"])),
        depthwise_seconds=sum(map(_full_array_seconds, by_kind["depthwise"])),
        tpu_elements=sum(_elements(op.outputs[0].shape) for op in by_kind["elementwise"]),
        streamed_bytes=prediction.off_chip_bytes if off_chip_bytes is None else off_chip_bytes,
        io_bytes=io_bytes(prediction),
        cpu_macs=sum(op.macs for op in cpu),
        cpu_elements=sum(activation_elements(op) for op in cpu),
    )


def whole_model_on_cpu(prediction: EdgeTpuPrediction) -> Features:
    """The features of running every op on the host CPU (Coral's CPU-only columns), nothing on the Edge TPU."""
    ops = prediction.per_op
    return Features(False, 0.0, 0.0, 0, 0, 0, sum(op.macs for op in ops), sum(activation_elements(op) for op in ops))


def host_cpu_ms(found: Features, host: Host) -> float:
    return (found.cpu_macs / host.macs_per_second + found.cpu_elements / host.elements_per_second) * 1e3


def estimate_features(found: Features, target: str, model: CostModel = FITTED) -> LatencyEstimate:
    spec = TARGET_SPECS[target]
    interface, host = model.interfaces[spec.interface], model.hosts[spec.host]
    compute_s = found.conv_seconds / model.conv_utilisation + found.depthwise_seconds / model.depthwise_utilisation
    compute_s += found.tpu_elements / model.elementwise_per_second
    return LatencyEstimate(
        target=target,
        host=spec.host,
        overhead_ms=host.overhead_ms if found.mapped else 0.0,
        tpu_compute_ms=compute_s * 1e3,
        parameter_stream_ms=found.streamed_bytes / interface.bytes_per_second * 1e3,
        io_ms=found.io_bytes / interface.bytes_per_second * 1e3,
        cpu_ms=host_cpu_ms(found, host),
    )


def estimate(
    prediction: EdgeTpuPrediction, target: str, off_chip_bytes: int | None = None, model: CostModel = FITTED
) -> LatencyEstimate:
    """The predicted latency of one inference on `target` (a key of TARGET_SPECS). `off_chip_bytes` overrides the
    static analysis with the compiler's own figure when it ran. A function of the model file alone."""
    return estimate_features(features(prediction, off_chip_bytes), target, model)


def io_bytes(prediction: EdgeTpuPrediction) -> int:
    """Bytes of the activations entering and leaving the TPU part (8-bit: one byte an element)."""
    mapped = [op for op in prediction.per_op if op.mapped]
    produced = {t.index: t for op in mapped for t in op.outputs}
    consumed = {t.index: t for op in mapped for t in op.inputs if t is not None and not t.constant}
    entering = [t for index, t in consumed.items() if index not in produced]
    leaving = [t for index, t in produced.items() if index not in consumed]
    return sum(_elements(t.shape) for t in entering + leaving)


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(max(d, 1) for d in shape)


def cpu_part_ms(model_path: Path, prediction: EdgeTpuPrediction, threads: int = 1, runs: int = 50) -> float | None:
    """Median time of the ops the Edge TPU does not run, measured with LiteRT on this CPU: they are cut out of the
    int8 model into a model of their own and timed on zero inputs. Ops without a kernel here (`unmeasured_ops`)
    are left out: the interpreter would refuse to prepare the model for them. None when that leaves no op: nothing
    was timed, which is not 0 ms."""
    cpu_ops = [op.index for op in prediction.per_op if not op.mapped and op.runs_here]
    if not cpu_ops:
        return None
    submodel = cpu_submodel(model_path.read_bytes(), cpu_ops)
    try:
        interpreter = _prepared(submodel, threads)
    except RuntimeError as exc:  # XNNPACK refuses tensors whose int8 scale is absurd (a -3.4e38 padding)
        raise BadInputError(
            f"LiteRT cannot run the ops the Edge TPU would leave to the CPU, so their time cannot be measured "
            f"({describe_exception(exc, last_line=True)})",
            path=model_path,
            fix="build the model with legalize on (a max-pool padded with -inf ruins its int8 ranges); the op table "
            "above says which ops those are",
        ) from None
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _prepared(model_bytes: bytes, threads: int) -> Any:
    """An interpreter of `model_bytes`, run once on zero inputs (the first run plans memory). XNNPACK, LiteRT's
    default delegate, refuses some ops the reference kernels run (a RESIZE_BILINEAR with align_corners from 1x1, in
    Coral's DeepLabV3 of google-coral/edgetpu@5020de9): then the reference kernels are timed, unless a scale is
    absurd (a max-pool padded with -3.4e38), on which they abort the process instead of raising. The error of the
    first attempt is raised when neither prepares."""
    interpreter_class, _ = lazy.litert_interpreter()
    resolver = sys.modules[interpreter_class.__module__].OpResolverType
    attempts: list[dict[str, Any]] = [{}]
    if _scales_are_sane(model_bytes):
        attempts.append({"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES})
    first_error = None
    for options in attempts:
        try:
            interpreter = interpreter_class(model_content=model_bytes, num_threads=threads, **options)
            interpreter.allocate_tensors()
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
            interpreter.invoke()
            return interpreter
        except RuntimeError as exc:
            first_error = first_error or exc
    raise first_error or RuntimeError("no interpreter")


MAX_SANE_SCALE = 1e10  # an 8-bit step of 1e10: no real activation range; the -inf padding gives about 1e36


def _scales_are_sane(model_bytes: bytes) -> bool:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    scales = [
        float(scale)
        for graph in model.subgraphs or []
        for tensor in graph.tensors or []
        if tensor.quantization is not None and tensor.quantization.scale is not None
        for scale in tensor.quantization.scale
    ]
    return all(math.isfinite(scale) and abs(scale) < MAX_SANE_SCALE for scale in scales)


def cpu_submodel(model_bytes: bytes, op_indices: list[int]) -> bytes:
    """A .tflite of the main subgraph's ops at `op_indices` alone: its inputs are the activations those ops read
    and nothing among them produces, its outputs those they produce and nothing among them reads."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    graph = model.subgraphs[0]
    kept = [graph.operators[i] for i in op_indices]
    produced = [t for op in kept for t in _indices(op.outputs)]
    read = [t for op in kept for t in _indices(op.inputs) if t >= 0 and not _constant(model, graph.tensors[t])]
    graph.operators = kept
    graph.inputs = list(dict.fromkeys(t for t in read if t not in produced))
    graph.outputs = list(dict.fromkeys(t for t in produced if t not in read or t in _indices(graph.outputs)))
    model.signatureDefs = []  # they name the whole model's inputs and outputs
    return packed(model)


def _indices(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _constant(model: Any, tensor: Any) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def unmeasured_ops(prediction: EdgeTpuPrediction) -> list[str]:
    """The CPU ops LiteRT has no kernel for here (custom or unknown ops, or a kernel that cannot read their inputs'
    type), as `#index OPERATOR`."""
    return [f"#{op.index} {op.operator}" for op in prediction.per_op if not op.mapped and not op.runs_here]


def cpu_part_here(prediction: EdgeTpuPrediction, threads: int = 1) -> dict[str, Any] | None:
    """The ops left to the CPU timed on THIS machine with LiteRT: a fact about this machine, reported beside the
    prediction and never inside it. None when every op maps; a failure to time them is reported, not raised."""
    if all(op.mapped for op in prediction.per_op):
        return None
    try:
        measured = cpu_part_ms(prediction.path, prediction, threads)
        error = None if measured is not None else "none of the ops left to the CPU has a kernel here"
    except BadInputError as exc:
        measured, error = None, str(exc)
    return {"ms": measured, "threads": threads, "unmeasured_ops": unmeasured_ops(prediction), "error": error}


def latency_section(prediction: EdgeTpuPrediction, threads: int = 1, off_chip_bytes: int | None = None) -> dict:
    """The predicted latency per target of an analyzed int8 model, beside the ideal floor (every MAC at 4 TOPS):
    the report's `edgetpu.latency`. The op mapping is the static analysis's; when the compiler ran, pass its own
    count of streamed parameter bytes. `targets` depends on the model file alone; `cpu_part_here` is this machine's."""
    here = cpu_part_here(prediction, threads)
    return {
        "predicted": True,
        "ideal_floor_ms": prediction.ideal_latency_ms,
        "targets": {target: estimate(prediction, target, off_chip_bytes).as_dict() for target in TARGETS},
        "loo_errors_pct": LOO_ERRORS_PCT,
        "held_out_errors_pct": HELD_OUT_ERRORS_PCT,
        "cpu_part_here": here,
        "cpu_unmeasured_ops": here["unmeasured_ops"] if here else [],
    }
