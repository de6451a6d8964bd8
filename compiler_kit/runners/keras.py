"""The Keras model itself: the float reference ("float training") of the drift report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.frontends.keras import keras_output_names, load_keras_model
from compiler_kit.runners.base import Runner


class KerasRunner(Runner):
    def __init__(self, name: str, model_path: Path, threads: int) -> None:
        super().__init__(name, threads)
        self.model_path = model_path
        self.model: Any = None

    def prepare_impl(self) -> list[str]:
        lazy.tensorflow(threads=self.threads)
        self.model = load_keras_model(self.model_path)
        return keras_output_names(self.model)

    def stage_impl(self, feed: dict[str, np.ndarray]) -> Any:
        arrays = list(feed.values())
        return arrays[0] if len(arrays) == 1 else arrays

    def infer_impl(self, staged: Any) -> Any:
        return self.model(staged, training=False)

    def fetch_impl(self, raw: Any) -> list[np.ndarray]:
        if isinstance(raw, dict):  # a model built with a dict of outputs
            raw = [raw[name] for name in self.output_names]
        outputs = raw if isinstance(raw, list | tuple) else [raw]
        return [np.asarray(output, dtype=np.float32) for output in outputs]

    def describe(self) -> dict[str, object]:
        return {"runtime": "keras", "version": lazy.version("keras"), "backend": "tensorflow"}
