"""Which ops of a .tflite model LiteRT's XNNPACK delegate leaves to the builtin kernels, read from the interpreter.

XNNPACK, LiteRT's default CPU delegate, takes no int8 AVERAGE_POOL_2D, SOFTMAX, HARD_SWISH, PRELU, MAXIMUM, GELU,
RSQRT, ... (it takes the float ones). The int8 model then runs those ops on the slower builtin kernels and is cut
into more partitions, each copying its tensors in and out: that is how an int8 model ends up slower than its float
twin (seen with ai-edge-litert 2.1.0 on x86-64). This module names those ops, as LiteRT partitioned the model.

How: after `allocate_tensors()` (where the default delegate is applied, not in the constructor),
`interpreter._get_ops_details()` lists the model's original nodes followed by one "DELEGATE" node per XNNPACK
partition. Original nodes stay listed whether delegated or not, and the execution plan is not exposed, but each
DELEGATE node carries its partition's boundary tensors: the inputs are every tensor its nodes read and do not
produce themselves (weights too), the outputs what it hands on. Walking producers back from the outputs, stopping
at the inputs, recovers exactly the partition's nodes; whatever no partition holds runs on a builtin kernel.

Rejected: the "Replacing N out of M node(s) with delegate (TfLiteXNNPackDelegate) node" line is logged at
verbose level, which this Python package cannot switch on (stderr shows only "Created TensorFlow Lite XNNPACK
delegate"), and gives counts without op names; the profiler and runtime-info protos are not exposed in Python.
Checked on about 115 small models and MobileNetV2/V3Small (float, fp16, dynamic range, int8) against a second reading:
with `experimental_preserve_all_tensors` XNNPACK makes one DELEGATE node per op it takes; both agreed everywhere.

Only subgraph 0 is visible through this API: ops inside WHILE/IF bodies are not counted, the WHILE itself is.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from compiler_kit import lazy

DELEGATE = "DELEGATE"  # the op name LiteRT gives a delegate's node (it is no op of the model)

Node = dict[str, Any]  # one entry of `_get_ops_details()`: index, op_name, inputs, outputs (tensor indices)


def ops_outside_xnnpack(model_path: Path, threads: int) -> dict[str, int]:
    """Op name -> how many of its nodes run outside XNNPACK when LiteRT runs `model_path` on `threads` threads,
    most frequent first; {} when XNNPACK takes the whole graph. Every op when the runtime has no XNNPACK."""
    interpreter_class, _ = lazy.litert_interpreter()
    # Configured as LiteRtRunner configures it, so the partition is the one that was timed.
    interpreter = interpreter_class(model_path=str(model_path), num_threads=threads)
    interpreter.allocate_tensors()  # applies the default delegate
    nodes = interpreter._get_ops_details()
    delegated = delegated_nodes(nodes)
    outside = Counter(node["op_name"] for node in _model_nodes(nodes) if node["index"] not in delegated)
    return dict(outside.most_common())


def delegated_nodes(nodes: list[Node]) -> set[int]:
    """Indices of the model's nodes that some delegate node replaced."""
    producer = {tensor: node["index"] for node in _model_nodes(nodes) for tensor in node["outputs"]}
    inputs = {node["index"]: node["inputs"] for node in nodes}
    taken: set[int] = set()
    for node in nodes:
        if node["op_name"] == DELEGATE:
            taken |= _partition(node, producer, inputs)
    return taken


def _partition(delegate: Node, producer: dict[int, int], inputs: dict[int, Any]) -> set[int]:
    """The nodes a delegate node stands for: every producer between its output tensors and its input tensors."""
    boundary = set(delegate["inputs"])
    nodes: set[int] = set()
    pending = [tensor for tensor in delegate["outputs"] if tensor >= 0]
    while pending:
        tensor = pending.pop()
        if tensor in boundary or tensor not in producer or producer[tensor] in nodes:
            continue  # read from outside the partition, a model input or constant, or already walked
        index = producer[tensor]
        nodes.add(index)
        pending.extend(t for t in inputs[index] if t >= 0)  # -1: an optional input left out
    return nodes


def _model_nodes(nodes: list[Node]) -> list[Node]:
    return [node for node in nodes if node["op_name"] != DELEGATE]
