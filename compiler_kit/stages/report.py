"""The report stage: the stages' results compared, judged by the gates, and written as one report (JSON, Markdown
and HTML, all or none)."""

from __future__ import annotations

import itertools
from typing import Any, cast

import numpy as np

from compiler_kit.compare.diagnoses import constant_predictions
from compiler_kit.compare.layers import worst_layers
from compiler_kit.compare.metrics import confusion
from compiler_kit.compare.outputs import OutputTasks, compare_outputs, constant_outputs, resolve_tasks
from compiler_kit.frontends import FloatModel
from compiler_kit.gates import DRIFT_CANDIDATE, DRIFT_REFERENCE, GateResult, drift_comparison, evaluate
from compiler_kit.recipe import DEVICE_RUNNER, Calibration, Recipe, Verify
from compiler_kit.report import build_report, leak_findings, write_reports
from compiler_kit.report.document import (
    degenerate_findings,
    device_findings,
    explanation_findings,
    sample_count_findings,
    speed_findings,
)
from compiler_kit.runners import EdgeTpuRunner
from compiler_kit.stages.base import Job, Stage
from compiler_kit.stages.convert import CONVERT, FLOAT_MODEL
from compiler_kit.stages.data import DATA, DataSets
from compiler_kit.stages.edgetpu import EDGETPU, EDGETPU_FILES
from compiler_kit.stages.latency import LATENCY, Timings
from compiler_kit.stages.quantize import FLOAT_TFLITE, INT8_TFLITE, QUANTIZE, TfliteModels
from compiler_kit.stages.verify import VERIFY, Outputs

Comparisons = list[dict[str, Any]]


class ReportStage(Stage[dict[str, Any]]):
    name = "report"

    def run(self, job: Job) -> dict[str, Any]:
        data, verified, chain = job[DATA], job[VERIFY], [runner.name for runner in job.runners]
        source_outputs = verified.outputs[chain[0]]
        tasks = output_tasks(job.recipe, source_outputs, data)
        comparisons = compare_stages(verified.outputs, chain, tasks, data)
        float_model, edgetpu, timings = job[CONVERT], job[EDGETPU], job[LATENCY]
        section = edgetpu.section
        if timings.edgetpu is not None:
            section = {**section, "latency": {**timings.edgetpu, **measured_edgetpu(chain, timings)}}
        latency = {name: stats.as_dict() for name, stats in timings.runners.items()}
        constant = constant_outputs(source_outputs)  # said once, as a degenerate model, not again as a diagnosis
        varying_classifiers = [name for name in tasks.of_kind("classification") if name not in constant]
        report = build_report(
            recipe=job.recipe,
            recipe_path=job.recipe_path,
            artifacts=_artifacts(job),
            runners=verified.runners,
            comparisons=comparisons,
            latency=latency,
            gates=[gate.as_dict() for gate in gates(job, comparisons, section)],
            model_sha256=job.model_sha256,
            datasets=data.describe(),
            layout=float_model.layout_report(job.recipe.inputs),
            edgetpu=section,
            layers=[layer.as_dict() for layer in verified.layers],
            worst_layers=[layer.name for layer in worst_layers(verified.layers)],
            legalization=_legalization(float_model, job[QUANTIZE]),
            tasks=tasks.describe(),
            warnings=[
                *degenerate_findings(constant, len(data.verify)),
                *sample_count_findings(_requested_samples(job.recipe), _available_samples(data)),
                *speed_findings(latency, timings.outside_xnnpack),
                *leak_findings(data.shared, len(data.verify)),
                *explanation_findings(verified.budget, verified.curve),
                *device_findings(comparisons, verified.runners),
            ],
            confusion=_confusion(verified.outputs, tasks),
            quantization_budget=verified.budget,
            calibration_curve=verified.curve,
            diagnoses=[*verified.diagnoses, *constant_predictions(source_outputs, varying_classifiers)],
            stage_seconds=job.log.so_far(),
            cache={"dir": str(job.cache.root), "stages": job.log.cache},
        )
        write_reports(report, job.folder)
        return report


REPORT = ReportStage()


def _legalization(float_model: FloatModel, tflite: TfliteModels) -> dict[str, Any]:
    """The legalization section, with the int8 model's remedies listed among the rewrites when they ran (a Keras
    model's section too: they work on the TFLite model, whatever the source)."""
    section = {**float_model.legalization, "renamed": float_model.renamed}
    if tflite.int8_remedies:
        section["rewrites"] = [*cast(list[Any], section.get("rewrites", [])), *tflite.int8_remedies]
    return section


