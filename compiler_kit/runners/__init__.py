"""Runners: one module per backend, one contract (see base.py)."""

from __future__ import annotations

from collections.abc import Callable

from compiler_kit.recipe import Source
from compiler_kit.runners.base import Runner
from compiler_kit.runners.edgetpu import EdgeTpuRunner
from compiler_kit.runners.keras import KerasRunner
from compiler_kit.runners.litert import LiteRtRunner
from compiler_kit.runners.onnxruntime import OnnxRuntimeRunner
from compiler_kit.runners.torch import TorchRunner

# The runner that executes a source model in its own framework, by the recipe's source.framework.
SOURCE_RUNNERS: dict[str, Callable[[Source, int], Runner]] = {
    "keras": lambda source, threads: KerasRunner("source", source.path, threads),
    "onnx": lambda source, threads: OnnxRuntimeRunner("source", source.path, threads),
    "torch": lambda source, threads: TorchRunner("source", source, threads),
}

__all__ = [
    "SOURCE_RUNNERS",
    "EdgeTpuRunner",
    "KerasRunner",
    "LiteRtRunner",
    "OnnxRuntimeRunner",
    "Runner",
    "TorchRunner",
]
