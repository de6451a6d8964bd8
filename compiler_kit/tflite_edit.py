"""Edits of a TFLite model's constant data in the flatbuffer's object API, shared by the int8 model's remedies."""

from __future__ import annotations

from typing import Any

import numpy as np


def tensor_data(model: Any, index: int, dtype: type) -> np.ndarray:
    """The constant data of tensor `index` of the first subgraph, as a flat array of `dtype`."""
    tensor = model.subgraphs[0].tensors[index]
    return np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)), dtype)


def write_tensor_data(model: Any, index: int, values: np.ndarray) -> None:
    """Replace the constant data of tensor `index`; into a buffer of its own when another tensor shares its buffer
    (the converter may store equal constants once)."""
    from ai_edge_litert import schema_py_generated as schema

    tensors = model.subgraphs[0].tensors
    tensor = tensors[index]
    if sum(other.buffer == tensor.buffer for other in tensors) > 1:
        model.buffers.append(schema.BufferT())
        tensor.buffer = len(model.buffers) - 1
    model.buffers[tensor.buffer].data = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)


def packed(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