def output_tasks(recipe: Recipe, source_outputs: dict[str, np.ndarray], data: DataSets) -> OutputTasks:
    """Each output's task (the recipe's, or inferred from its shape); a Keras model's maps are channels-last."""
    shapes = {name: array.shape[1:] for name, array in source_outputs.items()}
    channels_last = recipe.source.framework == "keras"
    return resolve_tasks(recipe.verify.task, shapes, channels_last, data.verify.labels is not None)


def measured_edgetpu(chain: list[str], timings: Timings) -> dict[str, Any]:
    """The Edge TPU's measured median latency: here when one is plugged in, else on the first device that has one
    (its runner named, for `make edgetpu-fit --measured`)."""
    on_edgetpu = [name for name in chain if name == EdgeTpuRunner.NAME or name.endswith(f":{EdgeTpuRunner.NAME}")]
    runner = on_edgetpu[0] if on_edgetpu else None
    return {"measured_p50_ms": timings.p50_ms(runner) if runner else None, "measured_by": runner}


def comparison_pairs(chain: list[str]) -> list[tuple[str, str]]:
    """Each step against the one before it and against the source, so the report says which step drifted; a
    device's runners against tflite-int8 (the same model, run here), so the report says what the device changed."""
    pairs = []
    steps = [name for name in chain if not name.startswith(DEVICE_RUNNER)]
    for step, (previous, current) in enumerate(itertools.pairwise(steps), start=1):
        pairs.append((previous, current))
        if step > 1:
            pairs.append((chain[0], current))
    for device in (name for name in chain if name.startswith(DEVICE_RUNNER)):
        pairs += [(DRIFT_CANDIDATE, device), (chain[0], device)]
    return pairs


def compare_stages(outputs: Outputs, chain: list[str], tasks: OutputTasks, data: DataSets) -> Comparisons:
    verify = data.verify
    names = verify.sample_names()
    return [
        {
            "reference": ref,
            "candidate": cand,
            **compare_outputs(outputs[ref], outputs[cand], tasks, verify.labels, names),
        }
        for ref, cand in comparison_pairs(chain)
    ]


def gates(job: Job, comparisons: Comparisons, edgetpu_section: dict[str, Any]) -> list[GateResult]:
    drift = drift_comparison(comparisons)
    outcome, timings = job[EDGETPU], job[LATENCY]
    measured = {**drift["metrics"], **outcome.gate_values}
    per_output = {name: entry["metrics"] for name, entry in drift["outputs"].items()}
    p50 = {name: stats.p50_ms for name, stats in timings.runners.items()}
    predicted = edgetpu_section.get("latency", {}).get("targets", {})
    predicted_ms = {target: estimate["predicted_ms"] for target, estimate in predicted.items()}
    devices = {
        c["candidate"]: c["metrics"]
        for c in comparisons
        if c["reference"] == DRIFT_REFERENCE and c["candidate"].startswith(DEVICE_RUNNER)
    }
    results = evaluate(job.recipe.gates, measured, p50, job.baseline, predicted_ms, per_output, devices)
    if edgetpu_section.get("predicted") is False and not edgetpu_section["compiled"]:
        results.append(GateResult("edgetpu_compiled", 1.0, 0.0, False))  # the compiler ran and refused the model
    return results


def _artifacts(job: Job) -> dict[str, Any]:
    folder, compiled = job.folder, job[EDGETPU].compiled_model
    intermediates = job[CONVERT].intermediates
    return {
        "float_tflite": folder.describe(FLOAT_TFLITE),
        "int8_tflite": folder.describe(INT8_TFLITE),
        **{name: folder.describe(f"{FLOAT_MODEL}/{file}") for name, file in intermediates.items()},
        **({"edgetpu_tflite": folder.describe(f"{EDGETPU_FILES}/{compiled.name}")} if compiled else {}),
    }


def _confusion(outputs: Outputs, tasks: OutputTasks) -> dict[str, Any] | None:
    """For a classifier: which predictions int8 changes."""
    if (labelled := tasks.labelled) is None:
        return None
    matrix = confusion(outputs[DRIFT_REFERENCE][labelled], outputs[DRIFT_CANDIDATE][labelled])
    return {"reference": DRIFT_REFERENCE, "candidate": DRIFT_CANDIDATE, "output": labelled, **matrix}


def _requested_samples(recipe: Recipe) -> dict[str, int | None]:
    """num_samples where the recipe sets it (calibration's default of 200 is a ceiling, not a request)."""
    return {"calibration": _requested(recipe.calibration), "verify": _requested(recipe.verify)}


def _requested(section: Calibration | Verify) -> int | None:
    return section.num_samples if "num_samples" in section.model_fields_set else None


def _available_samples(data: DataSets) -> dict[str, int]:
    return {"calibration": data.calibration.source.length, "verify": data.verify.source.length}
