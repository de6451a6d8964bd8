"""The PyTorch model itself: the float reference of the drift report for torch sources.

A torch module's outputs have no names. They are named after the ONNX file the torch frontend exported, in the
order the exporter flattens them (tensors of nested tuples, lists and dicts, depth first), as `_leaves` does here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.frontends.torch import load_torch_model, runnable
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
        return [output.detach().numpy().astype(np.float32) for output in _leaves(raw)]

    def describe(self) -> dict[str, object]:
        return {"runtime": "torch", "version": lazy.version("torch")}


def _leaves(outputs: Any) -> list[Any]:
    """The tensors of a module's return value in the exporter's order (torch's pytree order, without its private
    module): depth first through tuples, lists and dicts (in insertion order)."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, list | tuple):
        return [leaf for output in outputs for leaf in _leaves(output)]
    return [outputs]
