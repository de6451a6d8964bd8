"""Edge TPU latency without a device: a cost model of one inference, for the USB Accelerator and for PCIe targets.

    predicted = overhead (per target) + TPU compute + parameter streaming + input/output transfer + CPU part

- TPU compute: each mapped op's multiply-accumulates on the peak 4 TOPS array (2e12 MAC/s), divided by a
  utilisation. A convolution (and a fully connected layer) fills the 64x64 systolic array with its input and
  output channels: channel counts that are not multiples of 64 waste the rest of a pass, and a full array still
  reaches only CONV_UTILISATION of its peak. A depthwise convolution has no input-channel reduction to spread
  over the array, so it uses it far worse: DEPTHWISE_UTILISATION. Every other mapped op (adds, pools,
  concatenations, reshapes) costs its output elements at ELEMENTWISE_PER_SECOND.
- Parameter streaming: parameter bytes beyond the ~8 MB on-chip cache cross the host interface on every
  inference (FACTS.md), at the target's bandwidth; so do the input and output tensors.
- CPU part: the ops the analysis leaves to the CPU, MEASURED here with LiteRT (`cpu_part_ms`), never guessed. A
  custom op (a pose decoder, a detection post-processing op) or an op this LiteRT does not know has no kernel here:
  it is left out of the measurement and named in `cpu_unmeasured_ops`, never a failure.

The constants marked "fitted" were fitted by `benchmarks/edgetpu_fit.py` on the four rows of Coral's published
benchmarks in FACTS.md (MobileNet v1 224, MobileNet v2 224, Inception v4 299, ResNet-50 V1 299; USB Accelerator
and Dev Board), and on nothing else; FIT_ERRORS_PCT keeps the errors on those rows. It is a prediction, and
every report labels it as one.
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

MATRIX_OPS = frozenset({"CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})
FREE_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "QUANTIZE"})  # layout changes: no array work


@dataclass(frozen=True)
class Interface:
    """How a target talks to the host: a fixed cost per inference and the bandwidth of what crosses it."""

    name: str
    overhead_ms: float  # invoke(), driver and transfer set-up, per inference
    bytes_per_second: float  # streamed parameters and input/output tensors


@dataclass(frozen=True)
class CostModel:
    conv_utilisation: float  # share of the array's peak a channel-filling convolution reaches
    depthwise_utilisation: float  # the same for a depthwise convolution, per channel-filled pass
    elementwise_per_second: float  # output elements per second of ops without multiply-accumulates
    targets: dict[str, Interface]


# Every value written by `python -m benchmarks.edgetpu_fit --write` (after `make edgetpu-fit` built the models):
# least squares on log(predicted / published) over FACTS.md's four reference rows on both targets, and nothing else,
# within physical bounds (see the script). Four models pin only some combinations of these seven constants (the
# script reports how many are loose): each value is one consistent reading of the published figures, not a
# measurement of the chip, and Coral's other published models judge it (benchmarks/results/edgetpu_fit.json).
FITTED = CostModel(
    conv_utilisation=0.5789,  # fitted: mostly by Inception v4 and ResNet-50, 12 and 7 GMACs
    depthwise_utilisation=0.02239,  # fitted: by the MobileNets, the only reference models with depthwise convolutions
    elementwise_per_second=2.907e9,  # fitted: mostly by ResNet-50's additions and Inception v4's concatenations
    targets={
        "usb": Interface(
            "USB Accelerator",
            overhead_ms=0.7475,  # fitted: by the MobileNets, whose parameters all fit on the chip
            bytes_per_second=514.3e6,  # fitted: by Inception v4 and ResNet-50, which stream 34 and 17 MB
        ),
        "pcie": Interface(
            "Dev Board / PCIe",
            overhead_ms=0.6781,  # fitted: as for "usb", on the Dev Board's figures
            bytes_per_second=416.7e6,  # fitted: as for "usb"
        ),
    },
)
TARGETS = tuple(FITTED.targets)
# Error of the prediction on each fitted row, in % (predicted / published - 1), as benchmarks/edgetpu_fit.py
# printed it with FITTED: {target: {model: error}}.
FIT_ERRORS_PCT: dict[str, dict[str, float]] = {
    "usb": {
        "MobileNet v1": 0.0,
        "MobileNet v2": 0.0,
        "Inception v4": 0.7,
        "ResNet-50 V1": -0.7,
    },
    "pcie": {
        "MobileNet v1": 0.0,
        "MobileNet v2": 0.0,
        "Inception v4": -0.8,
        "ResNet-50 V1": 0.9,
    },
}


@dataclass(frozen=True)
class LatencyEstimate:
    target: str
    overhead_ms: float
    tpu_compute_ms: float
    parameter_stream_ms: float
    io_ms: float
    cpu_ms: float  # measured on this machine's CPU with LiteRT: the ops after the cut

    @property
    def total_ms(self) -> float:
        return self.overhead_ms + self.tpu_compute_ms + self.parameter_stream_ms + self.io_ms + self.cpu_ms

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "predicted_ms": self.total_ms}


def channel_fill(channels: int) -> float:
    """The share of a pass over the 64-wide array that `channels` fill (64 -> 1.0, 32 -> 0.5, 65 -> 65/128)."""
    channels = max(channels, 1)
    return channels / (ARRAY_SIDE * math.ceil(channels / ARRAY_SIDE))


def op_seconds(op: Op, model: CostModel = FITTED) -> float:
    """Time of one mapped op on the array."""
    if op.operator in FREE_OPS or not op.outputs:
        return 0.0
    if op.operator == "DEPTHWISE_CONV_2D":
        utilisation = model.depthwise_utilisation * channel_fill(op.outputs[0].shape[-1])
        return op.macs / (PEAK_MACS_PER_SECOND * utilisation)
    if op.operator in MATRIX_OPS and op.macs:
        weights = op.input(1)
        in_channels = weights.shape[-1] if weights is not None and weights.shape else 1
        utilisation = model.conv_utilisation * channel_fill(in_channels) * channel_fill(op.outputs[0].shape[-1])
        return op.macs / (PEAK_MACS_PER_SECOND * utilisation)
    return _elements(op.outputs[0].shape) / model.elementwise_per_second


def io_bytes(prediction: EdgeTpuPrediction) -> int:
    """Bytes of the activations entering and leaving the TPU part (8-bit: one byte an element)."""
    mapped = [op for op in prediction.per_op if op.mapped]
    produced = {t.index: t for op in mapped for t in op.outputs}
    consumed = {t.index: t for op in mapped for t in op.inputs if t is not None and not t.constant}
    entering = [t for index, t in consumed.items() if index not in produced]
    leaving = [t for index, t in produced.items() if index not in consumed]
    return sum(_elements(t.shape) for t in entering + leaving)


def estimate(
    prediction: EdgeTpuPrediction,
    target: str,
    cpu_ms: float = 0.0,
    off_chip_bytes: int | None = None,
    model: CostModel = FITTED,
) -> LatencyEstimate:
    """The predicted latency of one inference on `target` ("usb" or "pcie"). `off_chip_bytes` overrides the
    static analysis with the compiler's own figure when it ran; `cpu_ms` is the measured CPU part."""
    interface = model.targets[target]
    mapped = [op for op in prediction.per_op if op.mapped]
    streamed = prediction.off_chip_bytes if off_chip_bytes is None else off_chip_bytes
    return LatencyEstimate(
        target=target,
        overhead_ms=interface.overhead_ms if mapped else 0.0,
        tpu_compute_ms=sum(op_seconds(op, model) for op in mapped) * 1e3,
        parameter_stream_ms=streamed / interface.bytes_per_second * 1e3,
        io_ms=io_bytes(prediction) / interface.bytes_per_second * 1e3,
        cpu_ms=cpu_ms,
    )


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(max(d, 1) for d in shape)


