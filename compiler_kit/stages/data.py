"""The data stage: the calibration and verification sets opened, every sample checked, before any model work."""

from __future__ import annotations

from dataclasses import dataclass

from compiler_kit.data import Dataset, open_dataset
from compiler_kit.errors import BadInputError
from compiler_kit.gates import needs_labels
from compiler_kit.recipe import Recipe
from compiler_kit.stages.base import Job, Stage


@dataclass(frozen=True)
class DataSets:
    calibration: Dataset
    verify: Dataset
    shared: int  # samples found in both (calibrating on the evaluation split makes drift look better)

    def describe(self) -> dict[str, object]:
        return {"calibration": self.calibration.describe(), "verify": self.verify.describe()}


class DataStage(Stage[DataSets]):
    name = "data"

    def plan(self, job: Job) -> str:
        return "open and check calibration and verification samples"

    def run(self, job: Job) -> DataSets:
        recipe = job.recipe
        calibration, verify = calibration_set(recipe), verification_set(recipe)
        if verify.labels is None and (gated := needs_labels(recipe.gates)):
            raise BadInputError(
                f"gates {', '.join(gated)} need labels, but the verification data has none",
                path=recipe.verify.data.path,
                fix="set verify.data.labels_key / labels_path, or remove those gates",
            )
        return DataSets(calibration, verify, len(calibration.digests() & verify.digests()))


DATA = DataStage()


def calibration_set(recipe: Recipe) -> Dataset:
    cal = recipe.calibration
    return open_dataset(cal.data, cal.preprocess, recipe.inputs[0], cal.num_samples, cal.seed, "calibration.data")


def verification_set(recipe: Recipe) -> Dataset:
    """The verification samples, preprocessed as the calibration section says (one preprocessing for both)."""
    ver = recipe.verify
    return open_dataset(
        ver.data, recipe.calibration.preprocess, recipe.inputs[0], ver.num_samples, ver.seed, "verify.data"
    )
