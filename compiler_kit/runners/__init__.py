"""Runners: one module per backend, one contract (see base.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from compiler_kit.recipe import Source
from compiler_kit.runners.base import Runner
from compiler_kit.runners.edgetpu import EdgeTpuRunner
from compiler_kit.runners.keras import KerasRunner
from compiler_kit.runners.litert import LiteRtRunner
from compiler_kit.runners.onnxruntime import OnnxRuntimeRunner
from compiler_kit.runners.torch import TorchRunner


def _model_file(source: Source) -> Path:
    assert source.path is not None  # a keras or onnx source names its file (the recipe's validator)
    return source.path


# The runner that executes a source model in its own framework, by the recipe's source.framework; given the output
# names the conversion found (a torch module's outputs have none of their own).
SOURCE_RUNNERS: dict[str, Callable[[Source, int, list[str]], Runner]] = {
    "keras": lambda source, threads, _: KerasRunner("source", _model_file(source), threads),
    "onnx": lambda source, threads, _: OnnxRuntimeRunner("source", _model_file(source), threads),
    "torch": lambda source, threads, names: TorchRunner("source", source, threads, names),
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
