"""The frontend contract: a trained model in its own framework -> a float TF SavedModel with static shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from compiler_kit.recipe import InputSpec, Source


@dataclass(frozen=True)
class FloatModel:
    """A float TF SavedModel (the one IR every frontend produces) whose inputs have the recipe's static shapes."""

    saved_model_dir: Path
    signature_key: str


class Frontend(Protocol):
    """Converts; never quantizes, never calibrates (that is the one quantizer's job)."""

    def convert(self, source: Source, inputs: list[InputSpec], out_dir: Path) -> FloatModel:
        """Write the float SavedModel into `out_dir` (a fresh folder); a bad model is a `BadInputError`."""
