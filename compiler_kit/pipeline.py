"""`ckit build`: the chain of stages from a recipe to int8 artifacts, measured drift and latency, and gates.

data -> convert (frontend) -> quantize (the one quantizer) -> edgetpu (compiler or prediction) -> verify (every
runner on the same samples) -> latency -> report. Each stage between data and report is cached by a key of
everything it depends on (compiler_kit.stage_keys): a stage whose key has a verified entry is reused, its
artifacts copied into the build folder atomically. The whole build holds the build folder's lock.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy, stage_keys
from compiler_kit.artifacts import BuildFolder
from compiler_kit.cache import RETRY, Entry, StageCache, default_root, resolve_files, stage_key
from compiler_kit.compare.layers import LayerDrift, LayerDrifts, layer_drift, worst_layers
from compiler_kit.compare.metrics import confusion
from compiler_kit.compare.outputs import (
    OutputTasks,
    compare_outputs,
    constant_outputs,
    refuse_unknown_outputs,
    resolve_tasks,
)
from compiler_kit.data import Dataset, open_dataset
from compiler_kit.edgetpu.analysis import analyze
from compiler_kit.edgetpu.compiler import compiler_version
from compiler_kit.edgetpu.latency import latency_section
from compiler_kit.edgetpu.stage import EdgeTpuOutcome, edgetpu_section, outcome, require_compiler
from compiler_kit.errors import BadInputError
from compiler_kit.frontends import FloatModel, frontend_for
from compiler_kit.frontends.base import ModelOutput
from compiler_kit.frontends.onnx import ONNX2TF_LOG, ConverterFailed
from compiler_kit.gates import DRIFT_CANDIDATE, DRIFT_REFERENCE, GateResult, evaluate, needs_labels
from compiler_kit.quantize import Int8Quantizer
from compiler_kit.recipe import Recipe
from compiler_kit.report import REPORT_HTML, REPORT_JSON, REPORT_MD, build_report, leak_findings, write_reports
from compiler_kit.report.diff import baseline_values, load_report
from compiler_kit.report.document import degenerate_findings, sample_count_findings, speed_findings
from compiler_kit.runners import SOURCE_RUNNERS, EdgeTpuRunner, LiteRtRunner, OnnxRuntimeRunner, Runner
from compiler_kit.runners.xnnpack import ops_outside_xnnpack
from compiler_kit.timing import LatencyStats, measure_latency

FLOAT_TFLITE, INT8_TFLITE, BUILD_LOG, OUTPUTS = "model_float.tflite", "model_int8.tflite", "build.log", "outputs.npz"
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
    """Announces each stage with its number and elapsed time, keeps the timings and the cache verdicts for the
    report, and sends what native code prints during a stage to the build log."""

    def __init__(self, progress: Progress, log_path: Path) -> None:
        self.progress = progress
        self.log_path = log_path
        self.seconds: dict[str, float] = {}
        self.cache: dict[str, dict[str, str]] = {}

    @contextmanager
    def __call__(self, name: str, detail: str = "") -> Iterator[None]:
        number = STAGES.index(name) + 1
        self.progress(f"[{number}/{len(STAGES)}] {name}{': ' + detail if detail else ''} ...")
        start = time.perf_counter()
        with lazy.native_output_to(self.log_path):  # TF and the converter print from C++; keep it in the log
            yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        how = "reused from the cache" if self.cache.get(name, {}).get("status") == "hit" else "done"
        self.progress(f"[{number}/{len(STAGES)}] {name} {how} in {self.seconds[name]:.1f} s")


@dataclass
class _Build:
    """One build: its settings, and what the stages have produced so far."""

    recipe: Recipe
    recipe_path: Path
    folder: BuildFolder
    cache: StageCache
    stage: _Stages
    compiler: Path | None
    baseline: dict[str, float | None] | None
    keys: dict[str, str] = field(default_factory=dict)
    prepared: set[str] = field(default_factory=set)

    @cached_property
    def model_sha256(self) -> str:
        """Read once: the convert stage's key and the report both name the model by it."""
        return stage_keys.model_sha256(self.recipe.source)

    def cached(self, name: str, inputs: dict[str, Any], produce: Callable[[Path], dict[str, Any]]) -> Entry:
        """The stage's entry (reused or produced now); what it holds for the build folder is installed there."""
        key = self.keys[name] = stage_key(name, inputs)
        found = self.cache.lookup(name, key)
        verdict = {"status": found.status, "key": key}
        if found.status == "corrupt":  # a warning, not progress: on stderr even with --quiet, and in the report
            where = self.cache.root / name / key
            self.cache.warn(f"the cached {name} entry {where} is corrupt ({found.problem}): building it again")
            verdict["problem"] = found.problem
        entry = found.entry or self.cache.produce(name, key, produce, replace=found.replace)
        for item in _INSTALLED.get(name, ()):
            self.folder.install(entry.files / item, item)
        self.stage.cache[name] = verdict
        return entry

    def prepare(self, runners: list[Runner]) -> None:
        """Prepare each runner once, in whichever stage first runs it (none does after a reused verify stage)."""
        for runner in runners:
            if runner.name not in self.prepared:
                runner.prepare()
                self.prepared.add(runner.name)


