"""Frontends by framework name: each turns a trained model into the common float SavedModel."""

from __future__ import annotations

from compiler_kit.frontends.base import FloatModel, Frontend
from compiler_kit.frontends.keras import KerasFrontend

FRONTENDS: dict[str, type[Frontend]] = {"keras": KerasFrontend}


def frontend_for(framework: str) -> Frontend:
    return FRONTENDS[framework]()


__all__ = ["FRONTENDS", "FloatModel", "Frontend", "frontend_for"]
