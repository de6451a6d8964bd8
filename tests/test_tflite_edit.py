"""Edits of a TFLite model's constants: a buffer two tensors share is split before one of them changes."""

from __future__ import annotations

import numpy as np

from compiler_kit.tflite_edit import tensor_data, write_tensor_data


def test_a_shared_buffer_is_split_before_it_changes() -> None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    shared = schema.BufferT()
    shared.data = np.frombuffer(np.array([1, 2], np.int32).tobytes(), np.uint8)
    model.buffers = [schema.BufferT(), shared]
    tensors = []
    for _ in range(2):
        tensor = schema.TensorT()
        tensor.buffer = 1
        tensors.append(tensor)
    subgraph = schema.SubGraphT()
    subgraph.tensors = tensors
    model.subgraphs = [subgraph]
    write_tensor_data(model, 0, np.array([11, -8], np.int32))
    assert tensors[1].buffer == 1 and tensors[0].buffer == 2
    assert tensor_data(model, 1, np.int32).tolist() == [1, 2]
    assert tensor_data(model, 0, np.int32).tolist() == [11, -8]
    write_tensor_data(model, 0, np.array([12, -7], np.int32))  # its own buffer now: edited in place
    assert len(model.buffers) == 3 and tensor_data(model, 0, np.int32).tolist() == [12, -7]