_INSTALLED = {"convert": (FLOAT_MODEL,), "quantize": (FLOAT_TFLITE, INT8_TFLITE), "edgetpu": (EDGETPU,)}


def build(
    recipe: Recipe,
    recipe_path: Path,
    out_dir: Path | None = None,
    progress: Progress = print,
    cache: StageCache | None = None,
) -> BuildResult:
    folder = BuildFolder(out_dir or recipe.build_dir(recipe_path))
    folder.ensure_writable()
    compiler = require_compiler(recipe.edgetpu)  # `required` and absent: exit 4 before any work
    baseline = load_baseline(recipe)  # a bad baseline is bad input, found before any work too
    cache = cache or StageCache(default_root())
    with folder.locked(progress):
        folder.remove_leftovers((BUILD_LOG, REPORT_JSON, REPORT_MD, REPORT_HTML, ONNX2TF_LOG))
        with cache.for_build(scratch=folder.root):  # after remove_leftovers, which takes its scratch for a dead build's
            stage = _Stages(progress, folder.path(BUILD_LOG))
            job = _Build(recipe, recipe_path, folder, cache, stage, compiler, baseline)
            return _run(job)


def _run(job: _Build) -> BuildResult:
    recipe, folder, stage = job.recipe, job.folder, job.stage
    with stage("data", "open and check calibration and verification samples"):
        calibration, verify, shared = open_data(recipe)
    with stage("convert", f"{recipe.source.framework} -> float SavedModel"):
        float_model = convert(job)
    with stage("quantize", f"float and int8 TFLite from {len(calibration)} calibration samples"):
        quantize(job, float_model, calibration)
    with stage("edgetpu", _edgetpu_plan(recipe, job.compiler)):
        edgetpu = run_edgetpu(job)
    runners = make_runners(recipe, folder, float_model, edgetpu)
    with stage("verify", f"{len(runners)} runners on {len(verify)} samples, then float vs int8 layer by layer"):
        outputs, verified = run_verify(job, runners, verify, float_model)
        tasks = output_tasks(recipe, outputs[runners[0].name], verify)
    with stage("latency", f"{recipe.verify.latency.warmup} warm-up + {recipe.verify.latency.runs} timed runs"):
        latency, predicted, outside_xnnpack = measure_all(job, runners, verify, verified["first_ms"], edgetpu)
        if predicted is not None:
            edgetpu.section["latency"] = {**predicted, "measured_p50_ms": _p50(latency, EdgeTpuRunner.NAME)}
    with stage("report"):
        results = _Results(
            float_model,
            edgetpu,
            verified["runners"],
            LayerDrifts([LayerDrift(**layer) for layer in verified["layers"]], verified["unmatched"]),
            compare_stages(outputs, [runner.name for runner in runners], tasks, verify),
            tasks,
            latency,
            {"calibration": calibration, "verify": verify},
            warnings=[
                *degenerate_findings(constant_outputs(outputs[runners[0].name]), len(verify)),
                *sample_count_findings(
                    _requested_samples(recipe),
                    {"calibration": calibration.source.length, "verify": verify.source.length},
                ),
                *speed_findings({n: s.as_dict() for n, s in latency.items()}, outside_xnnpack),
            ],
        )
        report = _report(job, results)
        report["findings"] += leak_findings(shared, len(verify))
        if (labelled := tasks.labelled) is not None:  # a classifier: show which predictions int8 changes
            matrix = confusion(outputs[DRIFT_REFERENCE][labelled], outputs[DRIFT_CANDIDATE][labelled])
            report["confusion"] = {
                "reference": DRIFT_REFERENCE,
                "candidate": DRIFT_CANDIDATE,
                "output": labelled,
                **matrix,
            }
    report["stage_seconds"] = dict(stage.seconds)
    report["cache"] = {"dir": str(job.cache.root), "stages": stage.cache}
    write_reports(report, folder)
    return BuildResult(report, folder.root)


