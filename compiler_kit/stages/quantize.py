"""The quantize stage: the float SavedModel -> a float TFLite model and a full-integer int8 one, by the one
quantizer, calibrated on the calibration set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler_kit import lazy
from compiler_kit.cache import Entry
from compiler_kit.progress import Counting
from compiler_kit.quantize import Int8Quantizer
from compiler_kit.stage_keys import data_inputs, tool_versions
from compiler_kit.stages.base import CachedStage, Job
from compiler_kit.stages.convert import CONVERT
from compiler_kit.stages.data import DATA

FLOAT_TFLITE, INT8_TFLITE = "model_float.tflite", "model_int8.tflite"
TOOLS = ("tensorflow", "ai-edge-litert")


@dataclass(frozen=True)
class TfliteModels:
    float_tflite: Path
    int8_tflite: Path


class QuantizeStage(CachedStage[TfliteModels]):
    name = "quantize"
    installed = (FLOAT_TFLITE, INT8_TFLITE)

    def plan(self, job: Job) -> str:
        return f"float and int8 TFLite from {len(job[DATA].calibration)} calibration samples"

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
        passes = 1 if settings.method == "min-max" else 2  # the other methods read the samples again for ranges
        with job.reporter.task("calibration samples", passes * len(calibration)) as task:
            counted = Counting(calibration, task)
            int8 = quantizer.int8_tflite(float_model, counted, settings.method, settings.percentile)
        (files / INT8_TFLITE).write_bytes(int8)
        return {}

    def load(self, job: Job, entry: Entry) -> TfliteModels:
        return TfliteModels(job.folder.path(FLOAT_TFLITE), job.folder.path(INT8_TFLITE))


QUANTIZE = QuantizeStage()
