"""The Keras model itself: the float reference ("float training") of the drift report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.frontends.keras import load_keras_model
from compiler_kit.runners.base import Runner


class KerasRunner(Runner):
    def __init__(self, name: str, model_path: Path, threads: int) -> None:
        super().__init__(name, threads)
        self.model_path = model_path
        self.model: Any = None

    def prepare(self) -> None:
        lazy.tensorflow(threads=self.threads)
        self.model = load_keras_model(self.model_path)

    def infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        arrays = list(feed.values())
        inputs = arrays[0] if len(arrays) == 1 else arrays
        start = time.perf_counter()
        outputs = self.model(inputs, training=False)
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        return [np.asarray(output, dtype=np.float32) for output in outputs]

    def describe(self) -> dict[str, object]:
        return {"runtime": "keras", "version": lazy.version("keras"), "backend": "tensorflow"}
