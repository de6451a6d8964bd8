"""`ckit build`: the chain of stages from a recipe to int8 artifacts, measured drift and latency, and gates.

data -> convert (frontend) -> quantize (the one quantizer) -> verify (every runner on the same samples) ->
latency -> report. Each stage reports progress; every artifact is written atomically into the build folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.artifacts import BuildFolder, sha256_file
from compiler_kit.bench import LatencyStats, measure_latency
from compiler_kit.compare import compare
from compiler_kit.compare.layers import LayerDrifts, layer_drift, worst_layers
from compiler_kit.compare.metrics import confusion
from compiler_kit.data import Dataset, open_dataset
from compiler_kit.edgetpu.stage import EdgeTpuOutcome, require_compiler, run_edgetpu_stage
from compiler_kit.errors import BadInputError
from compiler_kit.frontends import FloatModel, frontend_for
from compiler_kit.gates import DRIFT_CANDIDATE, DRIFT_REFERENCE, GateResult, evaluate, needs_labels
from compiler_kit.quantize import Int8Quantizer
from compiler_kit.recipe import Recipe, Source
from compiler_kit.report import build_report, leak_findings, write_reports
from compiler_kit.report.diff import baseline_values, load_report
from compiler_kit.runners import SOURCE_RUNNERS, EdgeTpuRunner, LiteRtRunner, OnnxRuntimeRunner, Runner

FLOAT_TFLITE, INT8_TFLITE, BUILD_LOG = "model_float.tflite", "model_int8.tflite", "build.log"
STAGES = ("data", "convert", "quantize", "edgetpu", "verify", "latency", "report")
FLOAT_MODEL, EDGETPU = "float_model", "edgetpu"

Progress = Callable[[str], None]


@dataclass
class BuildResult:
    report: dict[str, object]
    build_dir: Path

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    @property
    def failed_gates(self) -> list[dict[str, object]]:
        return [gate for gate in self.report["gates"] if not gate["passed"]]  # type: ignore[union-attr]


class _Stages:
    """Announces each stage with its number and elapsed time, keeps the timings for the report, and sends what
    native code prints during a stage to the build log."""

    def __init__(self, progress: Progress, log_path: Path) -> None:
        self.progress = progress
        self.log_path = log_path
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, detail: str = "") -> Iterator[None]:
        number = STAGES.index(name) + 1
        self.progress(f"[{number}/{len(STAGES)}] {name}{': ' + detail if detail else ''} ...")
        start = time.perf_counter()
        with lazy.native_output_to(self.log_path):  # TF and the converter print from C++; keep it in the log
            yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.progress(f"[{number}/{len(STAGES)}] {name} done in {self.seconds[name]:.1f} s")


@dataclass
class _Build:
    """What the stages have produced so far, for the report."""

    recipe: Recipe
    recipe_path: Path
    folder: BuildFolder
    calibration: Dataset
    verify: Dataset
    float_model: FloatModel
    edgetpu: EdgeTpuOutcome
    runners: list[Runner]
    baseline: dict[str, float | None] | None
    layers: LayerDrifts


def build(recipe: Recipe, recipe_path: Path, out_dir: Path | None = None, progress: Progress = print) -> BuildResult:
    folder = BuildFolder(out_dir or recipe.build_dir(recipe_path))
    folder.ensure_writable()
    compiler = require_compiler(recipe.edgetpu)  # `required` and absent: exit 4 before any work
    baseline = load_baseline(recipe)  # a bad baseline is bad input, found before any work too
    folder.path(BUILD_LOG).unlink(missing_ok=True)
    stage = _Stages(progress, folder.path(BUILD_LOG))
    with stage("data", "open and check calibration and verification samples"):
        calibration, verify, shared = open_data(recipe)
    with stage("convert", f"{recipe.source.framework} -> float SavedModel"):
        lazy.tensorflow(threads=recipe.verify.threads)  # fixes TF's thread count before anything runs
        float_model = convert(recipe, folder)
    with stage("quantize", f"float and int8 TFLite from {len(calibration)} calibration samples"):
        quantize(recipe, float_model, calibration, folder)
    with stage("edgetpu", f"compile with {compiler}" if compiler else "predict (static analysis)"):
        edgetpu = run_edgetpu_stage(recipe.edgetpu, compiler, folder.path(INT8_TFLITE), folder.fresh_dir(EDGETPU))
    runners = make_runners(recipe, folder, float_model, edgetpu)
    with stage("verify", f"{len(runners)} runners on {len(verify)} samples, then float vs int8 layer by layer"):
        outputs, first_ms = run_all(runners, verify, recipe.inputs[0].name)
        layers = layer_drift(
            folder.path(FLOAT_TFLITE),
            folder.path(INT8_TFLITE),
            verify,
            float_model.input_perms[0],
            recipe.verify.threads,
        )
    with stage("latency", f"{recipe.verify.latency.warmup} warm-up + {recipe.verify.latency.runs} timed runs"):
        latency = measure_all(runners, verify, recipe, first_ms)
    with stage("report"):
        done = _Build(recipe, recipe_path, folder, calibration, verify, float_model, edgetpu, runners, baseline, layers)
        comparisons = compare_stages(outputs, [runner.name for runner in runners], verify.labels)
        report = _report(done, comparisons, latency)
        report["findings"] += leak_findings(shared, len(verify))
        if verify.labels is not None:  # a classifier: show which predictions int8 changes
            matrix = confusion(outputs[DRIFT_REFERENCE], outputs[DRIFT_CANDIDATE])
            report["confusion"] = {"reference": DRIFT_REFERENCE, "candidate": DRIFT_CANDIDATE, **matrix}
    report["stage_seconds"] = dict(stage.seconds)
    write_reports(report, folder)
    return BuildResult(report, folder.root)


def comparison_pairs(chain: list[str]) -> list[tuple[str, str]]:
    """Each step against the one before it and against the source, so the report says which step drifted."""
    pairs = []
    for step, (previous, current) in enumerate(itertools.pairwise(chain), start=1):
        pairs.append((previous, current))
        if step > 1:
            pairs.append((chain[0], current))
    return pairs


def compare_stages(outputs: dict[str, np.ndarray], chain: list[str], labels: np.ndarray | None) -> list[dict[str, Any]]:
    return [
        {"reference": ref, "candidate": cand, "metrics": compare(outputs[ref], outputs[cand], labels)}
        for ref, cand in comparison_pairs(chain)
    ]


def _gates(done: _Build, comparisons: list[dict[str, Any]], latency: dict[str, LatencyStats]) -> list[GateResult]:
    drift = next(
        c["metrics"] for c in comparisons if (c["reference"], c["candidate"]) == (DRIFT_REFERENCE, DRIFT_CANDIDATE)
    )
    measured = {**drift, **done.edgetpu.gate_values}
    p50 = {name: stats.p50_ms for name, stats in latency.items()}
    gates = evaluate(done.recipe.gates, measured, p50, done.baseline)
    if done.edgetpu.section.get("predicted") is False and not done.edgetpu.section["compiled"]:
        gates.append(GateResult("edgetpu_compiled", 1.0, 0.0, False))  # the compiler ran and refused the model
    return gates


def _report(done: _Build, comparisons: list[dict[str, Any]], latency: dict[str, LatencyStats]) -> dict[str, Any]:
    folder, recipe = done.folder, done.recipe
    return build_report(
        recipe=recipe,
        recipe_path=done.recipe_path,
        artifacts={
            "float_tflite": folder.describe(FLOAT_TFLITE),
            "int8_tflite": folder.describe(INT8_TFLITE),
            **{name: folder.describe(f"{FLOAT_MODEL}/{file}") for name, file in done.float_model.intermediates.items()},
            **(
                {"edgetpu_tflite": folder.describe(f"{EDGETPU}/{compiled.name}")}
                if (compiled := done.edgetpu.compiled_model)
                else {}
            ),
        },
        runners={runner.name: runner.describe() for runner in done.runners},
        comparisons=comparisons,
        latency={name: stats.as_dict() for name, stats in latency.items()},
        gates=[gate.as_dict() for gate in _gates(done, comparisons, latency)],
        model_sha256=model_sha256(recipe.source),
        datasets={"calibration": done.calibration.describe(), "verify": done.verify.describe()},
        layout=done.float_model.layout_report(recipe.inputs),
        edgetpu=done.edgetpu.section,
        layers=[layer.as_dict() for layer in done.layers],
        worst_layers=[layer.name for layer in worst_layers(done.layers)],
    )


def load_baseline(recipe: Recipe) -> dict[str, float | None] | None:
    """The baseline report's figures that relative gates compare with; it must be a build of the same model."""
    path = recipe.gates.baseline
    if path is None:
        return None
    report = load_report(path)
    if report.get("name") != recipe.name:
        raise BadInputError(
            f"the baseline report is of another model ('{report.get('name')}'; this recipe builds '{recipe.name}')",
            path=path,
            fix="point gates.baseline at a report.json of this recipe's model",
        )
    values = baseline_values(report)
    if recipe.gates.max_accuracy_below_baseline_pp is not None and values["accuracy"] is None:
        raise BadInputError("the baseline report has no int8 accuracy (built without labels)", path=path)
    return values


