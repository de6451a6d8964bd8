"""The quantize stage: the float SavedModel -> a float TFLite model and a full-integer int8 one, by the one
quantizer, calibrated on the calibration set; and the int8 model again from fewer of its samples, for the
calibration curve (compiler_kit.compare.calibration_curve), which the verify stage measures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler_kit import int8_bias, int8_rounding, lazy
from compiler_kit.cache import Entry
from compiler_kit.compare.calibration_curve import curve_sizes, quantize_draws
from compiler_kit.data import Dataset
from compiler_kit.edgetpu.analysis import model_macs
from compiler_kit.errors import describe_exception, is_disk_full
from compiler_kit.int8_bias import NotCorrectable
from compiler_kit.legalize import NODES_LISTED
from compiler_kit.progress import Counting
from compiler_kit.quantize import Int8Quantizer
from compiler_kit.recipe import Calibration
from compiler_kit.stage_keys import data_inputs, tool_versions
from compiler_kit.stages.base import CachedStage, Job
from compiler_kit.stages.convert import CONVERT
from compiler_kit.stages.data import DATA

FLOAT_TFLITE, INT8_TFLITE = "model_float.tflite", "model_int8.tflite"
CURVE_MODELS = "calibration_curve"  # the folder of the curve's int8 models
TOOLS = ("tensorflow", "ai-edge-litert")
CURVE_WITHOUT_REMEDIES = (
    "the int8 model is changed after quantizing (calibration.bias_correction or weight_rounding) and the curve's "
    "models of fewer samples would not be: their SNR would not tell the sample count's share"
)


@dataclass(frozen=True)
class Int8Remedy:
    """A remedy that edits the converter's int8 model: (float TFLite, int8 TFLite, samples, threads, task) ->
    (the edited int8 model, the names of the layers it changed)."""

    name: str
    summary: str
    unit: str  # what its progress counts
    apply: Callable[..., tuple[bytes, list[str]]]
    off: str  # the value of its calibration field that leaves the int8 model alone


# Keyed by their calibration field, in the order they run: the weights are rounded first, and the biases then
# corrected for what remains.
INT8_REMEDIES = {
    "weight_rounding": Int8Remedy(
        "int8_weight_rounding", int8_rounding.SUMMARY, "weight rounding layers", int8_rounding.round_weights, "nearest"
    ),
    "bias_correction": Int8Remedy(
        "int8_bias_correction", int8_bias.SUMMARY, "bias correction layers", int8_bias.correct_biases, "none"
    ),
}


@dataclass(frozen=True)
class TfliteModels:
    float_tflite: Path
    int8_tflite: Path
    curve_models: Path  # the folder of the calibration curve's int8 models
    curve_draws: dict[str, Any]  # what compiler_kit.compare.calibration_curve.quantize_draws made, or why not
    int8_remedies: tuple[dict[str, Any], ...] = ()  # the legalization-report rows of the int8 remedies that ran


class QuantizeStage(CachedStage[TfliteModels]):
    name = "quantize"
    installed = (FLOAT_TFLITE, INT8_TFLITE, CURVE_MODELS)

    def plan(self, job: Job) -> str:
        samples = len(job[DATA].calibration)
        sizes = " and ".join(map(str, curve_sizes(samples)))
        curve = f", int8 from {sizes} of them for the calibration curve unless the model is too large" if sizes else ""
        return f"float and int8 TFLite from {samples} calibration samples{curve}"

    def key_inputs(self, job: Job) -> dict[str, Any]:
        recipe = job.recipe
        return {
            "convert": job.keys[CONVERT.name],
            "quantization": recipe.quantization.model_dump(mode="json"),
            "calibration": data_inputs(job[DATA].calibration, recipe.calibration),
            "tools": tool_versions(TOOLS),
        }

    def produce(self, job: Job, files: Path) -> dict[str, Any]:
        lazy.tensorflow(threads=job.recipe.verify.threads)
        quantizer, float_model = Int8Quantizer(job.recipe.quantization), job[CONVERT]
        (files / FLOAT_TFLITE).write_bytes(quantizer.float_tflite(float_model))
        settings, calibration = job.recipe.calibration, job[DATA].calibration
        with job.reporter.task("calibration samples", reads(settings) * len(calibration)) as task:
            counted = Counting(calibration, task)
            int8 = quantizer.int8_tflite(float_model, counted, settings.method, settings.percentile)
        rows = []
        for remedy in chosen_remedies(settings):
            int8, row = _remedied(job, files, int8, remedy)
            rows.append(row)
        (files / INT8_TFLITE).write_bytes(int8)
        return {"int8_remedies": rows, "curve_draws": curve_draws(job, quantizer, files)}

    def load(self, job: Job, entry: Entry) -> TfliteModels:
        folder = job.folder
        models = folder.path(FLOAT_TFLITE), folder.path(INT8_TFLITE), folder.path(CURVE_MODELS)
        return TfliteModels(*models, entry.meta["curve_draws"], tuple(entry.meta["int8_remedies"]))


def chosen_remedies(settings: Calibration) -> list[Int8Remedy]:
    """The int8 remedies the calibration section switches on, in the order they run."""
    return [remedy for field, remedy in INT8_REMEDIES.items() if getattr(settings, field) != remedy.off]


def _remedied(job: Job, files: Path, int8: bytes, remedy: Int8Remedy) -> tuple[bytes, dict[str, Any]]:
    """The int8 model with `remedy` applied on the calibration samples (in the TFLite models' layout), and the
    row that lists the remedy with the legalization's: it moves no float output (exact), only the int8 model."""
    float_model, calibration = job[CONVERT], job[DATA].calibration
    samples = [float_model.to_model_layout(sample) for sample in calibration]
    float_tflite = (files / FLOAT_TFLITE).read_bytes()
    status = "applied"
    with job.reporter.task(remedy.unit) as task:
        try:
            int8, layers = remedy.apply(float_tflite, int8, samples, job.recipe.verify.threads, task)
        except NotCorrectable as exc:  # the int8 model stays as it was, and the row says why
            status, layers = f"not applied: {exc}", []
    row = {
        "name": remedy.name, "summary": remedy.summary, "exact": True, "status": status,
        "count": len(layers), "nodes": layers[:NODES_LISTED], "max_relative_error": 0.0,
    }  # fmt: skip
    return int8, row


def reads(settings: Calibration) -> int:
    """How often quantizing reads each calibration sample: the converter once, a range method once more."""
    return 1 if settings.method == "min-max" else 2


def curve_draws(job: Job, quantizer: Int8Quantizer, files: Path) -> dict[str, Any]:
    """The calibration curve's int8 models into the entry's CURVE_MODELS folder; a quantizer that fails on fewer
    samples gives the reason instead (the curve explains a result, it never stops a build)."""
    settings, folder = job.recipe.calibration, files / CURVE_MODELS
    folder.mkdir()
    if chosen_remedies(settings):  # the curve's last point, the build's model, would hold the remedies
        return {"skipped": CURVE_WITHOUT_REMEDIES}

    sizes = curve_sizes(len(job[DATA].calibration))
    with job.reporter.task("calibration samples, curve", reads(settings) * sum(sizes)) as task:

        def requantize(calibration: Dataset) -> bytes:
            counted = Counting(calibration, task)
            return quantizer.int8_tflite(job[CONVERT], counted, settings.method, settings.percentile)

        try:
            macs = model_macs(files / FLOAT_TFLITE)
            return quantize_draws(requantize, job[DATA].calibration, settings.seed, folder, macs)
        except Exception as exc:  # the converter raises BadInputError, ValueError, RuntimeError...: in the report
            if is_disk_full(exc):  # not the curve's problem: the stage's entry cannot be written, the build says so
                raise
            return {"error": describe_exception(exc)}


QUANTIZE = QuantizeStage()
