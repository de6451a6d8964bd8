"""Static Edge TPU compatibility analysis: predict the compiler's verdict from the .tflite alone.

The model is read by tflite_graph.py (no TensorFlow import, so it is fast). Each op of the main subgraph gets the
status the compiler would write in its .log (statuses.py), following Coral's documented requirements (see
/work/shared/edgetpu/FACTS.md): 8-bit tensors only, static shapes, rank <= 3 beyond size-1 outer dimensions, the
supported-op table and its limits, op versions compiler 16 can parse, constant parameters, and ONE Edge TPU
subgraph. An op version compiler 16 cannot parse fails the whole model: nothing maps, and the advice names what
fixes it.

The rules were then checked against what the real compiler did to Coral's published models (the pairs of an int8
model and its *_edgetpu.tflite in benchmarks/edgetpu_truth/, `make edgetpu-truth`); each rule that pairs changed
names its evidence. The one-subgraph rule follows the data flow, not the op order: ops that cannot map BEFORE the
Edge TPU part (a CAST and QUANTIZE of a uint8 input) run on the CPU and feed it; an op that cannot map AFTER it cuts
only the ops that consume its results, so an independent head listed after it still maps.

It is a prediction: the compiler's own limits (large reshapes, precision choices, activation sizes) are not all
documented, so the real compiler may map less. `as_dict()` uses the keys of the compiler log parser's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.edgetpu.hardware import ON_CHIP_CACHE_BYTES, PEAK_MACS_PER_SECOND
from compiler_kit.edgetpu.statuses import (
    MODEL_NOT_PARSED,
    MORE_THAN_ONE_SUBGRAPH,
    NOT_CONSTANT,
    NOT_SUPPORTED,
    UNSPECIFIED_LIMITATION,
    UNSUPPORTED_DATA_TYPE,
    UNSUPPORTED_RANK,
    VERSION_NOT_SUPPORTED,
)
from compiler_kit.edgetpu.tflite_graph import (
    ACTIVATION_NAMES,
    PARAM_TYPES,
    Op,
    Tensor,
    indices,
    load_model,
    read_ops,
)

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"

EIGHT_BIT = frozenset({"int8", "uint8"})

# Coral's supported-op table, by TFLite builtin name; False marks its "unverified remainder". TILE is not in
# FACTS.md's table, but compiler 16 mapped it in deeplab_mobilenet_edgetpu_slim_cityscapes_quant (the image-pooling
# branch's TILE [1,1,1,128] -> [1,33,33,128] is inside the edgetpu-custom-op; google-coral/test_data@104342d).
SUPPORTED_OPS: dict[str, bool] = {
    **dict.fromkeys((
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
        "L2_NORMALIZATION", "LOGISTIC", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
        "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
        "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "TILE",
    ), True),
    **dict.fromkeys((
        "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE",
        "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    ), False),
}  # fmt: skip

# The newest version of each op that compiler 16's embedded TFLite parses. Source: TFLite's
# tools/versioning/runtime_version.cc (the TF release that introduced each op version), cut at TF 2.5.0, the
# low end of the "roughly TF 2.5-2.7" FACTS.md gives for compiler 16; then corrected by observed failures
# (CONV_2D v6, TRANSPOSE_CONV v3 although runtime_version.cc dates it 2.3, QUANTIZE v3, EXP v2).
# Conservative (a TF 2.6 version, which compiler 16 may in fact parse): ADD v4, MUL v5, PAD/PADV2 v4,
# STRIDED_SLICE v6, REDUCE_PROD v2. Ops not listed are not version-checked.
MAX_VERSIONS: dict[str, int] = {
    "ADD": 3, "ARG_MAX": 2, "ARG_MIN": 2, "AVERAGE_POOL_2D": 3, "BATCH_MATMUL": 4, "CAST": 1, "CONCATENATION": 3,
    "CONV_2D": 5, "DEPTHWISE_CONV_2D": 6, "DEQUANTIZE": 4, "DIV": 2, "EXP": 1, "EXPAND_DIMS": 1,
    "FULLY_CONNECTED": 9, "GATHER": 5, "HARD_SWISH": 1, "L2_NORMALIZATION": 2, "LEAKY_RELU": 2, "LOGISTIC": 3,
    "LSTM": 4, "MAXIMUM": 4, "MAX_POOL_2D": 3, "MEAN": 3, "MINIMUM": 4, "MUL": 4, "PACK": 3, "PAD": 3, "PADV2": 3,
    "PRELU": 1, "QUANTIZE": 2, "REDUCE_MAX": 3, "REDUCE_MIN": 3, "REDUCE_PROD": 1, "RELU": 3, "RELU6": 3,
    "RELU_N1_TO_1": 1, "RESHAPE": 1, "RESIZE_BILINEAR": 4, "RESIZE_NEAREST_NEIGHBOR": 4, "RSQRT": 2, "SLICE": 5,
    "SOFTMAX": 3, "SPACE_TO_DEPTH": 2, "SPLIT": 4, "SPLIT_V": 2, "SQUARED_DIFFERENCE": 2, "SQUEEZE": 2,
    "STRIDED_SLICE": 5, "SUB": 5, "SUM": 2, "TANH": 3, "TRANSPOSE": 5, "TRANSPOSE_CONV": 2,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 3,
}  # fmt: skip

# Ops whose filter and bias must be constant: (filter input, bias input).
WEIGHTED_OPS = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2), "TRANSPOSE_CONV": (1, 3)}
NO_FUSED_ACTIVATION = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"})
REDUCTIONS = frozenset({"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"})  # "not over batch"; the axes are input 1
SOFTMAX_MAX_ELEMENTS = 16_000
LSTM_OPS = frozenset({"LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM"})
# RESIZE_BILINEAR "may stay on the CPU to keep precision" (Coral's table). The pairs show where: compiler 16 mapped
# 2x upsamplings (movenet_single_pose_lightning_ptq: 6->12, 12->24, 24->48, half-pixel centers) and a same-size
# resize (deeplab_mobilenet_edgetpu_slim_cityscapes_quant: 33->33, align corners), and left on the CPU a 16x one
# (33->513 with align corners, both DeepLabs) and a broadcast from 1x1 (1->33 with align corners,
# deeplabv3_mnv2_pascal_quant). The largest factor that maps lies between 2 and 16: 8 (the middle, on a log scale)
# is our guess, not an observation.
MAX_RESIZE_BILINEAR_FACTOR = 8


@dataclass(frozen=True)
class Failure:
    kind: str
    message: str
    advice: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message, "advice": self.advice}


@dataclass
class EdgeTpuPrediction:
    """The predicted compiler verdict for one model, per op and in total."""

    path: Path
    per_op: list[Op]
    failures: list[Failure] = field(default_factory=list)
    parameter_bytes: int = 0
    on_chip_bytes: int = 0
    off_chip_bytes: int = 0

    @property
    def ops_on_edgetpu(self) -> int:
        return sum(op.mapped for op in self.per_op)

    @property
    def ops_on_cpu(self) -> int:
        return len(self.per_op) - self.ops_on_edgetpu

    @property
    def edgetpu_subgraphs(self) -> int:
        return 1 if self.ops_on_edgetpu else 0

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.per_op)

    @property
    def ideal_latency_ms(self) -> float:
        return self.macs / PEAK_MACS_PER_SECOND * 1e3

    def op_counts(self) -> list[dict[str, Any]]:
        """One row per (operator, status), in order of first appearance, like the compiler's .log."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for op in self.per_op:
            row = rows.setdefault(
                (op.operator, op.status),
                {"operator": op.operator, "count": 0, "status": op.status, "mapped": op.mapped},
            )
            row["count"] += 1
        return list(rows.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "compiler_version": None,
            "ops": self.op_counts(),
            "edgetpu_subgraphs": self.edgetpu_subgraphs,
            "ops_on_edgetpu": self.ops_on_edgetpu,
            "ops_on_cpu": self.ops_on_cpu,
            "on_chip_bytes": self.on_chip_bytes,
            "off_chip_bytes": self.off_chip_bytes,
            "predicted": True,
            "failures": [f.as_dict() for f in self.failures],
            "per_op": [op.as_dict() for op in self.per_op],
            "parameter_bytes": self.parameter_bytes,
            "macs": self.macs,
            "ideal_latency_ms": self.ideal_latency_ms,
        }


