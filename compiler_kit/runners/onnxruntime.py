"""An .onnx model on the CPU through onnxruntime: the source runner of ONNX recipes, and the `onnx` stage of
torch recipes (the exported file, so the report can tell export drift from conversion drift)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.runners.base import Runner


class OnnxRuntimeRunner(Runner):
    def __init__(self, name: str, model_path: Path, threads: int) -> None:
        super().__init__(name, threads)
        self.model_path = model_path
        self.session: Any = None

    def prepare(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [value.name for value in self.session.get_inputs()]

    def infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        # Matched by position, as in every runner: the recipe's names need not be the file's.
        named = dict(zip(self.input_names, feed.values(), strict=True))
        start = time.perf_counter()
        outputs = self.session.run(None, named)
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        return [np.asarray(output, dtype=np.float32) for output in outputs]

    def describe(self) -> dict[str, object]:
        return {"runtime": "onnxruntime", "version": lazy.version("onnxruntime")}
