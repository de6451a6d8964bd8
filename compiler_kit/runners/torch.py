"""The PyTorch model itself: the float reference of the drift report for torch sources."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.frontends.torch import load_torch_model, runnable
from compiler_kit.recipe import Source
from compiler_kit.runners.base import Runner


class TorchRunner(Runner):
    def __init__(self, name: str, source: Source, threads: int) -> None:
        super().__init__(name, threads)
        self.source = source
        self.model: Any = None

    def prepare(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        self.model = runnable(load_torch_model(self.source))

    def infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in feed.values()]
        with torch.inference_mode():
            start = time.perf_counter()
            outputs = self.model(*tensors)
            self.last_inference_ms = (time.perf_counter() - start) * 1e3
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        return [output.detach().numpy().astype(np.float32) for output in outputs]

    def describe(self) -> dict[str, object]:
        return {"runtime": "torch", "version": lazy.version("torch")}