def analyze(path: Path) -> EdgeTpuPrediction:
    """Predict the Edge TPU compiler's verdict on a .tflite file; BadInputError (exit 2) if it is not one."""
    path = Path(path)
    model = load_model(path)
    ops = read_ops(model, path)
    subgraph = model.subgraphs[0]
    exempt = _io_conversions(ops, set(indices(subgraph.inputs)), set(indices(subgraph.outputs)))
    for op in ops:
        op.macs = _macs(op)
        problem = _own_problem(op, exempt)
        if problem:
            op.status, op.reason = problem
        elif not SUPPORTED_OPS[op.operator]:
            op.reason = "in the unverified part of Coral's supported-op table: the compiler may not map it"
    unparsed = [op for op in ops if op.status == VERSION_NOT_SUPPORTED]
    if unparsed:
        _fail_whole_model(ops)
    else:
        _apply_one_subgraph_rule(ops)
    cut = next((op for op in ops if _own_status(op) and op.index not in exempt), None)
    prediction = EdgeTpuPrediction(path, ops, _failures(ops, cut))
    _count_parameters(prediction)
    return prediction


# --- the rules ---


def _io_conversions(ops: list[Op], model_inputs: set[int], model_outputs: set[int]) -> set[int]:
    """QUANTIZE of a float model input and DEQUANTIZE to a float model output: CPU ops that do not cut the graph
    and that the verdict does not count as a failure.

    Real compiler logs of float-I/O models show both on the CPU with everything between them mapped
    (QUANTIZE "otherwise supported, but ... unspecified limitation", DEQUANTIZE "unsupported data type"). A
    QUANTIZE between two 8-bit types (uint8 input to int8, int8 to uint8 output, a requantization) is an Edge TPU
    op: compiler 16 mapped those of keras_lstm_mnist_ptq and movenet_single_pose_lightning_ptq.
    """
    exempt = set()
    for op in ops:
        first_in, first_out = op.input(0), op.outputs[0] if op.outputs else None
        if (
            op.operator == "QUANTIZE"
            and first_in
            and first_in.index in model_inputs
            and first_in.dtype not in EIGHT_BIT
        ):
            exempt.add(op.index)
        if op.operator == "DEQUANTIZE" and first_out and first_out.index in model_outputs:
            exempt.add(op.index)
    return exempt