def _edgetpu_plan(recipe: Recipe, compiler: Path | None) -> str:
    if recipe.edgetpu.compile == "off":
        return "off (edgetpu.compile: off)"
    return f"compile with {compiler}" if compiler else "predict (static analysis)"


def comparison_pairs(chain: list[str]) -> list[tuple[str, str]]:
    """Each step against the one before it and against the source, so the report says which step drifted."""
    pairs = []
    for step, (previous, current) in enumerate(itertools.pairwise(chain), start=1):
        pairs.append((previous, current))
        if step > 1:
            pairs.append((chain[0], current))
    return pairs


def compare_stages(
    outputs: dict[str, dict[str, np.ndarray]], chain: list[str], tasks: OutputTasks, verify: Dataset
) -> list[dict[str, Any]]:
    names = verify.sample_names()
    return [
        {
            "reference": ref,
            "candidate": cand,
            **compare_outputs(outputs[ref], outputs[cand], tasks, verify.labels, names),
        }
        for ref, cand in comparison_pairs(chain)
    ]


def output_tasks(recipe: Recipe, source_outputs: dict[str, np.ndarray], verify: Dataset) -> OutputTasks:
    """Each output's task (the recipe's, or inferred from its shape); a Keras model's maps are channels-last."""
    shapes = {name: array.shape[1:] for name, array in source_outputs.items()}
    refuse_unknown_outputs("gates.outputs", recipe.gates.outputs, list(shapes))
    channels_last = recipe.source.framework == "keras"
    return resolve_tasks(recipe.verify.task, shapes, channels_last, verify.labels is not None)


@dataclass
class _Results:
    """What the stages measured, for the report and the gates."""

    float_model: FloatModel
    edgetpu: EdgeTpuOutcome
    runners: dict[str, dict[str, object]]  # runner name -> its description
    layers: LayerDrifts
    comparisons: list[dict[str, Any]]
    tasks: OutputTasks
    latency: dict[str, LatencyStats]
    datasets: dict[str, Dataset]
    warnings: list[str]


def _gates(job: _Build, results: _Results) -> list[GateResult]:
    drift = next(
        c for c in results.comparisons if (c["reference"], c["candidate"]) == (DRIFT_REFERENCE, DRIFT_CANDIDATE)
    )
    measured = {**drift["metrics"], **results.edgetpu.gate_values}
    per_output = {name: entry["metrics"] for name, entry in drift["outputs"].items()}
    p50 = {name: stats.p50_ms for name, stats in results.latency.items()}
    predicted = results.edgetpu.section.get("latency", {}).get("targets", {})
    predicted_ms = {target: estimate["predicted_ms"] for target, estimate in predicted.items()}
    gates = evaluate(job.recipe.gates, measured, p50, job.baseline, predicted_ms, per_output)
    section = results.edgetpu.section
    if section.get("predicted") is False and not section["compiled"]:
        gates.append(GateResult("edgetpu_compiled", 1.0, 0.0, False))  # the compiler ran and refused the model
    return gates


