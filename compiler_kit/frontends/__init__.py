"""Frontends by framework name: each turns a trained model into the common float SavedModel."""

from __future__ import annotations

from compiler_kit.frontends.base import FloatModel, Frontend
from compiler_kit.frontends.keras import KerasFrontend
from compiler_kit.frontends.onnx import OnnxFrontend
from compiler_kit.frontends.torch import TorchFrontend

FRONTENDS: dict[str, type[Frontend]] = {"keras": KerasFrontend, "onnx": OnnxFrontend, "torch": TorchFrontend}


def frontend_for(framework: str) -> Frontend:
    return FRONTENDS[framework]()


__all__ = ["FRONTENDS", "FloatModel", "Frontend", "frontend_for"]