def _own_problem(op: Op, exempt: set[int]) -> tuple[str, str] | None:
    """Why this op cannot map by itself (before the one-subgraph rule), in the compiler's words; None if it can.

    The order: a version the compiler cannot parse first; then data types (real logs of float models and of a
    float-output DEQUANTIZE report the data type, whatever the op); then the op table, shapes, constants, limits.
    """
    limit = MAX_VERSIONS.get(op.operator)
    if limit is not None and op.version > limit:
        return VERSION_NOT_SUPPORTED, f"version {op.version}; compiler 16 parses {op.operator} up to version {limit}"
    if op.kind != "builtin":
        return NOT_SUPPORTED, _not_builtin(op)
    if op.operator == "QUANTIZE" and op.index in exempt:
        return UNSPECIFIED_LIMITATION, "QUANTIZE of the float model input runs on the CPU (use int8/uint8 model input)"
    if bad := next((t for t in op.tensors if not _type_ok(t, op)), None):
        return UNSUPPORTED_DATA_TYPE, f"tensor '{bad.name}' is {bad.dtype}: the Edge TPU computes on 8-bit tensors"
    if op.operator not in SUPPORTED_OPS:
        return NOT_SUPPORTED, f"{op.operator} is not in Coral's table of supported operations"
    if dynamic := next((t for t in op.tensors if t.dynamic), None):
        return UNSPECIFIED_LIMITATION, f"tensor '{dynamic.name}' has a dynamic shape {list(dynamic.shape)}"
    if deep := next((t for t in op.tensors if not t.constant and any(d > 1 for d in t.shape[:-3])), None):
        return UNSUPPORTED_RANK, f"tensor '{deep.name}' {list(deep.shape)}: more than 3 dimensions exceed 1"
    if op.operator in WEIGHTED_OPS:
        for position, role in zip(WEIGHTED_OPS[op.operator], ("filter", "bias"), strict=True):
            tensor = op.input(position)
            if tensor is not None and not tensor.constant:
                return NOT_CONSTANT, f"the {role} '{tensor.name}' is computed at run time, not a constant"
    if limitation := _limitation(op):
        return UNSPECIFIED_LIMITATION, limitation
    return None


def _not_builtin(op: Op) -> str:
    """Custom ops never map: the compiler left the PosenetDecoderOp of all four posenet/bodypix pairs
    (google-coral/test_data@104342d) outside the edgetpu-custom-op, on the CPU."""
    if op.kind == "custom":
        return f"custom op '{op.operator}': the compiler never maps custom ops, the CPU runs it (with its own kernel)"
    return f"{op.operator}: a builtin code this TFLite schema does not know, so neither does the compiler"