def _report(job: _Build, results: _Results) -> dict[str, Any]:
    folder, recipe, float_model = job.folder, job.recipe, results.float_model
    compiled = results.edgetpu.compiled_model
    return build_report(
        recipe=recipe,
        recipe_path=job.recipe_path,
        artifacts={
            "float_tflite": folder.describe(FLOAT_TFLITE),
            "int8_tflite": folder.describe(INT8_TFLITE),
            **{name: folder.describe(f"{FLOAT_MODEL}/{file}") for name, file in float_model.intermediates.items()},
            **({"edgetpu_tflite": folder.describe(f"{EDGETPU}/{compiled.name}")} if compiled else {}),
        },
        runners=results.runners,
        comparisons=results.comparisons,
        latency={name: stats.as_dict() for name, stats in results.latency.items()},
        gates=[gate.as_dict() for gate in _gates(job, results)],
        model_sha256=job.model_sha256,
        datasets={name: dataset.describe() for name, dataset in results.datasets.items()},
        layout=float_model.layout_report(recipe.inputs),
        edgetpu=results.edgetpu.section,
        layers=[layer.as_dict() for layer in results.layers],
        worst_layers=[layer.name for layer in worst_layers(results.layers)],
        legalization={**float_model.legalization, "renamed": float_model.renamed},
        tasks=results.tasks.describe(),
        warnings=results.warnings,
    )


def _requested_samples(recipe: Recipe) -> dict[str, int | None]:
    """num_samples where the recipe sets it (calibration's default of 200 is a ceiling, not a request)."""
    sections = {"calibration": recipe.calibration, "verify": recipe.verify}
    return {name: s.num_samples if "num_samples" in s.model_fields_set else None for name, s in sections.items()}


def _p50(latency: dict[str, LatencyStats], runner: str) -> float | None:
    return latency[runner].p50_ms if runner in latency else None


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
        raise BadInputError(
            "the baseline report has no int8 accuracy (built without labels)",
            path=path,
            fix="give the baseline build labels (verify.data.labels_key), or drop max_accuracy_below_baseline_pp",
        )
    return values


def open_data(recipe: Recipe) -> tuple[Dataset, Dataset, int]:
    """The calibration and verification sets, every sample checked, and how many samples they share."""
    spec, cal, ver = recipe.inputs[0], recipe.calibration, recipe.verify
    calibration = open_dataset(cal.data, cal.preprocess, spec, cal.num_samples, cal.seed, "calibration.data")
    verify = open_dataset(ver.data, cal.preprocess, spec, ver.num_samples, ver.seed, "verify.data")
    if verify.labels is None and (gated := needs_labels(recipe.gates)):
        raise BadInputError(
            f"gates {', '.join(gated)} need labels, but the verification data has none",
            path=ver.data.path,
            fix="set verify.data.labels_key / labels_path, or remove those gates",
        )
    return calibration, verify, len(calibration.digests() & verify.digests())


def convert(job: _Build) -> FloatModel:
    recipe = job.recipe

    def produce(files: Path) -> dict[str, Any]:
        lazy.tensorflow(threads=recipe.verify.threads)  # fixes TF's thread count before anything runs
        (files / FLOAT_MODEL).mkdir()
        frontend = frontend_for(recipe.source.framework)
        made = frontend.convert(recipe.source, recipe.inputs, files / FLOAT_MODEL, recipe.legalize)
        return {
            "signature_key": made.signature_key,
            "input_perms": made.input_perms,
            "outputs": [dataclasses.asdict(output) for output in made.outputs],
            "intermediates": made.intermediates,
            "legalization": made.legalization,
            "renamed": made.renamed,
        }

    try:
        meta = job.cached("convert", stage_keys.convert_inputs(recipe, job.model_sha256), produce).meta
    except ConverterFailed as failed:  # its scratch folder is gone: keep the converter's log where the user looks
        log = job.folder.write_text(ONNX2TF_LOG, failed.log)
        raise BadInputError(failed.problem, path=log, fix=failed.fix) from None
    outputs = [ModelOutput(o["name"], o["key"], _perm(o["perm"])) for o in meta["outputs"]]
    return FloatModel(
        job.folder.path(FLOAT_MODEL),
        meta["signature_key"],
        input_perms=[_perm(perm) for perm in meta["input_perms"]],
        outputs=outputs,
        intermediates=meta["intermediates"],
        legalization=meta["legalization"],
        renamed=meta["renamed"],
    )