def model_sha256(source: Source) -> str:
    """Hash of what defines the source model: its file, or its entry point and weights."""
    if source.path is not None:
        return sha256_file(source.path)
    digest = hashlib.sha256(str(source.entry_point).encode())
    if source.weights is not None:
        digest.update(sha256_file(source.weights).encode())
    return digest.hexdigest()


def open_data(recipe: Recipe) -> tuple[Dataset, Dataset, int]:
    """The calibration and verification sets, every sample checked, and how many samples they share."""
    spec, cal, ver = recipe.inputs[0], recipe.calibration, recipe.verify
    calibration = open_dataset(cal.data, cal.preprocess, spec, cal.num_samples, cal.seed)
    verify = open_dataset(ver.data, cal.preprocess, spec, ver.num_samples, ver.seed)
    if verify.labels is None and (gated := needs_labels(recipe.gates)):
        raise BadInputError(
            f"gates {', '.join(gated)} need labels, but the verification data has none",
            path=ver.data.path,
            fix="set verify.data.labels_key / labels_path, or remove those gates",
        )
    return calibration, verify, len(calibration.digests() & verify.digests())


def convert(recipe: Recipe, folder: BuildFolder) -> FloatModel:
    with folder.new_dir(FLOAT_MODEL) as tmp:
        float_model = frontend_for(recipe.source.framework).convert(recipe.source, recipe.inputs, tmp)
    return dataclasses.replace(float_model, root=folder.path(FLOAT_MODEL))