def cpu_part_ms(model_path: Path, prediction: EdgeTpuPrediction, threads: int = 1, runs: int = 50) -> float:
    """Median time of the ops the Edge TPU does not run, measured with LiteRT on this CPU: they are cut out of the
    int8 model into a model of their own and timed on zero inputs. Ops without a kernel here (`unmeasured_ops`)
    are left out: the interpreter would refuse to prepare the model for them."""
    cpu_ops = [op.index for op in prediction.per_op if not op.mapped and op.runs_here]
    if not cpu_ops:
        return 0.0
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
    import flatbuffers
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
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _indices(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _constant(model: Any, tensor: Any) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def unmeasured_ops(prediction: EdgeTpuPrediction) -> list[str]:
    """The CPU ops LiteRT has no kernel for here (custom or unknown ops), as `#index OPERATOR`."""
    return [f"#{op.index} {op.operator}" for op in prediction.per_op if not op.mapped and not op.runs_here]


def latency_section(prediction: EdgeTpuPrediction, threads: int = 1, off_chip_bytes: int | None = None) -> dict:
    """The predicted latency per target of an analyzed int8 model, beside the ideal floor (every MAC at 4 TOPS):
    the report's `edgetpu.latency`. The op mapping is the static analysis's; when the compiler ran, pass its own
    count of streamed parameter bytes."""
    cpu_ms = cpu_part_ms(prediction.path, prediction, threads)
    return {
        "predicted": True,
        "cpu_unmeasured_ops": unmeasured_ops(prediction),
        "ideal_floor_ms": prediction.ideal_latency_ms,
        "targets": {target: estimate(prediction, target, cpu_ms, off_chip_bytes).as_dict() for target in TARGETS},
        "fit_errors_pct": FIT_ERRORS_PCT,
    }