def _perm(stored: list[int] | None) -> tuple[int, ...] | None:
    """A permutation as the cache's JSON holds it (a list) back to the tuple the frontends made."""
    return None if stored is None else tuple(stored)


def quantize(job: _Build, float_model: FloatModel, calibration: Dataset) -> None:
    recipe = job.recipe

    def produce(files: Path) -> dict[str, Any]:
        lazy.tensorflow(threads=recipe.verify.threads)
        quantizer = Int8Quantizer(recipe.quantization)
        (files / FLOAT_TFLITE).write_bytes(quantizer.float_tflite(float_model))
        (files / INT8_TFLITE).write_bytes(quantizer.int8_tflite(float_model, calibration))
        return {}

    job.cached("quantize", stage_keys.quantize_inputs(recipe, job.keys["convert"], calibration), produce)


def run_edgetpu(job: _Build) -> EdgeTpuOutcome:
    settings, int8_model = job.recipe.edgetpu, job.folder.path(INT8_TFLITE)
    if settings.compile == "off":
        return outcome(settings, {})
    version = compiler_version(job.compiler) if job.compiler else None
    inputs = stage_keys.edgetpu_inputs(job.recipe, int8_model, job.compiler, version)

    def produce(files: Path) -> dict[str, Any]:
        (files / EDGETPU).mkdir()
        section = edgetpu_section(settings, job.compiler, int8_model, files / EDGETPU)
        killed = not section["predicted"] and section["compiler"]["exit_code"] is None  # timed out: try again
        return {"section": section, RETRY: killed}

    entry = job.cached("edgetpu", inputs, produce)
    return outcome(settings, resolve_files(entry.meta["section"], job.folder.root))


def make_runners(recipe: Recipe, folder: BuildFolder, float_model: FloatModel, edgetpu: EdgeTpuOutcome) -> list[Runner]:
    """The stage chain, in order: source, any intermediate model (torch's exported ONNX), float and int8 TFLite,
    and the compiled model on an Edge TPU when one is here."""
    threads, model_io = recipe.verify.threads, (float_model.input_perms, float_model.outputs)
    intermediates = [
        OnnxRuntimeRunner(name, float_model.root / file, threads) for name, file in float_model.intermediates.items()
    ]
    return [
        SOURCE_RUNNERS[recipe.source.framework](recipe.source, threads, float_model.output_names),
        *intermediates,
        LiteRtRunner("tflite-float", folder.path(FLOAT_TFLITE), threads, *model_io),
        LiteRtRunner("tflite-int8", folder.path(INT8_TFLITE), threads, *model_io),
        *(
            [EdgeTpuRunner(edgetpu.compiled_model, threads, recipe.edgetpu.device, *model_io)]
            if edgetpu.runnable and edgetpu.compiled_model
            else []
        ),
    ]


