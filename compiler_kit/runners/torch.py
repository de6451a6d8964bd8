"""The PyTorch model itself: the float reference of the drift report for torch sources.

A torch module's outputs are named as the torch frontend named them in the ONNX file it exported (a dict's keys,
`output_<k>` of a tuple: frontends.torch.named_outputs), in the order the exporter flattens them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.frontends.torch import load_torch_model, named_outputs, runnable
from compiler_kit.recipe import Source
from compiler_kit.runners.base import Runner


class TorchRunner(Runner):
    def __init__(self, name: str, source: Source, threads: int, output_names: list[str]) -> None:
        super().__init__(name, threads)
        self.source = source
        self.names = output_names
        self.model: Any = None

    def prepare_impl(self) -> list[str]:
        import torch

        torch.set_num_threads(self.threads)
        self.model = runnable(load_torch_model(self.source))
        return self.names

    def stage_impl(self, feed: dict[str, np.ndarray]) -> list[Any]:
        import torch

        return [torch.from_numpy(np.ascontiguousarray(x)) for x in feed.values()]

    def infer_impl(self, staged: list[Any]) -> Any:
        import torch

        with torch.inference_mode():
            return self.model(*staged)

    def fetch_impl(self, raw: Any) -> list[np.ndarray]:
        return [output.detach().numpy().astype(np.float32) for _, output in named_outputs(raw)]

    def describe(self) -> dict[str, object]:
        return {"runtime": "torch", "version": lazy.version("torch")}