def _type_ok(tensor: Tensor, op: Op) -> bool:
    """8-bit data, int32/int64 constants (biases, shapes, axes), and an LSTM's 16-bit cell state: TFLite's integer
    LSTM keeps its cell state in an int16 variable tensor, and compiler 16 mapped that LSTM whole
    (keras_lstm_mnist_ptq, google-coral/test_data@104342d: 6 of 6 ops in the edgetpu-custom-op)."""
    if tensor.dtype in EIGHT_BIT or (tensor.constant and tensor.dtype in PARAM_TYPES):
        return True
    return op.operator in LSTM_OPS and tensor.variable and tensor.dtype == "int16"


def _limitation(op: Op) -> str | None:
    """The per-op limits of Coral's table that the file alone can show."""
    name, output = op.operator, op.outputs[0] if op.outputs else None

    def option(key: str, default: Any = 0) -> Any:  # absent options take the schema's defaults
        return getattr(op.options, key, default)

    if name in NO_FUSED_ACTIVATION and (activation := option("fusedActivationFunction")):
        return f"fused activation {ACTIVATION_NAMES.get(activation, activation)} (Coral: no fused activation)"
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and option("dilationHFactor", 1) != option("dilationWFactor", 1):
        return f"dilation {option('dilationHFactor')}x{option('dilationWFactor')} differs in y and x"
    if name == "FULLY_CONNECTED" and option("weightsFormat"):
        return "weights not in the default format"
    if name == "FULLY_CONNECTED" and output is not None and len(output.shape) > 2:
        return f"output {list(output.shape)} is not 1-D per batch"
    if name == "PACK" and option("axis") == 0:
        return "packs over the batch dimension"
    data, arguments = op.input(0), op.input(1)
    if name in REDUCTIONS and data and arguments and 0 in {a % max(len(data.shape), 1) for a in arguments.ints()}:
        return f"{name} over the batch dimension"
    if name == "PAD" and arguments and any(arguments.ints()[:2]):  # paddings [[before, after] per dimension]
        return "pads the batch dimension"
    if name == "SOFTMAX" and output is not None and _size(output.shape[1:]) > SOFTMAX_MAX_ELEMENTS:
        return f"softmax over more than {SOFTMAX_MAX_ELEMENTS} elements"
    if name == "RESIZE_BILINEAR" and data is not None and output is not None:
        return _resize_limitation(data.shape, output.shape, bool(option("alignCorners", False)))
    return None


def _resize_limitation(before: tuple[int, ...], after: tuple[int, ...], align_corners: bool) -> str | None:
    """Why a bilinear resize of NHWC `before` to `after` stays on the CPU (MAX_RESIZE_BILINEAR_FACTOR has the
    evidence), or None. Height and width each keep their size or are upsampled by a whole factor: out = f * in, or
    with align_corners (corner pixels pinned) out - 1 = f * (in - 1). Downsampling is not limited here: no pair has
    one."""
    for axis, size_in, size_out in zip(("height", "width"), before[1:3], after[1:3], strict=False):
        if size_out <= size_in:
            continue
        steps_in, steps_out = (size_in - 1, size_out - 1) if align_corners else (size_in, size_out)
        if steps_in <= 0 or steps_out % steps_in:
            return f"{axis} {size_in} -> {size_out} is not a whole upsampling factor: kept on the CPU for precision"
        if steps_out // steps_in > MAX_RESIZE_BILINEAR_FACTOR:
            return (
                f"{axis} {size_in} -> {size_out} upsamples {steps_out // steps_in}x (the compiler keeps large factors "
                f"on the CPU for precision; at most {MAX_RESIZE_BILINEAR_FACTOR}x is predicted to map)"
            )
    return None


