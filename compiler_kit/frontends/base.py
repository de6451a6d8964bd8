"""The frontend contract: a trained model in its own framework -> a float TF SavedModel with static shapes.

A frontend writes into a fresh folder: `saved_model/` (the one IR every frontend produces) and whatever
intermediate models it made on the way (the torch frontend's `model.onnx`), which later stages can run. Because
converters change layouts (onnx2tf turns NCHW into NHWC), it also records, per input and output, the axis
permutation from the source model's layout to the TF model's: runners and the quantizer apply it, so every caller
feeds samples in the SOURCE layout.

Outputs are matched by name, never by position: converters reorder them (onnx2tf's signature, the TFLite converter's
output tensors). Each output records the source model's name, its key in the SavedModel's serving signature (which
the TFLite model's signature keeps) and its layout permutation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from compiler_kit.errors import BadInputError
from compiler_kit.legalize.graph import RemedyData
from compiler_kit.progress import QUIET, Reporter
from compiler_kit.recipe import InputSpec, Legalize, Source

SAVED_MODEL = "saved_model"


@dataclass(frozen=True)
class ConvertOptions:
    """How a frontend converts, beyond the model: the Edge TPU rewrites (`legalize`), the calibration samples of the
    data-driven remedy (`data`, for bias correction), and where long steps count their progress (`reporter`)."""

    legalize: Legalize = field(default_factory=Legalize)  # a recipe's default: every Edge TPU rewrite on
    data: RemedyData | None = None
    reporter: Reporter = QUIET


DEFAULT_OPTIONS = ConvertOptions()
Perm = tuple[int, ...] | None


@dataclass(frozen=True)
class ModelOutput:
    name: str  # the source model's name for it
    key: str  # its key in the serving signature (SavedModel and TFLite)
    perm: Perm  # source layout -> the converted model's layout


@dataclass(frozen=True)
class FloatModel:
    root: Path
    signature_key: str
    input_perms: list[Perm]
    outputs: list[ModelOutput]  # in the source model's order
    intermediates: dict[str, str] = field(default_factory=dict)  # runner name -> file name under root
    legalization: dict[str, object] = field(default_factory=dict)  # compiler_kit.legalize's report section
    renamed: dict[str, str] = field(default_factory=dict)  # names ckit changed for the converter -> originals

    @property
    def saved_model_dir(self) -> Path:
        return self.root / SAVED_MODEL

    def to_model_layout(self, sample: np.ndarray, index: int = 0) -> np.ndarray:
        perm = self.input_perms[index]
        return sample if perm is None else np.ascontiguousarray(sample.transpose(perm))

    @property
    def output_names(self) -> list[str]:
        return [output.name for output in self.outputs]

    def to_meta(self) -> dict[str, Any]:
        """Everything but the folder, as JSON (the convert stage's cache metadata)."""
        return {
            "signature_key": self.signature_key,
            "input_perms": self.input_perms,
            "outputs": [dataclasses.asdict(output) for output in self.outputs],
            "intermediates": self.intermediates,
            "legalization": self.legalization,
            "renamed": self.renamed,
        }

    @classmethod
    def from_meta(cls, root: Path, meta: dict[str, Any]) -> FloatModel:
        """The model in `root` that `to_meta` described (JSON holds permutations as lists)."""
        return cls(
            root,
            meta["signature_key"],
            input_perms=[_perm(perm) for perm in meta["input_perms"]],
            outputs=[ModelOutput(o["name"], o["key"], _perm(o["perm"])) for o in meta["outputs"]],
            intermediates=meta["intermediates"],
            legalization=meta["legalization"],
            renamed=meta["renamed"],
        )

    def layout_report(self, inputs: list[InputSpec]) -> dict[str, object]:
        return {
            "inputs": {
                spec.name: list(perm) if perm else None for spec, perm in zip(inputs, self.input_perms, strict=True)
            },
            "outputs": {output.name: list(output.perm) if output.perm else None for output in self.outputs},
        }


def _perm(stored: list[int] | None) -> Perm:
    return None if stored is None else tuple(stored)


def layout_perm(source_shape: list[int], model_shape: list[int | None] | None) -> Perm:
    """The permutation taking a source-layout array to the model's layout: None when the shapes agree, the
    channels-first -> channels-last move when the model's shape is that; ValueError for anything else."""
    if _same(source_shape, model_shape):
        return None
    rank = len(source_shape)
    to_last = (0, *range(2, rank), 1)
    if rank >= 3 and _same([source_shape[axis] for axis in to_last], model_shape):
        return to_last
    raise ValueError(f"cannot map shape {source_shape} onto the converted model's {model_shape}")


def _same(source_shape: list[int], model_shape: list[int | None] | None) -> bool:
    """Equal shapes, where a source dimension of -1 (not known before conversion) matches any size; a model shape
    of unknown rank (None) matches nothing."""
    return (
        model_shape is not None
        and len(source_shape) == len(model_shape)
        and all(s in (-1, m) for s, m in zip(source_shape, model_shape, strict=True))
    )


def refuse_non_finite(names: list[str], origin: Path | str) -> None:
    """Weights holding NaN or Inf, found by each frontend and named here: later the quantizer only sees layers it
    could not quantize (NaN) or quantizes garbage without a word (Inf)."""
    if names:
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise BadInputError(
            f"the model's weights hold NaN or Inf: {', '.join(repr(name) for name in names[:5])}{more}",
            path=origin,
            fix="retrain or fix the checkpoint (a diverged training run saves NaN), then save or export it again; if "
            "a tool exported or converted the weights, check that step",
        )


class Frontend(Protocol):
    """Converts; never quantizes, never calibrates (that is the one quantizer's job). Calibration samples reach a
    frontend only for the legalization remedy that needs them (bias correction)."""

    def convert(
        self,
        source: Source,
        inputs: list[InputSpec],
        out_dir: Path,
        options: ConvertOptions = DEFAULT_OPTIONS,
    ) -> FloatModel:
        """Fill `out_dir` (a fresh folder), legalizing for the Edge TPU as `options` say where the frontend can; a
        bad model is a `BadInputError`."""
