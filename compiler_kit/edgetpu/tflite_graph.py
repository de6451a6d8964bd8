"""An int8 .tflite read into its main subgraph's ops and tensors, with LiteRT's generated flatbuffer schema (no
TensorFlow import, so it is fast). A file that is not a readable TFLite model is a BadInputError naming the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from compiler_kit.edgetpu.statuses import MAPPED
from compiler_kit.errors import BadInputError, broken_symlink


def _enum_names(enum: type) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_") and isinstance(value, int)}


OP_NAMES = _enum_names(schema.BuiltinOperator)
TYPE_NAMES = {value: name.lower() for value, name in _enum_names(schema.TensorType).items()}
ACTIVATION_NAMES = _enum_names(schema.ActivationFunctionType)
FILE_IDENTIFIER = b"TFL3"

# Custom ops a stock LiteRT interpreter registers, and the types of data inputs its kernel reads (LiteRT's
# detection_postprocess.cc: float32 or uint8; an int8 model's scores fail to invoke).
STOCK_CUSTOM_OPS = {"TFLite_Detection_PostProcess": frozenset({"float32", "uint8"})}
# Constant integer inputs that are arguments, not data: biases, shapes, axes, paddings, permutations.
PARAM_TYPES = frozenset({"int32", "int64"})
_RECONVERT = "convert the model again (ckit build writes model_int8.tflite), or copy the file again"


@dataclass(frozen=True)
class Tensor:
    index: int
    buffer: int
    name: str
    dtype: str
    shape: tuple[int, ...]  # the shape signature when the model has one: -1 is a dynamic dimension
    constant: bool
    nbytes: int  # of its constant data
    values: np.ndarray | None  # raw constant bytes, when stored inside the flatbuffer
    variable: bool = False  # state the interpreter keeps between invocations (an LSTM's cell and hidden state)

    @property
    def dynamic(self) -> bool:
        return -1 in self.shape

    def ints(self) -> list[int]:
        """The values of a constant int32/int64 argument (axes, paddings), or [] when they are not at hand."""
        itemsize = np.dtype(self.dtype).itemsize if self.dtype in PARAM_TYPES else 0
        if self.values is None or not itemsize or len(self.values) % itemsize:  # a corrupt file's odd byte count
            return []
        return [int(v) for v in self.values.view(np.dtype(self.dtype))]

    def describe(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"

    def as_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass
class Op:
    index: int
    operator: str
    version: int
    inputs: list[Tensor | None]  # None: an omitted optional input (index -1)
    outputs: list[Tensor]
    options: Any
    kind: str = "builtin"  # "custom" (customCode names it) or "unknown" (a builtin code this schema lacks)
    status: str = MAPPED
    reason: str = ""
    macs: int = 0

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED

    @property
    def runs_here(self) -> bool:
        """Whether a stock LiteRT interpreter has a kernel for it: every builtin op this schema knows, and the custom
        ops LiteRT registers itself on the inputs its kernel reads (an SSD's TFLite_Detection_PostProcess on the uint8
        scores of Coral's files). Other custom ops (an Edge TPU decoder) and ops newer than this schema fail."""
        if self.kind == "builtin":
            return True
        data_types = STOCK_CUSTOM_OPS.get(self.operator)
        return data_types is not None and all(t.dtype in data_types for t in self.inputs if t and not t.constant)

    @property
    def tensors(self) -> list[Tensor]:
        return [t for t in self.inputs if t is not None] + self.outputs

    def input(self, position: int) -> Tensor | None:
        return self.inputs[position] if position < len(self.inputs) else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "operator": self.operator,
            "version": self.version,
            "inputs": [t.as_dict() for t in self.inputs if t is not None],
            "outputs": [t.as_dict() for t in self.outputs],
            "status": self.status,
            "mapped": self.mapped,
            "reason": self.reason,
            "kind": self.kind,
            "macs": self.macs,
        }


