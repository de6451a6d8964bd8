"""An .onnx model on the CPU through onnxruntime: the source runner of ONNX recipes, and the `onnx` stage of
torch recipes (the exported file, so the report can tell export drift from conversion drift)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.errors import BadInputError
from compiler_kit.runners.base import Runner


class OnnxRuntimeRunner(Runner):
    def __init__(self, name: str, model_path: Path, threads: int) -> None:
        super().__init__(name, threads)
        self.model_path = model_path
        self.session: Any = None

    def prepare_impl(self) -> list[str]:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail, InvalidGraph, NotImplemented... per cause
            raise BadInputError(
                f"onnxruntime cannot load the {self.name} model: {_reason(exc)}",
                path=self.model_path,
                fix="export the model at an opset this onnxruntime supports (its message names the limit), with ops "
                "it implements",
            ) from None
        self.input_names = [value.name for value in self.session.get_inputs()]
        return [value.name for value in self.session.get_outputs()]

    def stage_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Inputs by position, as in every runner: the recipe's input name need not be the file's.
        return dict(zip(self.input_names, feed.values(), strict=True))

    def infer_impl(self, staged: dict[str, np.ndarray]) -> list[Any]:
        return self.session.run(None, staged)

    def fetch_impl(self, raw: list[Any]) -> list[np.ndarray]:
        return [np.asarray(output, dtype=np.float32) for output in raw]

    def describe(self) -> dict[str, object]:
        return {"runtime": "onnxruntime", "version": lazy.version("onnxruntime")}


def _reason(exc: Exception) -> str:
    """onnxruntime's own reason: the last two sentences of its one-line message (the first ones are a C++
    function signature)."""
    sentences = re.split(r"(?<=\.)\s+", str(exc).strip())
    return " ".join(sentences[-2:])[-400:]