def _apply_one_subgraph_rule(ops: list[Op]) -> None:
    """The compiler maps one Edge TPU subgraph, so CPU work may come before it and after it, never between two parts
    of it: an op that could map but reads, directly or not, the result of a CPU op that itself reads the Edge TPU
    part's results stays on the CPU ("More than one subgraph is not supported").

    Evidence (google-coral/test_data@104342d): movenet_single_pose_lightning_ptq starts with CAST and QUANTIZE of its
    uint8 input on the CPU, then 98 ops map in one edgetpu-custom-op fed by them; its ARG_MAX (op 89) stays on the
    CPU with everything computed from it, while the keypoint heads listed after it (ops 100-111) map. In
    deeplabv3_mnv2_pascal_quant the CPU resize #64 takes the QUANTIZE, CONCATENATION and both CONV_2D after it to
    the CPU. TFLite lists ops in an order where producers come first, so one pass in that order suffices.
    """
    producer = {t.index: op for op in ops for t in op.outputs}
    after_tpu: dict[int, bool] = {}  # op index -> the op reads, directly or not, an Edge TPU result
    cut_by: dict[int, Op | None] = {}  # op index -> the CPU op after the Edge TPU part that it depends on
    for op in ops:
        sources = [producer[t.index] for t in op.inputs if t is not None and t.index in producer]
        after_tpu[op.index] = any(s.mapped or after_tpu[s.index] for s in sources)
        blocker = next((cut_by[s.index] for s in sources if cut_by[s.index] is not None), None)
        if blocker is None:
            blocker = next((s for s in sources if not s.mapped and after_tpu[s.index]), None)
        cut_by[op.index] = blocker
        if blocker is not None and op.mapped:
            op.status = MORE_THAN_ONE_SUBGRAPH
            op.reason = f"reads the result of #{blocker.index} {blocker.operator}, on the CPU after Edge TPU ops"


def _own_status(op: Op) -> bool:
    """Whether the op is on the CPU for a reason of its own, not by the one-subgraph rule."""
    return not op.mapped and op.status not in (MORE_THAN_ONE_SUBGRAPH, MODEL_NOT_PARSED)


def _fail_whole_model(ops: list[Op]) -> None:
    """The compiler stops at "Model could not be parsed": no op maps, there is no Edge TPU subgraph to cut."""
    first = next(op for op in ops if op.status == VERSION_NOT_SUPPORTED)
    for op in ops:
        if op.status != VERSION_NOT_SUPPORTED:
            op.status, op.reason = MODEL_NOT_PARSED, f"#{first.index} {first.operator} version {first.version}"


def model_macs(path: Path) -> int:
    """The multiply-accumulates of one inference of a .tflite model (float or int8), counted as `analyze` counts
    them: the compute that dominates its time on any target."""
    return sum(_macs(op) for op in read_ops(load_model(path), path))


def _macs(op: Op) -> int:
    """Multiply-accumulates of the ops that dominate Edge TPU time (a dynamic dimension counts as 1)."""
    weights = op.input(1)
    if op.operator not in WEIGHTED_OPS or weights is None or not op.outputs:
        return 0
    out = _size(op.outputs[0].shape)
    kernel = weights.shape
    if op.operator == "CONV_2D":  # filter [out_ch, kh, kw, in_ch per group]
        return out * _size(kernel[1:])
    if op.operator == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_ch]: one kh*kw window per output
        return out * _size(kernel[1:3])
    if op.operator == "FULLY_CONNECTED":  # filter [units, in]
        return out * (kernel[-1] if kernel else 1)  # a corrupt file's filter may have no shape
    data = op.input(2)  # TRANSPOSE_CONV: each input element scatters into kh*kw*out_ch outputs
    return _size(data.shape) * _size(kernel[:3]) if data is not None else 0


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod([max(d, 1) for d in shape], dtype=np.int64))


# --- model-level verdict ---


