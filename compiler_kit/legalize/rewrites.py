"""The Edge TPU rewrites, applied to the ONNX graph before onnx2tf converts it, each exact by construction.

What they fix, as onnx2tf 1.29 and TensorFlow 2.19's converter lower these constructs (measured on torchvision's
architectures and pretrained models; see the README's corpus table):
- a padded MaxPool becomes PADV2 with -3.4e38 before the pool: no int8 scale survives that value, and PADV2 is not
  in the Edge TPU's op table;
- a grouped convolution becomes CONV_2D with groups, opcode version 6, which compiler 16 cannot parse (and one such
  op raises the version of every CONV_2D in the file), as does a depthwise convolution with unequal strides;
- a convolution whose symmetric padding is not TensorFlow's SAME gets an explicit PAD op before it;
- HardSwish becomes HARD_SWISH and HardSigmoid becomes RELU_0_TO_1, neither in the Edge TPU's table;
- a transposed convolution followed by a bias or a ReLU becomes TRANSPOSE_CONV version 3 or 4 (the converter
  fuses them), which compiler 16 cannot parse;
- a one-element constant of shape [1] in an element-wise op (PaddlePaddle exports write them), and a channel
  shuffle written as 5-D Reshape -> Transpose -> Reshape (ShuffleNet), make onnx2tf lose track of the NHWC layout:
  TRANSPOSE ops follow, and depthwise convolutions come out as grouped CONV_2D.

Each rewrite is a function `(Graph) -> the names of the nodes it rewrote`, registered by name in the order they
run: the recipe's `legalize.skip` names rewrites to leave out. The quantization remedies come last and run only when
the recipe asks: cross-layer equalization here, bias correction in bias_correction.py (registered after it).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler_kit.edgetpu.hardware import ARRAY_SIDE
from compiler_kit.legalize.graph import Graph, attribute, remove_attribute, set_attribute


@dataclass(frozen=True)
class Rewrite:
    name: str
    summary: str
    apply: Callable[[Graph], list[str]]
    opt_in: bool = False  # a quantization remedy, run only when the recipe asks (legalize.equalize, ...)
    exact: bool = True  # False: moves the float outputs on purpose (bias correction), checked for a sound graph only


RewriteFunction = Callable[[Graph], list[str]]
REWRITES: dict[str, Rewrite] = {}

# TFLite's converter fuses x * relu6(x + 3) * (1/6) into HARD_SWISH when the constant is float32(1/6) exactly; one
# step below it (relative difference 6e-8) keeps the ADD, RELU6 and MUL ops the Edge TPU maps.
ONE_SIXTH = float(np.nextafter(np.float32(1 / 6), np.float32(0)))
# Ops whose output is never negative, and ops that keep every value of a non-negative input non-negative.
NONNEGATIVE_OPS = frozenset({"Relu", "Sigmoid", "HardSigmoid", "Softmax", "Exp", "Abs", "Softplus"})
SIGN_PRESERVING_OPS = frozenset(
    {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape", "Transpose", "Flatten", "Squeeze",
     "Unsqueeze", "Identity", "Concat"}
)  # fmt: skip
NONNEGATIVE_SEARCH_DEPTH = 16


def rewrite(
    name: str, summary: str, opt_in: bool = False, exact: bool = True
) -> Callable[[RewriteFunction], RewriteFunction]:
    def register(apply: RewriteFunction) -> RewriteFunction:
        REWRITES[name] = Rewrite(name, summary, apply, opt_in, exact)
        return apply

    return register


# --- shapes and padding arithmetic ---


def same_pads(size: list[int], kernel: list[int], strides: list[int]) -> list[int]:
    """TensorFlow's SAME padding in ONNX order [begin..., end...]: the smaller half before, the larger after."""
    totals = [max((math.ceil(n / s) - 1) * s + k - n, 0) for n, k, s in zip(size, kernel, strides, strict=True)]
    return [t // 2 for t in totals] + [t - t // 2 for t in totals]


def output_size(n: int, kernel: int, stride: int, before: int, after: int) -> int:
    return (n + before + after - kernel) // stride + 1


def ceil_mode_pads(size: list[int], kernel: list[int], strides: list[int], pads: list[int]) -> list[int]:
    """The explicit end padding that gives ceil_mode=1's output size with ceil_mode=0 (the last window starts
    inside the input or its begin padding, as onnxruntime and torch count it)."""
    rank = len(size)
    ends = list(pads[rank:])
    for axis, (n, k, s) in enumerate(zip(size, kernel, strides, strict=True)):
        begin = pads[axis]
        out = -(-(n + begin + ends[axis] - k) // s) + 1
        if (out - 1) * s >= n + begin:
            out -= 1
        ends[axis] = max(ends[axis], (out - 1) * s + k - n - begin)
    return list(pads[:rank]) + ends


def _spatial(g: Graph, node: Any) -> list[int] | None:
    shape = g.shape(node.input[0])
    return shape[2:] if shape is not None and len(shape) == 4 else None


def _explicit(node: Any) -> bool:
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    return (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) == "NOTSET"


def nonnegative(g: Graph, name: str, depth: int = NONNEGATIVE_SEARCH_DEPTH) -> bool:
    """Whether every value of `name` is >= 0 whatever the model's input: it comes from a ReLU-like op, or from
    one through ops that keep the sign."""
    if (constant := g.constant(name)) is not None:
        return bool(np.all(constant >= 0))
    node = g.producer(name)
    if node is None or depth == 0:
        return False
    if node.op_type in NONNEGATIVE_OPS:
        return True
    if node.op_type == "Clip":
        low = g.constant(node.input[1]) if len(node.input) > 1 and node.input[1] else attribute(node, "min")
        return low is not None and bool(np.all(np.asarray(low) >= 0))
    if node.op_type in SIGN_PRESERVING_OPS:
        data = node.input if node.op_type == "Concat" else node.input[:1]
        return all(nonnegative(g, value, depth - 1) for value in data)
    return False


# --- the rewrites, in the order they run ---


BINARY_ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"})


@rewrite(
    "singleton_constants",
    "one-element constants of shape [1] in Add, Sub, Mul, Div -> scalars (onnx2tf loses the NHWC layout at the "
    "former: TRANSPOSE ops, and depthwise convolutions after them become grouped CONV_2D)",
)
def singleton_constants(g: Graph) -> list[str]:
    rewritten = []
    for node in g.graph.node:
        if node.op_type not in BINARY_ELEMENTWISE_OPS or len(node.input) != 2:
            continue
        for position, name in enumerate(node.input):
            value = g.constant(name)
            if value is None or value.size != 1 or value.ndim == 0:
                continue
            other = g.shape(node.input[1 - position])  # asked only here: shape inference runs when first asked
            if other is None or len(other) >= 3:
                node.input[position] = g.add_constant(f"{name}_scalar", value.reshape(()))
                rewritten.append(node.name)
    return rewritten


@rewrite("hard_swish", "HardSwish -> x * relu6(x + 3) * 1/6 as ADD, RELU6, MUL (TFLite's HARD_SWISH does not map)")
def hard_swish(g: Graph) -> list[str]:
    return _replace_every(
        g, "HardSwish", lambda node: g.node("Mul", [node.input[0], _hard_sigmoid(g, node, 1 / 6, 0.5)], node.name)
    )


@rewrite(
    "hard_swish_pattern",
    "x * relu6(x + 3) / 6 written out (Div by 6, Mul by 1/6) -> Mul by 1/6 one float step lower, which TFLite does "
    "not fuse into HARD_SWISH",
)
def hard_swish_pattern(g: Graph) -> list[str]:
    rewritten = []
    for node in list(g.graph.node):
        if node.op_type not in ("Div", "Mul") or len(node.input) != 2:
            continue
        constant = g.constant(node.input[1])
        if constant is None or constant.size != 1 or not np.issubdtype(constant.dtype, np.floating):
            continue
        if (node.op_type, float(constant.reshape(()))) not in (("Div", 6.0), ("Mul", float(np.float32(1 / 6)))):
            continue
        node.op_type = "Mul"
        node.input[1] = g.add_constant(f"{node.name or 'Mul'}_sixth", np.asarray(ONE_SIXTH, dtype=constant.dtype))
        rewritten.append(node.name)
    return rewritten


@rewrite("hard_sigmoid", "HardSigmoid -> relu6(6a*x + 6b) * 1/6 as MUL, ADD, RELU6, MUL (RELU_0_TO_1 does not map)")
def hard_sigmoid(g: Graph) -> list[str]:
    return _replace_every(
        g,
        "HardSigmoid",
        lambda node: _hard_sigmoid(g, node, attribute(node, "alpha", 0.2), attribute(node, "beta", 0.5)),
    )


def _replace_every(g: Graph, op_type: str, make: Callable[[Any], str]) -> list[str]:
    """Each node of `op_type` replaced by what `make(node)` builds; the names of the nodes replaced."""
    found = [node for node in g.graph.node if node.op_type == op_type]
    for node in found:
        g.replace(node, lambda node=node: make(node))
    return [node.name for node in found]


def _hard_sigmoid(g: Graph, node: Any, alpha: float, beta: float) -> str:
    """clip(alpha*x + beta, 0, 1) written as relu6(6*alpha*x + 6*beta) / 6, in ops every converter keeps."""
    x, base = node.input[0], node.name or node.op_type
    if not math.isclose(6 * alpha, 1, rel_tol=1e-6):
        x = g.node("Mul", [x, g.add_constant(f"{base}_scale", np.float32(6 * alpha))], f"{base}_scale")
    shifted = g.node("Add", [x, g.add_constant(f"{base}_shift", np.float32(6 * beta))], f"{base}_shift")
    clipped = _clip(g, shifted, 0.0, 6.0, f"{base}_relu6")
    return g.node("Mul", [clipped, g.add_constant(f"{base}_sixth", np.float32(ONE_SIXTH))], f"{base}_sixth")


def _clip(g: Graph, x: str, low: float, high: float, base: str) -> str:
    if g.opset < 11:  # min and max were attributes before opset 11
        return g.node("Clip", [x], base, min=low, max=high)
    bounds = [g.add_constant(f"{base}_{side}", np.float32(v)) for side, v in (("min", low), ("max", high))]
    return g.node("Clip", [x, *bounds], base)


@rewrite(
    "maxpool_padding",
    "padded MaxPool -> Pad with 0 (its input is >= 0) or with the edge values (Slice + Concat), then an unpadded "
    "MaxPool: no PADV2 of -inf",
)
def maxpool_padding(g: Graph) -> list[str]:
    rewritten = []
    for node in list(g.graph.node):
        size = _spatial(g, node) if node.op_type == "MaxPool" and len(node.output) == 1 else None
        if size is None or not _explicit(node) or any(d != 1 for d in attribute(node, "dilations", [1, 1])):
            continue
        kernel, strides = list(attribute(node, "kernel_shape")), list(attribute(node, "strides", [1, 1]))
        written = list(attribute(node, "pads", [0, 0, 0, 0]))
        ceil_mode = attribute(node, "ceil_mode", 0)
        pads = ceil_mode_pads(size, kernel, strides, written) if ceil_mode else written
        if not any(pads) or (pads == written and pads == same_pads(size, kernel, strides)):
            continue  # onnx2tf lowers SAME-equivalent padding to a SAME pool, which never reads the padding
        if pads == same_pads(size, kernel, strides):  # SAME once ceil_mode's end padding is written out
            set_attribute(node, "pads", pads)
            set_attribute(node, "ceil_mode", 0)
        else:
            g.replace(node, lambda node=node, pads=pads, size=size: _padded_pool(g, node, pads, size))
        rewritten.append(node.name)
    return rewritten


def _padded_pool(g: Graph, node: Any, pads: list[int], size: list[int]) -> str:
    base, x = node.name or "MaxPool", node.input[0]
    if nonnegative(g, x):
        onnx_pads = g.add_constant(f"{base}_pads", np.array([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]))
        padded = g.node("Pad", [x, onnx_pads], f"{base}_pad", mode="constant")
    else:
        padded = _edge_pad(g, x, pads, size, base)
    strides = list(attribute(node, "strides", [1, 1]))
    return g.node("MaxPool", [padded], base, kernel_shape=list(attribute(node, "kernel_shape")), strides=strides)


def _edge_pad(g: Graph, x: str, pads: list[int], size: list[int], base: str) -> str:
    """Repeat the first and last row (then column) as padding. Exact for a max-pool: a window that covers padding
    also covers the edge value it repeats (ONNX requires each pad to be smaller than the kernel)."""
    for axis, n in zip((2, 3), size, strict=True):
        before, after = pads[axis - 2], pads[axis]
        if not before and not after:
            continue
        first = _slice(g, x, axis, 0, 1, f"{base}_edge{axis}_first")
        last = _slice(g, x, axis, n - 1, n, f"{base}_edge{axis}_last")
        x = g.node("Concat", [first] * before + [x] + [last] * after, f"{base}_edge{axis}", axis=axis)
    return x


def _slice(g: Graph, x: str, axis: int, start: int, end: int, base: str) -> str:
    arguments = [g.add_constant(f"{base}_{part}", np.array([v])) for part, v in (("starts", start), ("ends", end))]
    return g.node("Slice", [x, *arguments, g.add_constant(f"{base}_axes", np.array([axis]))], base)


@rewrite(
    "grouped_conv",
    "grouped Conv -> one Conv per chunk of consecutive groups up to the Edge TPU's 64 channels, its weights "
    "block-diagonal (zeros between the groups), chunks split and concatenated (grouped CONV_2D is version 6)",
)
def grouped_conv(g: Graph) -> list[str]:
    rewritten = []
    for node in list(g.graph.node):
        groups = attribute(node, "group", 1) if node.op_type == "Conv" else 1
        weights = g.constant(node.input[1]) if groups > 1 else None
        if weights is None or weights.shape[1] == 1 or weights.ndim != 4:  # per-group width 1: depthwise
            continue
        g.replace(node, lambda node=node, weights=weights, groups=groups: _chunked_conv(g, node, weights, groups))
        rewritten.append(node.name)
    return rewritten


def group_chunks(groups: int, width: int, per_group: int) -> list[range]:
    """Consecutive groups merged while a chunk's input and output channels fit the Edge TPU's 64-wide array.

    A convolution with fewer than 64 input or output channels leaves the rest of each pass over the array idle (as
    latency.py models it), so a dense convolution over a chunk of narrow groups takes no more passes than one of
    those groups alone: the zeros between the groups fill cells that would idle. And the converters see a few ops
    instead of one per group: onnx2tf converts ops one at a time, and RegNet-Y 400MF's 531 per-group convolutions
    with their Slices took two thirds of its time (73 chunks now; predicted USB 6.10 -> 3.61 ms). Chunks stop at 64
    channels: wider, the zeros would cost passes. The weights grow with the groups merged (RegNet-Y 400MF: 4.4 ->
    6.8 MB, within the 7.05 MiB on-chip cache; beyond it they would stream, which the latency prediction counts)."""
    merged = max(1, ARRAY_SIDE // max(width, per_group))
    return [range(first, min(first + merged, groups)) for first in range(0, groups, merged)]


def _chunked_conv(g: Graph, node: Any, weights: np.ndarray, groups: int) -> str:
    """Exact: each output channel sums the products of its own group's inputs, as before, plus products with zero
    weights, which add nothing. In int8 too with per-channel weights (the default): a zero weight quantizes to zero
    and leaves its channel's largest weight, hence its scale, as it was; per-tensor weights share one scale per
    chunk instead of one per group."""
    base = node.name or "Conv"
    bias = g.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    width, per_group = weights.shape[1], weights.shape[0] // groups
    attributes = {a.name: attribute(node, a.name) for a in node.attribute if a.name != "group"}
    chunks = group_chunks(groups, width, per_group)
    parts = [node.input[0]]  # one chunk: the input as it is
    if len(chunks) > 1:
        parts = _split(g, node.input[0], [width * len(chunk) for chunk in chunks], f"{base}_split")
    convs = []
    for index, (part, chunk) in enumerate(zip(parts, chunks, strict=True)):
        rows = slice(chunk.start * per_group, chunk.stop * per_group)
        inputs = [part, g.add_constant(f"{base}_w{index}", _block_diagonal(weights[rows], len(chunk)))]
        if bias is not None:
            inputs.append(g.add_constant(f"{base}_b{index}", bias[rows]))
        convs.append(g.node("Conv", inputs, f"{base}_g{index}", **attributes))
    return convs[0] if len(convs) == 1 else g.node("Concat", convs, f"{base}_concat", axis=1)


def _block_diagonal(weights: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's weights [groups * out, in, kh, kw] as one dense convolution's [groups * out,
    groups * in, kh, kw]: group j's block where its outputs meet its inputs, zeros elsewhere."""
    out, width = weights.shape[0] // groups, weights.shape[1]
    dense = np.zeros((weights.shape[0], groups * width, *weights.shape[2:]), dtype=weights.dtype)
    for j in range(groups):
        dense[j * out : (j + 1) * out, j * width : (j + 1) * width] = weights[j * out : (j + 1) * out]
    return dense


def _split(g: Graph, x: str, sizes: list[int], base: str) -> list[str]:
    """The channel chunks as one Slice each. Not a Split: onnxruntime (1.23) externalizes the int64 sizes of a
    Split with many outputs in a large model and then cannot read them back for shape inference."""
    starts = np.cumsum([0, *sizes])
    return [_slice(g, x, 1, int(a), int(b), f"{base}{i}") for i, (a, b) in enumerate(itertools.pairwise(starts))]


@rewrite(
    "depthwise_strides",
    "depthwise Conv with unequal strides -> stride-1 depthwise Conv + 1x1 MaxPool with those strides "
    "(TensorFlow's depthwise convolution takes equal strides only)",
)
def depthwise_strides(g: Graph) -> list[str]:
    rewritten = []
    for node in list(g.graph.node):
        if node.op_type != "Conv" or attribute(node, "group", 1) == 1:
            continue
        weights, strides = g.constant(node.input[1]), list(attribute(node, "strides", [1, 1]))
        if weights is None or weights.ndim != 4 or weights.shape[1] != 1 or len(set(strides)) == 1:
            continue
        _subsample_after(g, node, strides)
        rewritten.append(node.name)
    return rewritten


def _subsample_after(g: Graph, conv: Any, strides: list[int]) -> None:
    """Output (i, j) of a stride-(sh, sw) convolution is output (i*sh, j*sw) of the stride-1 one, so the conv runs
    with stride 1 and a 1x1 MaxPool with the strides subsamples (a plain MAX_POOL_2D after onnx2tf). The pool goes
    after the element-wise ops that follow the conv (they commute with subsampling): TFLite would fuse a following
    ReLU into the pool, and the Edge TPU maps no pool with a fused activation."""
    set_attribute(conv, "strides", [1, 1])
    last = conv
    while (after := _single_elementwise_consumer(g, last.output[0])) is not None:
        last = after
    subsampled = last.output[0]
    last.output[0] = g.fresh(f"{conv.name or 'Conv'}_stride1_out")
    base = f"{conv.name or 'Conv'}_subsample"
    g.insert_after(last, "MaxPool", [last.output[0]], [subsampled], base, kernel_shape=[1, 1], strides=strides)


ELEMENTWISE_OPS = frozenset(
    {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "BatchNormalization", "Tanh", "Elu"}
)


def _single_elementwise_consumer(g: Graph, value: str) -> Any | None:
    consumer = g.single_consumer(value)
    if consumer is None or consumer.op_type not in ELEMENTWISE_OPS or consumer.input[0] != value:
        return None
    return consumer


@rewrite(
    "channel_shuffle",
    "Reshape -> Transpose -> Reshape that only permutes channels (ShuffleNet's channel shuffle) -> a 1x1 Conv with "
    "a permutation matrix: no 5-D tensors (the Edge TPU maps 3 dimensions above 1), and onnx2tf keeps NHWC after it",
)
def channel_shuffle(g: Graph) -> list[str]:
    rewritten = []
    for node in list(g.graph.node):
        chain = _reshape_transpose_reshape(g, node)
        permutation = _channel_permutation(g, chain) if chain else None
        if chain is None or permutation is None:
            continue
        first, middle, last = chain
        channels = len(permutation)
        weights = np.zeros((channels, channels, 1, 1), dtype=np.float32)
        weights[np.arange(channels), permutation] = 1.0
        last.op_type, last.input[:] = "Conv", [first.input[0], g.add_constant(f"{last.name}_permutation", weights)]
        del last.attribute[:]
        for dropped in (first, middle):
            g.graph.node.remove(dropped)
        rewritten.append(first.name)
    return rewritten


def _reshape_transpose_reshape(g: Graph, node: Any) -> tuple[Any, Any, Any] | None:
    if node.op_type != "Reshape":
        return None
    middle = g.single_consumer(node.output[0])
    last = g.single_consumer(middle.output[0]) if middle is not None and middle.op_type == "Transpose" else None
    return (node, middle, last) if last is not None and last.op_type == "Reshape" else None


def _channel_permutation(g: Graph, chain: tuple[Any, Any, Any]) -> np.ndarray | None:
    """The channel order the chain produces when it moves whole channels and nothing else, else None: found by
    running the chain on tensors holding each element's channel index and its spatial index."""
    first, middle, last = chain
    shape, out_shape = g.shape(first.input[0]), g.shape(last.output[0])
    target, out_target = g.constant(first.input[1]), g.constant(last.input[1])
    if shape is None or out_shape != shape or len(shape) != 4 or shape[0] != 1 or target is None or out_target is None:
        return None
    perm = attribute(middle, "perm")
    channel = np.broadcast_to(np.arange(shape[1]).reshape(1, -1, 1, 1), shape)
    spatial = np.broadcast_to(np.arange(shape[2] * shape[3]).reshape(1, 1, shape[2], shape[3]), shape)
    try:
        moved = [t.reshape(_reshape_target(target, shape)).transpose(perm).reshape(shape) for t in (channel, spatial)]
    except ValueError:  # a shape with 0 or -1 entries numpy cannot take: leave it to the converter
        return None
    if not np.array_equal(moved[1], spatial) or not np.all(moved[0] == moved[0][:, :, :1, :1]):
        return None
    permutation = moved[0][0, :, 0, 0]
    return permutation if not np.array_equal(permutation, np.arange(shape[1])) else None


def _reshape_target(target: np.ndarray, shape: list[int]) -> list[int]:
    """ONNX Reshape's target: 0 copies the input's dimension, -1 is inferred (numpy does that one)."""
    return [shape[axis] if int(d) == 0 and axis < len(shape) else int(d) for axis, d in enumerate(target)]


@rewrite(
    "transpose_conv_unfused",
    "ConvTranspose -> the sum of two ConvTranspose with half the kernel taps each, bias added after: TFLite would "
    "fuse the bias and a following ReLU into TRANSPOSE_CONV (versions 3 and 4, which compiler 16 cannot parse)",
)
def transpose_conv_unfused(g: Graph) -> list[str]:
    """A sum of two tensors is no bias and no activation: each TRANSPOSE_CONV stays version 2 (the converter fuses
    the bias and the activation into the ADD instead). Exact: the transposed convolution is linear in its kernel."""
    rewritten = []
    for node in list(g.graph.node):
        weights = g.constant(node.input[1]) if node.op_type == "ConvTranspose" else None
        if weights is None or weights.ndim != 4 or weights.shape[2] * weights.shape[3] < 2:
            continue
        has_bias = len(node.input) > 2 and bool(node.input[2])
        bias = g.constant(node.input[2]) if has_bias else None
        if has_bias and bias is None:
            continue  # a computed bias: no [C, 1, 1] constant to add after the sum, the node stays as it is
        g.replace(node, lambda node=node, weights=weights, bias=bias: _halves(g, node, weights, bias))
        rewritten.append(node.name)
    return rewritten


def _halves(g: Graph, node: Any, weights: np.ndarray, bias: np.ndarray | None) -> str:
    base = node.name or "ConvTranspose"
    taps = np.zeros(weights.shape[2:], dtype=bool).reshape(-1)
    taps[: taps.size // 2] = True
    first = np.where(taps.reshape(weights.shape[2:]), weights, 0).astype(weights.dtype)
    attributes = {a.name: attribute(node, a.name) for a in node.attribute}
    parts = [
        g.node("ConvTranspose", [node.input[0], g.add_constant(f"{base}_taps{i}", w)], f"{base}_taps{i}", **attributes)
        for i, w in enumerate((first, weights - first))
    ]
    total = g.node("Add", parts, f"{base}_sum")
    if bias is not None:  # per output channel: [C, 1, 1] broadcasts over NCHW
        total = g.node("Add", [total, g.add_constant(f"{base}_bias", bias.reshape(-1, 1, 1))], f"{base}_bias")
    return total


@rewrite(
    "conv_padding_same",
    "padded Conv -> SAME padding, where needed with a kernel one larger whose extra taps are zero: no PAD op",
)
def conv_padding_same(g: Graph) -> list[str]:
    """onnx2tf keeps explicit padding (a PAD op) for every padded convolution but the stride-1 ones whose output
    size equals the input's; SAME_UPPER (TensorFlow's SAME) it lowers without one."""
    rewritten = []
    for node in list(g.graph.node):
        size = _spatial(g, node) if node.op_type == "Conv" else None
        weights = g.constant(node.input[1]) if size is not None else None
        if size is None or weights is None or weights.ndim != 4 or not _explicit(node):
            continue
        if any(d != 1 for d in attribute(node, "dilations", [1, 1])):
            continue
        kernel, strides = list(weights.shape[2:]), list(attribute(node, "strides", [1, 1]))
        pads = list(attribute(node, "pads", [0, 0, 0, 0]))
        if not any(pads) or (set(strides) == {1} and pads == same_pads(size, kernel, strides)):
            continue  # nothing to pad, or onnx2tf folds the padding into SAME already
        grown = _grown_kernel(size, kernel, strides, pads)
        if grown is None:
            continue
        if grown != kernel:
            padded = np.zeros((*weights.shape[:2], *grown), dtype=weights.dtype)
            padded[:, :, : kernel[0], : kernel[1]] = weights
            node.input[1] = g.add_constant(f"{node.name or 'Conv'}_w_same", padded)
            set_attribute(node, "kernel_shape", grown)
        remove_attribute(node, "pads")
        set_attribute(node, "auto_pad", "SAME_UPPER")
        rewritten.append(node.name)
    return rewritten


def _grown_kernel(size: list[int], kernel: list[int], strides: list[int], pads: list[int]) -> list[int] | None:
    """Per axis the kernel (k or k + 1) whose SAME padding starts with the original's begin padding and gives
    the original output size; None when no such kernel exists."""
    grown = []
    for axis, (n, k, s) in enumerate(zip(size, kernel, strides, strict=True)):
        before, after = pads[axis], pads[axis + len(size)]
        wanted = output_size(n, k, s, before, after)
        fit = next(
            (c for c in (k, k + 1) if same_pads([n], [c], [s])[0] == before and math.ceil(n / s) == wanted), None
        )
        if fit is None:
            return None
        grown.append(fit)
    return grown


# --- a quantization remedy, opt-in: it changes no op, only how the channel ranges are spread ---


@rewrite(
    "cross_layer_equalization",
    "Conv -> Relu (-> pooling) -> Conv: each channel scaled down in the first convolution and up in the second so "
    "both have the same range (Nagel et al., 2019); exact, as relu(x / s) = relu(x) / s for s > 0",
    opt_in=True,
)
def cross_layer_equalization(g: Graph) -> list[str]:
    """One channel far wider than the others sets the int8 step of the whole activation between the two
    convolutions; balanced, every channel keeps its precision. Only Relu is positively homogeneous (Relu6 clips)."""
    rewritten = []
    for first in list(g.graph.node):
        pair = _equalizable(g, first)
        if pair is None:
            continue
        second, w1, w2 = pair
        r1 = np.abs(w1).reshape(len(w1), -1).max(axis=1)
        r2 = _input_channel_ranges(second, w2)
        scale = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 * r2) / np.where(r2 > 0, r2, 1.0), 1.0)
        if np.allclose(scale, 1.0):
            continue
        first.input[1] = g.add_constant(f"{first.name}_equalized_w", w1 / scale.reshape(-1, 1, 1, 1))
        if len(first.input) > 2 and first.input[2]:
            bias = g.constant(first.input[2])
            assert bias is not None  # _equalizable checked it
            first.input[2] = g.add_constant(f"{first.name}_equalized_b", bias / scale)
        second.input[1] = g.add_constant(f"{second.name}_equalized_w", w2 * _along_input(second, scale, w2.ndim))
        rewritten.append(first.name)
    return rewritten


# Per-channel ops that commute with a positive per-channel scale, so they may sit between the two convolutions.
SCALE_EQUIVARIANT_POOLS = frozenset({"MaxPool", "AveragePool"})


def _equalizable(g: Graph, first: Any) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """(second Conv, first weights, second weights) when `first` is a 2-D Conv -> Relu -> (pools) -> Conv with
    constant weights and bias, each step read by nothing else."""
    if first.op_type != "Conv" or len(first.input) < 2:
        return None
    relu = g.single_consumer(first.output[0])
    second = g.single_consumer(relu.output[0]) if relu is not None and relu.op_type == "Relu" else None
    while second is not None and second.op_type in SCALE_EQUIVARIANT_POOLS:
        second = g.single_consumer(second.output[0])
    if second is None or second.op_type != "Conv":
        return None
    w1, w2 = g.constant(first.input[1]), g.constant(second.input[1])
    has_bias = len(first.input) > 2 and bool(first.input[2])
    if w1 is None or w2 is None or w1.ndim != 4 or w2.ndim != 4 or (has_bias and g.constant(first.input[2]) is None):
        return None
    groups, channels = attribute(second, "group", 1), len(w1)
    plain, depthwise = (
        groups == 1 and w2.shape[1] == channels,
        groups == channels and w2.shape == (channels, 1, *w2.shape[2:]),
    )
    return (second, w1, w2) if plain or depthwise else None


def _input_channel_ranges(second: Any, w2: np.ndarray) -> np.ndarray:
    """Each input channel's largest weight magnitude: over output channels (plain) or its own filter (depthwise)."""
    axes = (1, 2, 3) if attribute(second, "group", 1) > 1 else (0, 2, 3)
    return np.abs(w2).max(axis=axes)


def _along_input(second: Any, scale: np.ndarray, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[0 if attribute(second, "group", 1) > 1 else 1] = len(scale)
    return scale.reshape(shape)
