"""Tiny .tflite graphs written op by op with LiteRT's flatbuffer schema: the graphs no converter emits on request
(a CAST before the first Edge TPU op, a custom op, an LSTM's int16 state) in a few milliseconds, no TensorFlow.

    graph = TinyGraph()
    x = graph.tensor("x", "int8", [1, 4, 4, 2], model_input=True)
    y = graph.tensor("y", "int8", [1, 4, 4, 2], model_output=True)
    graph.op("ADD", [x, x], [y])
    path = graph.write(tmp_path / "add.tflite")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

TYPES = {
    "float32": schema.TensorType.FLOAT32, "int32": schema.TensorType.INT32, "uint8": schema.TensorType.UINT8,
    "int64": schema.TensorType.INT64, "int16": schema.TensorType.INT16, "int8": schema.TensorType.INT8,
}  # fmt: skip


class TinyGraph:
    def __init__(self) -> None:
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel of tensors without data
        self.model.operatorCodes = []
        self.graph = schema.SubGraphT()
        self.graph.tensors, self.graph.operators, self.graph.inputs, self.graph.outputs = [], [], [], []
        self.model.subgraphs = [self.graph]

    def tensor(
        self,
        name: str,
        dtype: str,
        shape: list[int],
        data: np.ndarray | None = None,
        model_input: bool = False,
        model_output: bool = False,
        variable: bool = False,
    ) -> int:
        """A tensor's index; `data` makes it a constant. 8-bit tensors get a scale of 1 (LiteRT prepares them)."""
        tensor = schema.TensorT()
        tensor.name, tensor.type, tensor.shape, tensor.isVariable = name.encode(), TYPES[dtype], shape, variable
        tensor.buffer = 0
        if data is not None:
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data, dtype=dtype).tobytes(), dtype=np.uint8)
            self.model.buffers.append(buffer)
            tensor.buffer = len(self.model.buffers) - 1
        if dtype in ("int8", "uint8", "int16"):
            tensor.quantization = schema.QuantizationParametersT()
            tensor.quantization.scale, tensor.quantization.zeroPoint = [1.0], [0]
        self.graph.tensors.append(tensor)
        index = len(self.graph.tensors) - 1
        if model_input:
            self.graph.inputs.append(index)
        if model_output:
            self.graph.outputs.append(index)
        return index

    def constant(self, name: str, dtype: str, values: list[Any] | np.ndarray) -> int:
        array = np.asarray(values, dtype=dtype)
        return self.tensor(name, dtype, list(array.shape), data=array)

    def op(
        self,
        operator: str,
        inputs: list[int],
        outputs: list[int],
        options: Any = None,
        custom: str | None = None,
        builtin_code: int | None = None,
    ) -> None:
        """An op by builtin name (`options`: its *OptionsT), a custom op by `custom` name, or a raw `builtin_code`."""
        code = schema.OperatorCodeT()
        code.builtinCode = (
            builtin_code
            if builtin_code is not None
            else schema.BuiltinOperator.CUSTOM
            if custom
            else getattr(schema.BuiltinOperator, operator)
        )
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        code.customCode, code.version = custom, 1
        self.model.operatorCodes.append(code)
        raw = schema.OperatorT()
        raw.opcodeIndex, raw.inputs, raw.outputs = len(self.model.operatorCodes) - 1, inputs, outputs
        if options is not None:
            raw.builtinOptionsType = getattr(schema.BuiltinOptions, type(options).__name__[:-1])
            raw.builtinOptions = options
        self.graph.operators.append(raw)

    def write(self, path: Path) -> Path:
        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        path.write_bytes(bytes(builder.Output()))
        return path


def conv_weights(graph: TinyGraph, name: str, channels_in: int, channels_out: int) -> tuple[int, int]:
    """A 1x1 convolution's constant int8 filter and int32 bias."""
    filter_ = graph.constant(f"{name}/filter", "int8", np.ones((channels_out, 1, 1, channels_in)))
    return filter_, graph.constant(f"{name}/bias", "int32", np.zeros(channels_out))
