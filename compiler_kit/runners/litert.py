"""A .tflite model on the CPU through LiteRT (or tflite_runtime where only that is installed).

Integer I/O is hidden from callers: inputs are quantized and outputs dequantized with the model's own scale and
zero point, so an int8 model takes and returns the same float arrays as its float twin. Layout too: inputs arrive
in the source model's layout and outputs leave in it, whatever the converter did (onnx2tf makes NCHW NHWC).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.frontends.base import Perm
from compiler_kit.runners.base import Runner


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float -> the tensor's integer type: round(x / scale) + zero_point, saturated."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(q.dtype, np.integer) or scale == 0:
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


class LiteRtRunner(Runner):
    def __init__(
        self,
        name: str,
        model_path: Path,
        threads: int,
        input_perms: list[Perm] | None = None,
        output_perms: list[Perm] | None = None,
    ) -> None:
        super().__init__(name, threads)
        self.model_path = model_path
        self.input_perms = input_perms or []
        self.output_perms = output_perms or []
        self.interpreter: Any = None
        self.runtime = ""

    def prepare(self) -> None:
        interpreter_class, self.runtime = lazy.litert_interpreter()
        self.interpreter = interpreter_class(
            model_path=str(self.model_path), num_threads=self.threads, experimental_delegates=self._delegates() or None
        )
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()

    def _delegates(self) -> list[Any]:
        """External delegates to run with; none here (the CPU), an accelerator's runner supplies its own."""
        return []

    def infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        # Inputs are matched by position: converters rename tensors (e.g. serving_default_image:0).
        for index, (detail, x) in enumerate(zip(self.inputs, feed.values(), strict=True)):
            self.interpreter.set_tensor(detail["index"], quantize(_permuted(x, self.input_perms, index), detail))
        start = time.perf_counter()
        self.interpreter.invoke()
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        outputs = [dequantize(self.interpreter.get_tensor(d["index"]), d) for d in self.outputs]
        return [_permuted(y, self.output_perms, index, inverse=True) for index, y in enumerate(outputs)]

    def describe(self) -> dict[str, object]:
        return {
            "runtime": self.runtime,
            "version": lazy.version(self.runtime),
            "input_quantization": [_quantization(d) for d in self.inputs],
            "output_quantization": [_quantization(d) for d in self.outputs],
        }


def _permuted(x: np.ndarray, perms: list[Perm], index: int, inverse: bool = False) -> np.ndarray:
    perm = perms[index] if index < len(perms) else None
    if perm is None:
        return x
    return np.ascontiguousarray(x.transpose(np.argsort(perm) if inverse else perm))


def _quantization(detail: dict[str, Any]) -> dict[str, object]:
    scale, zero_point = detail["quantization"]
    return {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}
