"""`ckit tune`: try quantization settings on one recipe, each trial a real cached build, and keep the best.

A search space is data: a list of trials, each a name and the recipe fields it sets (dotted keys, as `ckit build
--set` takes them), or a grid (a mapping of dotted keys to lists of values: every combination is a trial). The
default space tries the remedies that keep a model fully int8: the calibration range methods, more calibration
samples and the int8 model's empirical bias correction, and for ONNX and torch sources cross-layer equalization,
bias correction and both. Every trial is `ckit build RECIPE --set ...` into its own folder, sharing the stage
cache: the first trial converts the model, the others reuse its conversion (the graph remedies convert their own)
and run in parallel (`-j`, or as tasks on a Ray cluster).

The best trial passes the recipe's gates, then has the best int8 result: the labelled accuracy of a classifier,
else the worst SNR over outputs (source -> tflite-int8), then the best SNR. Ties go to the earlier trial (the
recipe as written comes first). Its
settings are written into a recipe beside the original (`NAME.tuned.yaml`) and every trial into tune.json,
tune.md and tune.html.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from compiler_kit.artifacts import BuildFolder
from compiler_kit.batch import BatchBuild, BuildJob, BuildOutcome, RayBuild
from compiler_kit.errors import EXIT_GATE_FAILED, EXIT_OK, BadInputError
from compiler_kit.progress import NO_TASK, Task
from compiler_kit.recipe import set_dotted

TUNE_JSON, TUNE_MD, TUNE_HTML = "tune.json", "tune.md", "tune.html"


@dataclass(frozen=True)
class Trial:
    name: str
    settings: dict[str, Any]  # dotted recipe keys -> values


DEFAULT_SPACE = [
    Trial("recipe as written", {}),
    Trial("percentile 99.99", {"calibration.method": "percentile", "calibration.percentile": 99.99}),
    Trial("percentile 99.9", {"calibration.method": "percentile", "calibration.percentile": 99.9}),
    Trial("mse", {"calibration.method": "mse"}),
    Trial("1000 calibration samples", {"calibration.num_samples": 1000}),
    # On the int8 model, so for every framework; it reuses the conversion and re-quantizes.
    Trial("empirical bias correction", {"calibration.bias_correction": "empirical"}),
]
# The graph remedies rewrite the ONNX graph: for ONNX and torch sources only (a Keras model has none). Equalization
# moves weight ranges, and with them the int8 weights' rounding error, which bias correction then cancels.
EQUALIZE = Trial("cross-layer equalization", {"legalize.equalize": True})
BIAS_CORRECTION = Trial("bias correction", {"legalize.bias_correction": True})
EQUALIZE_AND_CORRECT = Trial(
    "cross-layer equalization + bias correction", {"legalize.equalize": True, "legalize.bias_correction": True}
)
GRAPH_REMEDIES = [EQUALIZE, BIAS_CORRECTION, EQUALIZE_AND_CORRECT]


def default_space(framework: str) -> list[Trial]:
    return [*DEFAULT_SPACE, *GRAPH_REMEDIES] if framework in ("onnx", "torch") else DEFAULT_SPACE


def load_space(path: Path) -> list[Trial]:
    """A space file: a list of {name, set: {key: value}} or a grid {key: [values]}; the recipe as written is
    always the first trial, so the result is never worse than it."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BadInputError(f"cannot read the search space: {exc}", path=path, fix=_SPACE_FIX) from None
    if isinstance(data, dict) and data and all(isinstance(v, list) and v for v in data.values()):
        keys = list(data)
        trials = [dict(zip(keys, values, strict=True)) for values in itertools.product(*data.values())]
        named = [Trial(", ".join(f"{k}={v}" for k, v in t.items()), t) for t in trials]
    elif isinstance(data, list) and data and all(_is_trial(item) for item in data):
        named = [Trial(str(item["name"]), dict(item["set"])) for item in data]
    else:
        raise BadInputError("not a search space", path=path, fix=_SPACE_FIX)
    return [DEFAULT_SPACE[0], *named]


