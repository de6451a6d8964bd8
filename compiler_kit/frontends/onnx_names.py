"""Names as real ONNX files carry them, made acceptable to onnx2tf, with the way back to the originals.

onnx2tf turns node and tensor names into TensorFlow scope names, which must match `[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*`;
it rewrites ':' and a leading '/' itself (torch exports '/layer1/Conv'), and stops on anything else ("'Softmax@0'
is not a valid scope name"). ckit renames the offenders in its own copy of the model and keeps
{new name: original name}, so messages and reports still show the names the user knows.
"""

from __future__ import annotations

import re
from typing import Any

_INVALID = re.compile(r"[^A-Za-z0-9_.\\/>:-]")
_VALID_START = re.compile(r"[A-Za-z0-9./]")


def acceptable(name: str) -> str:
    """`name` with every character onnx2tf rejects replaced by '_' (and a valid first character)."""
    cleaned = _INVALID.sub("_", name)
    return cleaned if not cleaned or _VALID_START.match(cleaned) else f"n{cleaned}"


def sanitize_names(model: Any) -> dict[str, str]:
    """Rename, in place, the nodes and values (inputs, outputs, initializers, intermediate tensors) whose names
    onnx2tf rejects; returns {new name: original name} for the renamed ones."""
    graph = model.graph
    values = {name for node in graph.node for name in (*node.input, *node.output)}
    values |= {v.name for v in (*graph.input, *graph.output, *graph.value_info)} | {i.name for i in graph.initializer}
    values.discard("")  # an omitted optional input
    renamed_values = _renames(values)
    renamed_nodes = _renames(
        {node.name for node in graph.node if node.name}, taken=values | set(renamed_values.values())
    )
    for node in graph.node:
        node.name = renamed_nodes.get(node.name, node.name)
        for field in (node.input, node.output):
            field[:] = [renamed_values.get(name, name) for name in field]
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = renamed_values.get(value.name, value.name)
    return {new: old for old, new in (*renamed_values.items(), *renamed_nodes.items())}


def _renames(names: set[str], taken: set[str] | None = None) -> dict[str, str]:
    """{original: acceptable and unused name} for the names that need a change."""
    used = set(names) | (taken or set())
    renames = {}
    for name in sorted(names):
        if (cleaned := acceptable(name)) == name:
            continue
        candidate, suffix = cleaned, 0
        while candidate in used:
            suffix += 1
            candidate = f"{cleaned}_{suffix}"
        used.add(candidate)
        renames[name] = candidate
    return renames