def quantize(recipe: Recipe, float_model: FloatModel, calibration: Dataset, folder: BuildFolder) -> None:
    quantizer = Int8Quantizer(recipe.quantization)
    float_bytes = quantizer.float_tflite(float_model)
    int8_bytes = quantizer.int8_tflite(float_model, calibration)
    folder.write_bytes(FLOAT_TFLITE, float_bytes)
    folder.write_bytes(INT8_TFLITE, int8_bytes)


def make_runners(recipe: Recipe, folder: BuildFolder, float_model: FloatModel, edgetpu: EdgeTpuOutcome) -> list[Runner]:
    """The stage chain, in order: source, any intermediate model (torch's exported ONNX), float and int8 TFLite,
    and the compiled model on an Edge TPU when one is here."""
    threads, perms = recipe.verify.threads, (float_model.input_perms, float_model.output_perms)
    intermediates = [
        OnnxRuntimeRunner(name, float_model.root / file, threads) for name, file in float_model.intermediates.items()
    ]
    return [
        SOURCE_RUNNERS[recipe.source.framework](recipe.source, threads),
        *intermediates,
        LiteRtRunner("tflite-float", folder.path(FLOAT_TFLITE), threads, *perms),
        LiteRtRunner("tflite-int8", folder.path(INT8_TFLITE), threads, *perms),
        *(
            [EdgeTpuRunner(edgetpu.compiled_model, threads, recipe.edgetpu.device, *perms)]
            if edgetpu.runnable and edgetpu.compiled_model
            else []
        ),
    ]


def run_all(runners: list[Runner], verify: Dataset, input_name: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Feed every runner the same samples; keep each runner's first output and its first inference time."""
    for runner in runners:
        runner.prepare()
    collected: dict[str, list[np.ndarray]] = {runner.name: [] for runner in runners}
    first_ms: dict[str, float] = {}
    for sample in verify:
        for runner in runners:
            collected[runner.name].append(runner.infer({input_name: sample})[0])
            first_ms.setdefault(runner.name, runner.last_inference_ms)
    return {name: np.concatenate(batches) for name, batches in collected.items()}, first_ms


def measure_all(
    runners: list[Runner], verify: Dataset, recipe: Recipe, first_ms: dict[str, float]
) -> dict[str, LatencyStats]:
    feed = {recipe.inputs[0].name: verify.sample(int(verify.indices[0]))}
    settings = recipe.verify.latency
    return {
        runner.name: measure_latency(
            runner, feed, first_ms=first_ms[runner.name], warmup=settings.warmup, runs=settings.runs
        )
        for runner in runners
    }