def run_verify(
    job: _Build, runners: list[Runner], verify: Dataset, float_model: FloatModel
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Every runner's outputs on the verification samples, by runner and output name, and (in the metadata) each
    runner's first inference time and description and the per-layer drift of int8 against float."""
    recipe, folder = job.recipe, job.folder

    def produce(files: Path) -> dict[str, Any]:
        job.prepare(runners)
        outputs, first_ms = run_all(runners, verify, recipe.inputs[0].name)
        np.savez(files / OUTPUTS, **_flat(outputs, float_model.output_names))
        float_tflite, int8_tflite = folder.path(FLOAT_TFLITE), folder.path(INT8_TFLITE)
        layers = layer_drift(float_tflite, int8_tflite, verify, float_model.input_perms[0], recipe.verify.threads)
        return {
            "first_ms": first_ms,
            "runners": {runner.name: runner.describe() for runner in runners},
            "layers": [layer.as_dict() for layer in layers],
            "unmatched": layers.unmatched,
        }

    models = [job.keys[name] for name in ("quantize", "edgetpu") if name in job.keys]
    inputs = stage_keys.verify_inputs(recipe, models, [runner.name for runner in runners], verify)
    entry = job.cached("verify", inputs, produce)
    with np.load(entry.files / OUTPUTS) as stored:
        names = float_model.output_names
        outputs = {r.name: {name: stored[f"{r.name}#{k}"] for k, name in enumerate(names)} for r in runners}
    return outputs, entry.meta


def _flat(outputs: dict[str, dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """One archive member per runner and output: `runner#k`, k the output's position in the source model (output
    names may hold any character; the position is the stable key)."""
    return {f"{runner}#{k}": by_name[name] for runner, by_name in outputs.items() for k, name in enumerate(names)}


def run_all(
    runners: list[Runner], verify: Dataset, input_name: str
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Feed the prepared runners the same samples; keep each one's outputs (by output name) and first inference
    time. The first runner's outputs are the reference every other runner's must match by name and shape. Outputs
    go into arrays allocated once: a list of per-sample arrays fragments the heap as the set grows."""
    outputs: dict[str, dict[str, np.ndarray]] = {}
    first_ms: dict[str, float] = {}
    for position, sample in enumerate(verify):
        for runner in runners:
            produced = runner.infer({input_name: sample})
            if position == 0:
                check_outputs(runner.name, produced, outputs[runners[0].name] if outputs else None)
                outputs[runner.name] = {
                    name: np.empty((len(verify), *y.shape[1:]), dtype=y.dtype) for name, y in produced.items()
                }
                first_ms[runner.name] = runner.last_inference_ms
            for name, y in produced.items():
                outputs[runner.name][name][position] = y[0]
    return outputs, first_ms


def check_outputs(runner: str, produced: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None) -> None:
    """A converted model must return the source model's outputs: the same names, each of the same shape."""
    if reference is None:
        return
    if set(produced) != set(reference):
        raise BadInputError(
            f"the {runner} model's outputs ({', '.join(produced)}) are not the source model's ({', '.join(reference)})",
            fix="report the model: the converter lost or renamed an output",
        )
    for name, y in produced.items():
        if y.shape[1:] != reference[name].shape[1:]:
            raise BadInputError(
                f"the {runner} model's output '{name}' has shape {list(y.shape)}, the source model's "
                f"{[1, *reference[name].shape[1:]]}",
                fix="report the model: the converter changed the output's shape",
            )


def measure_all(
    job: _Build, runners: list[Runner], verify: Dataset, first_ms: dict[str, float], edgetpu: EdgeTpuOutcome
) -> tuple[dict[str, LatencyStats], dict[str, Any] | None, dict[str, dict[str, int]]]:
    """Each runner's latency on this machine, the predicted Edge TPU latency (its CPU part is measured here too,
    which is why it belongs to this stage), and the ops of each TFLite model XNNPACK leaves to slower kernels
    (which explain int8 slower than float on this CPU)."""
    recipe = job.recipe
    feed = {recipe.inputs[0].name: verify.sample(int(verify.indices[0]))}
    settings = recipe.verify.latency

    def produce(_: Path) -> dict[str, Any]:
        job.prepare(runners)
        runs = {
            runner.name: measure_latency(
                runner, feed, first_ms=first_ms[runner.name], warmup=settings.warmup, runs=settings.runs
            ).as_dict()
            for runner in runners
        }
        predicted = None
        prediction = analyze(job.folder.path(INT8_TFLITE)) if recipe.edgetpu.compile != "off" else None
        if prediction is not None and prediction.ops_on_edgetpu:  # nothing on the Edge TPU: no Edge TPU latency
            off_chip = None if edgetpu.section["predicted"] else edgetpu.section.get("off_chip_bytes")
            predicted = latency_section(prediction, recipe.verify.threads, off_chip)
        tflite = {"tflite-float": FLOAT_TFLITE, "tflite-int8": INT8_TFLITE}
        threads = recipe.verify.threads
        outside = {name: ops_outside_xnnpack(job.folder.path(file), threads) for name, file in tflite.items()}
        return {"runners": runs, "edgetpu": predicted, "outside_xnnpack": outside}

    meta = job.cached("latency", stage_keys.latency_inputs(recipe, job.keys["verify"]), produce).meta
    latency = {name: LatencyStats(**stats) for name, stats in meta["runners"].items()}
    return latency, meta["edgetpu"], meta["outside_xnnpack"]