def _failures(ops: list[Op], cut: Op | None) -> list[Failure]:
    failures = []
    if any(op.operator == EDGETPU_CUSTOM_OP for op in ops):
        failures.append(
            Failure("already_compiled", "the model is already compiled for the Edge TPU", "analyze the input model")
        )
    activations = [t for op in ops for t in op.tensors if not t.constant]
    if activations and not any(t.dtype in EIGHT_BIT for t in activations):
        failures.append(
            Failure(
                "not_quantized",
                "Model not quantized: no activation is 8-bit, so the compiler refuses the model",
                "quantize to full integer with a representative dataset: int8 weights and activations "
                "(ckit build writes model_int8.tflite); weights-only quantization is not enough",
            )
        )
    if dynamic := list({t.index: t for t in activations if t.dynamic}.values()):
        failures.append(
            Failure(
                "dynamic_shape",
                f"dynamic shapes: the compiler rejects tensors with a dynamic dimension ('Attempting to use a delegate "
                f"that only supports static-sized tensors'); {len(dynamic)} tensors have one, e.g. "
                f"'{dynamic[0].name}' {list(dynamic[0].shape)}",
                "convert with a fixed input shape, batch 1 (an input signature of [1, ...]; ckit build does this)",
            )
        )
    failures += [
        Failure(
            "op_version",
            f"Didn't find op for builtin opcode '{op.operator}' version '{op.version}': the compiler cannot parse the "
            f"model, so no op runs on the Edge TPU (compiler 16 knows {op.operator} up to version "
            f"{MAX_VERSIONS[op.operator]})",
            VERSION_FIXES.get((op.operator, op.version), _version_fix(op)),
        )
        for op in _first_per_operator(o for o in ops if o.status == VERSION_NOT_SUPPORTED)
    ]
    if cut is not None and not failures:  # a model-level failure above already says why nothing (or all) maps
        on_cpu = sum(not op.mapped for op in ops)
        failures.append(
            Failure(
                "partially_mapped",
                f"{on_cpu} of {len(ops)} ops run on the CPU: #{cut.index} {cut.operator} cannot be mapped "
                f"({cut.status}), and every op that reads its result after the Edge TPU part stays on the CPU",
                _cut_advice(cut),
            )
        )
    return failures


def _cut_advice(cut: Op) -> str:
    if cut.kind == "custom":
        return (
            f"custom ops always run on the CPU: keep #{cut.index} {cut.operator} after the ops meant for the Edge TPU "
            "(only what reads its result is cut from them)"
        )
    return f"replace #{cut.index} {cut.operator} with supported ops, or move it to the end of the model"


_TRANSPOSE_CONV_FIX = (
    "TFLite's converter fuses the bias (version 3: an Add or BatchNorm after the transposed convolution) and the "
    "activation (version 4: a ReLU after it) into TRANSPOSE_CONV, and compiler 16 parses neither: for ONNX and torch "
    "sources keep the legalization rewrite 'transpose_conv_unfused' on (the default); in Keras, end the "
    "Conv2DTranspose's output in an Add of two branches, or upsample with a Resize and a Conv"
)
# What raises an op's version beyond compiler 16's, and what removes it with the pinned toolchain. A .tflite keeps
# one version per opcode, so one such op raises the version of every op of its kind.
VERSION_FIXES = {
    ("CONV_2D", 6): "version 6 is a grouped convolution (groups > 1): for ONNX and torch sources keep the "
    "legalization rewrites 'grouped_conv', 'depthwise_strides' and 'singleton_constants' on (the default; onnx2tf "
    "writes a depthwise convolution as a grouped one when its strides differ or it lost the layout before it); in "
    "Keras use Conv2D with groups=1 on split channels, or DepthwiseConv2D",
    ("TRANSPOSE_CONV", 3): _TRANSPOSE_CONV_FIX,
    ("TRANSPOSE_CONV", 4): _TRANSPOSE_CONV_FIX,
}


def _version_fix(op: Op) -> str:
    return (
        f"the pinned TensorFlow writes {op.operator} at version {op.version} for what this model asks of it (its "
        "types or options), and no ckit option lowers it: express that layer with other ops in the source model"
    )


def _first_per_operator(ops: Any) -> list[Op]:
    seen: dict[str, Op] = {}
    for op in ops:
        seen.setdefault(op.operator, op)
    return list(seen.values())


def _count_parameters(prediction: EdgeTpuPrediction) -> None:
    """Weights and biases (each constant buffer once); only mapped ops' parameters occupy the Edge TPU cache."""
    every: dict[int, int] = {}  # by buffer: the converter stores equal constants once
    mapped: dict[int, int] = {}
    for op in prediction.per_op:
        bias = WEIGHTED_OPS.get(op.operator, (None, None))[1]
        for position, tensor in enumerate(op.inputs):
            # Constant int32/int64 inputs are shapes and axes, except a bias.
            if tensor is None or not tensor.constant or (tensor.dtype in PARAM_TYPES and position != bias):
                continue
            every[tensor.buffer] = tensor.nbytes
            if op.mapped:
                mapped[tensor.buffer] = tensor.nbytes
    prediction.parameter_bytes = sum(every.values())
    on_tpu = sum(mapped.values())
    prediction.on_chip_bytes = min(on_tpu, ON_CHIP_CACHE_BYTES)
    prediction.off_chip_bytes = on_tpu - prediction.on_chip_bytes