_SPACE_FIX = (
    "write a grid (calibration.method: [min-max, mse]) or a list of trials (- name: mse\\n  set: "
    "{calibration.method: mse}); keys are recipe fields as `ckit build --set` takes them"
)


def _is_trial(item: Any) -> bool:
    return isinstance(item, dict) and set(item) == {"name", "set"} and isinstance(item["set"], dict)


@dataclass
class TrialResult:
    name: str
    settings: dict[str, Any]
    build_dir: str
    exit_code: int
    passed: bool
    metric: str | None  # what `score` is
    score: float | None
    snr_db: float | None
    seconds: float


def run_trials(
    recipe: Path, space: list[Trial], out: Path, batch: BatchBuild | RayBuild, landed: Task = NO_TASK
) -> list[TrialResult]:
    """The first trial alone (it converts the model), then the rest at once, as `batch` runs them (they reuse it);
    `landed` advances as each trial ends."""
    folders = [out / "trials" / f"{k:02d}" for k in range(len(space))]
    build_jobs = [
        BuildJob(recipe, (*_sets(trial.settings), "--out", str(folder.resolve())), trial.name)
        for trial, folder in zip(space, folders, strict=True)
    ]
    outcomes = batch.run(build_jobs[:1], landed) + batch.run(build_jobs[1:], landed)
    return [_result(t, f, o) for t, f, o in zip(space, folders, outcomes, strict=True)]


def _sets(settings: dict[str, Any]) -> list[str]:
    return [part for key, value in settings.items() for part in ("--set", f"{key}={json.dumps(value)}")]


def _result(trial: Trial, folder: Path, outcome: BuildOutcome) -> TrialResult:
    report_path = folder / "report.json"
    built = outcome.exit_code in (EXIT_OK, EXIT_GATE_FAILED) and report_path.is_file()
    metric, score, snr = _score(json.loads(report_path.read_text())) if built else (None, None, None)
    return TrialResult(
        trial.name, trial.settings, str(folder), outcome.exit_code, outcome.exit_code == EXIT_OK, metric, score,
        snr, round(outcome.seconds, 1),
    )  # fmt: skip


def _score(report: dict[str, Any]) -> tuple[str, float | None, float | None]:
    drift = next(
        c["metrics"] for c in report["comparisons"] if (c["reference"], c["candidate"]) == ("source", "tflite-int8")
    )
    if drift.get("accuracy_candidate") is not None:
        return "accuracy", drift["accuracy_candidate"], drift["snr_db"]
    return "snr_db", drift["snr_db"], drift["snr_db"]


def best(results: list[TrialResult]) -> TrialResult | None:
    """Passing the gates first, then the best score, then the best SNR (accuracy ties often: it moves in whole
    samples); the earlier trial on a tie. None when no trial built."""
    built = [r for r in results if r.score is not None]
    return max(built, key=lambda r: (r.passed, r.score, r.snr_db or 0.0, -results.index(r))) if built else None


def tuned_recipe(recipe: Path, chosen: TrialResult) -> Path:
    """The recipe with the chosen trial's settings, beside the original (relative paths keep working)."""
    data = yaml.safe_load(recipe.read_text())
    for key, value in chosen.settings.items():
        set_dotted(data, key, value)
    target = recipe.with_name(f"{recipe.stem}.tuned.yaml")
    header = f"# written by `ckit tune {recipe.name}`: trial '{chosen.name}' ({chosen.metric} {chosen.score})\n"
    target.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return target


def write_tune_report(out: Path, recipe: Path, results: list[TrialResult], chosen: TrialResult | None) -> None:
    from compiler_kit.report.html import tune_page
    from compiler_kit.report.render import tune_markdown

    document = {
        "recipe": str(recipe.resolve()),
        "best": chosen.name if chosen else None,
        "trials": [asdict(result) for result in results],
    }
    folder = BuildFolder(out)
    folder.ensure_writable()
    folder.write_text(TUNE_JSON, json.dumps(document, indent=2) + "\n")
    folder.write_text(TUNE_MD, tune_markdown(document))
    folder.write_text(TUNE_HTML, tune_page(document))