def load_model(path: Path) -> Any:  # -> schema.ModelT
    if not path.is_file():
        problem = "not a file" if path.exists() else "model file not found"
        fix = "pass the path of a .tflite file"
        raise broken_symlink(path, fix) or BadInputError(problem, path=path, fix=fix)
    data = path.read_bytes()
    if not data:
        raise BadInputError("the file is empty", path=path, fix="convert or copy the model again")
    if len(data) < 8:
        raise BadInputError(
            f"the file is truncated ({len(data)} bytes): too short for a TFLite model", path=path, fix=_RECONVERT
        )
    if data[4:8] != FILE_IDENTIFIER:
        raise BadInputError(
            "not a TFLite model: no 'TFL3' file identifier at bytes 4-8",
            path=path,
            fix="pass a .tflite flatbuffer written by the TFLite converter (ckit build writes model_int8.tflite)",
        )
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # flatbuffers raises struct.error, IndexError, ValueError... on a cut-off buffer
        raise BadInputError(
            f"the TFLite flatbuffer is truncated or corrupt ({type(exc).__name__})",
            path=path,
            fix="convert or copy the model again",
        ) from None
    # Large models keep buffers after the flatbuffer (offset/size); a cut-off file loses them.
    if any(b.offset > 1 and b.offset + b.size > len(data) for b in model.buffers or []):
        raise BadInputError("the file is truncated: a weight buffer ends past its end", path=path, fix=_RECONVERT)
    if not model.subgraphs:
        raise BadInputError("the TFLite model has no subgraph", path=path, fix=_RECONVERT)
    return model


def indices(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def read_ops(model: Any, path: Path) -> list[Op]:
    subgraph = model.subgraphs[0]
    try:
        return [_read_op(model, subgraph, i, raw) for i, raw in enumerate(subgraph.operators or [])]
    except (IndexError, KeyError, TypeError, ValueError) as exc:  # an index pointing nowhere, a vector missing
        raise BadInputError(
            f"the TFLite model is corrupt ({type(exc).__name__}: {exc})", path=path, fix=_RECONVERT
        ) from None


def _read_op(model: Any, subgraph: Any, index: int, raw: Any) -> Op:
    code = model.operatorCodes[raw.opcodeIndex]
    builtin = max(code.deprecatedBuiltinCode, code.builtinCode)  # codes above 127 live only in builtinCode
    custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
    if builtin == schema.BuiltinOperator.CUSTOM:
        name, kind = custom or "CUSTOM", "custom"
    else:
        name, kind = OP_NAMES.get(builtin, f"OP_{builtin}"), "builtin" if builtin in OP_NAMES else "unknown"
    return Op(
        index=index,
        operator=name,
        version=int(code.version),
        inputs=[_read_tensor(model, subgraph, i) if i >= 0 else None for i in indices(raw.inputs)],
        outputs=[_read_tensor(model, subgraph, i) for i in indices(raw.outputs) if i >= 0],
        options=raw.builtinOptions,
        kind=kind,
    )


def _read_tensor(model: Any, subgraph: Any, index: int) -> Tensor:
    raw = subgraph.tensors[index]
    buffer = model.buffers[raw.buffer] if raw.buffer else None
    values = buffer.data if buffer is not None and buffer.data is not None and len(buffer.data) else None
    nbytes = len(values) if values is not None else (buffer.size if buffer is not None else 0)
    signature = indices(raw.shapeSignature)
    name = raw.name.decode(errors="replace") if isinstance(raw.name, bytes) else str(raw.name or "")
    return Tensor(
        index=index,
        buffer=int(raw.buffer),
        name=name,
        dtype=TYPE_NAMES.get(raw.type, f"type{raw.type}"),
        shape=tuple(signature or indices(raw.shape)),
        constant=(nbytes > 0 or bool(getattr(raw, "externalBuffer", 0))) and not raw.isVariable,
        nbytes=nbytes,
        values=np.asarray(values, dtype=np.uint8) if values is not None else None,
        variable=bool(raw.isVariable),
    )
