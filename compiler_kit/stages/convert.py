"""The convert stage: the source model (Keras, ONNX, torch) -> a float SavedModel, by its frontend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compiler_kit import lazy
from compiler_kit.cache import Entry
from compiler_kit.compare.outputs import refuse_unknown_outputs
from compiler_kit.data import Dataset
from compiler_kit.errors import BadInputError
from compiler_kit.frontends import FloatModel, frontend_for
from compiler_kit.frontends.base import ConvertOptions
from compiler_kit.frontends.onnx import ONNX2TF_LOG, ConverterFailed
from compiler_kit.legalize.graph import RemedyData
from compiler_kit.recipe import Recipe
from compiler_kit.stage_keys import data_inputs, tool_versions
from compiler_kit.stages.base import CachedStage, Job
from compiler_kit.stages.data import DATA

FLOAT_MODEL = "float_model"
# The distributions whose behaviour the conversion depends on.
TOOLS = (
    "tensorflow", "tf-keras", "keras", "onnx", "onnx2tf", "onnxsim", "onnxscript", "onnxruntime", "torch", "numpy"
)  # fmt: skip
# Calibration fields only the quantize stage reads: how activation ranges are chosen, and the int8 model's remedies.
_QUANTIZE_FIELDS = ("method", "percentile", "bias_correction", "weight_rounding")


def key_inputs(recipe: Recipe, source_sha256: str, calibration: Dataset | None = None) -> dict[str, Any]:
    """`source_sha256`: stage_keys.model_sha256(recipe.source), which the report names the model by too. The
    model's location is not part of it: a model moved elsewhere keeps its key. `calibration`: the calibration set,
    which bias correction reads (the key holds it only then)."""
    source = recipe.source.model_dump(mode="json", exclude={"path", "weights"})
    key = {
        "source": {**source, "sha256": source_sha256},
        "inputs": [spec.model_dump(mode="json") for spec in recipe.inputs],
        "legalize": recipe.legalize.model_dump(mode="json"),
        "tools": tool_versions(TOOLS),
    }
    if recipe.legalize.bias_correction:
        key["bias_correction"] = _bias_correction_inputs(recipe, calibration)
    return key


def _bias_correction_inputs(recipe: Recipe, calibration: Dataset | None) -> dict[str, Any]:
    """What bias correction reads besides the model: the calibration samples and the weight granularity it
    mimics. Not how activation ranges are chosen (method, percentile) nor the int8 model's bias correction: the
    quantize stage's business."""
    assert calibration is not None, "bias correction reads the calibration set: pass it"
    samples = data_inputs(calibration, recipe.calibration)
    return {
        "calibration": {key: value for key, value in samples.items() if key not in _QUANTIZE_FIELDS},
        "granularity": recipe.quantization.granularity,
    }


class ConvertStage(CachedStage[FloatModel]):
    name = "convert"
    installed = (FLOAT_MODEL,)

    def plan(self, job: Job) -> str:
        return f"{job.recipe.source.framework} -> float SavedModel"

    def key_inputs(self, job: Job) -> dict[str, Any]:
        return key_inputs(job.recipe, job.model_sha256, job[DATA].calibration)

    def produce(self, job: Job, files: Path) -> dict[str, Any]:
        recipe = job.recipe
        lazy.tensorflow(threads=recipe.verify.threads)  # fixes TF's thread count before anything runs
        (files / FLOAT_MODEL).mkdir()
        frontend = frontend_for(recipe.source.framework)
        per_tensor = recipe.quantization.granularity == "per-tensor"
        data = RemedyData(job[DATA].calibration, per_tensor) if recipe.legalize.bias_correction else None
        options = ConvertOptions(recipe.legalize, data, job.reporter)
        float_model = frontend.convert(recipe.source, recipe.inputs, files / FLOAT_MODEL, options)
        return float_model.to_meta()

    def load(self, job: Job, entry: Entry) -> FloatModel:
        return FloatModel.from_meta(job.folder.path(FLOAT_MODEL), entry.meta)

    def run(self, job: Job) -> FloatModel:
        try:
            float_model = super().run(job)
        except ConverterFailed as failed:  # its scratch folder is gone: keep the converter's log where users look
            log = job.folder.write_text(ONNX2TF_LOG, failed.log)
            raise BadInputError(failed.problem, path=log, fix=failed.fix) from None
        # Settings per output must name outputs the model has: found now, before any runner works
        for field_name, settings in (
            ("verify.task", job.recipe.verify.task),
            ("gates.outputs", job.recipe.gates.outputs),
        ):
            refuse_unknown_outputs(field_name, settings, float_model.output_names)
        return float_model


CONVERT = ConvertStage()
