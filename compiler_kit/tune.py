"""`ckit tune`: try quantization settings on one recipe, each trial a real cached build, and keep the best.

A search space is data: a list of trials, each a name and the recipe fields it sets (dotted keys, as `ckit build
--set` takes them), or a grid (a mapping of dotted keys to lists of values: every combination is a trial), or
rounds of those, each round after the first set on top of each of the two best trials so far: a beam search, so
remedies that add up are found without trying every combination, and two bases, not one, because the best range
method alone is not always the best base for the remedies on top (README: the corpus tune). The default space tries
the remedies that keep a model fully int8 in two rounds: the calibration range methods, and for ONNX and torch
sources cross-layer equalization, bias correction and both; then, on the two best of those, the int8 model's GPTQ
weight rounding, its empirical bias correction, both, and more calibration samples. Every trial is `ckit build
RECIPE --set ...` into its own folder, sharing the stage cache: the first trial converts the model, the others reuse
its conversion (the graph remedies convert their own) and each round's trials run in parallel (`-j`, or as tasks
on a Ray cluster).

The best trial passes the recipe's gates, then has the best int8 result: the labelled accuracy of a classifier,
else the worst SNR over outputs (source -> tflite-int8), then the best SNR. Ties go to the earlier trial (the
recipe as written comes first). Its settings are written into a recipe beside the original (`NAME.tuned.yaml`) and
every trial into tune.json, tune.md and tune.html.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from compiler_kit.artifacts import BuildFolder
from compiler_kit.batch import BatchBuild, BuildJob, BuildOutcome, RayBuild
from compiler_kit.errors import EXIT_GATE_FAILED, EXIT_OK, BadInputError
from compiler_kit.gates import drift_comparison
from compiler_kit.progress import NO_TASK, Task
from compiler_kit.recipe import set_dotted

TUNE_JSON, TUNE_MD, TUNE_HTML = "tune.json", "tune.md", "tune.html"
T = TypeVar("T")


@dataclass(frozen=True)
class Trial:
    name: str
    settings: dict[str, Any]  # dotted recipe keys -> values


AS_WRITTEN = Trial("recipe as written", {})
# Round one: how activation ranges are chosen. Round two refines the two best of round one with the remedies that edit
# the int8 model and with more samples, alone and (the two int8 remedies) together: they add up where one range
# method alone does not (README: the corpus tune).
RANGES = [
    AS_WRITTEN,
    Trial("percentile 99.99", {"calibration.method": "percentile", "calibration.percentile": 99.99}),
    Trial("percentile 99.999", {"calibration.method": "percentile", "calibration.percentile": 99.999}),
    Trial("mse", {"calibration.method": "mse"}),
]
GPTQ = {"calibration.weight_rounding": "gptq"}
EMPIRICAL = {"calibration.bias_correction": "empirical"}
REFINEMENTS = [
    Trial("GPTQ weight rounding", GPTQ),
    Trial("empirical bias correction", EMPIRICAL),
    Trial("GPTQ weight rounding + empirical bias correction", {**GPTQ, **EMPIRICAL}),
    Trial("1000 calibration samples", {"calibration.num_samples": 1000}),
]
# The graph remedies rewrite the ONNX graph: for ONNX and torch sources only (a Keras model has none). Equalization
# moves weight ranges, and with them the int8 weights' rounding error, which bias correction then cancels.
EQUALIZE = Trial("cross-layer equalization", {"legalize.equalize": True})
BIAS_CORRECTION = Trial("bias correction", {"legalize.bias_correction": True})
EQUALIZE_AND_CORRECT = Trial(
    "cross-layer equalization + bias correction", {"legalize.equalize": True, "legalize.bias_correction": True}
)
GRAPH_REMEDIES = [EQUALIZE, BIAS_CORRECTION, EQUALIZE_AND_CORRECT]


@dataclass(frozen=True)
class Space:
    """Trials in rounds. The first trial of the first round is the recipe as written (it converts the model, the
    others reuse it); each later round refines the `beam` best trials so far: its trials' settings are set on top
    of each of theirs (a beam search)."""

    rounds: list[list[Trial]]
    beam: int = 2

    @property
    def size(self) -> int:
        """At most this many trials (a refinement that repeats an earlier trial's settings is not built again)."""
        first, *later = self.rounds
        return len(first) + self.beam * sum(len(trials) for trials in later)


def default_space(framework: str) -> Space:
    first = [*RANGES, *GRAPH_REMEDIES] if framework in ("onnx", "torch") else RANGES
    return Space([first, REFINEMENTS])


def refined(base: TrialResult | None, trial: Trial) -> Trial:
    """`trial` set on top of one of the best trials so far (its name says so, unless that is the recipe as
    written)."""
    if base is None or not base.settings:
        return trial
    return Trial(f"{base.name} + {trial.name}", {**base.settings, **trial.settings})


def load_space(path: Path) -> Space:
    """A space file: a list of {name, set: {key: value}}, a grid {key: [values]}, or {rounds: [...]}, each round
    such a list or grid, each round after the first refining the two best so far; the recipe as written is always the
    first trial, so the result is never worse than it."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BadInputError(f"cannot read the search space: {exc}", path=path, fix=_SPACE_FIX) from None
    rounds = data["rounds"] if isinstance(data, dict) and set(data) == {"rounds"} else [data]
    if not isinstance(rounds, list) or not rounds:
        raise BadInputError("not a search space", path=path, fix=_SPACE_FIX)
    trials = [_trials(path, round_) for round_ in rounds]
    return Space([[AS_WRITTEN, *trials[0]], *trials[1:]])


def _trials(path: Path, data: Any) -> list[Trial]:
    if isinstance(data, dict) and data and all(isinstance(v, list) and v for v in data.values()):
        keys = list(data)
        grid = [dict(zip(keys, values, strict=True)) for values in itertools.product(*data.values())]
        return [Trial(", ".join(f"{k}={v}" for k, v in t.items()), t) for t in grid]
    if isinstance(data, list) and data and all(_is_trial(item) for item in data):
        return [Trial(str(item["name"]), dict(item["set"])) for item in data]
    raise BadInputError("not a search space", path=path, fix=_SPACE_FIX)


_SPACE_FIX = (
    "write a grid (calibration.method: [min-max, mse]) or a list of trials (- name: mse\\n  set: "
    "{calibration.method: mse}), or {rounds: [such lists or grids]}; keys are recipe fields as `ckit build --set` "
    "takes them"
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
    int8_sha256: str | None = None  # the int8 model built: two trials can build the same one


def run_trials(
    recipe: Path, space: Space, out: Path, batch: BatchBuild | RayBuild, landed: Task = NO_TASK
) -> list[TrialResult]:
    """The first trial alone (it converts the model), then the rest of its round at once, as `batch` runs them (they
    reuse it), then each later round on top of each of the `space.beam` best so far; `landed` advances as each
    trial ends."""
    first, *rest = space.rounds[0]
    results = _run_round(recipe, [first], out, batch, landed, [])
    results = _run_round(recipe, rest, out, batch, landed, results)
    for refinements in space.rounds[1:]:
        results = _run_round(recipe, next_round(results, refinements, space.beam), out, batch, landed, results)
    return results


def next_round(done: list[TrialResult], refinements: list[Trial], beam: int) -> list[Trial]:
    """`refinements` on top of each of the `beam` best trials in `done` that built different int8 models (equalization
    can leave a model as it was: refining both would spend the beam on one model), best first, never repeating
    settings already tried (a refinement on the recipe as written is the refinement alone; one can also set only
    what its base sets)."""
    # trials that built one int8 model are one base; a result without the model's hash stands alone
    bases: list[TrialResult | None] = [*_first_of_each(ranked(done), lambda r: r.int8_sha256 or id(r))[:beam]]
    trials = [refined(base, refinement) for base in bases or [None] for refinement in refinements]
    return _first_of_each(trials, lambda trial: trial.settings, seen=[result.settings for result in done])


def _first_of_each(items: list[T], key: Callable[[T], Any], seen: list[Any] | None = None) -> list[T]:
    """The items whose key neither an earlier item nor `seen` has (keys may be unhashable: settings are dicts)."""
    keys = list(seen or [])
    kept = []
    for item in items:
        if key(item) not in keys:
            keys.append(key(item))
            kept.append(item)
    return kept


def _run_round(
    recipe: Path, trials: list[Trial], out: Path, batch: BatchBuild | RayBuild, landed: Task, done: list[TrialResult]
) -> list[TrialResult]:
    """`done` and the results of `trials`, each built into the next numbered folder."""
    folders = [out / "trials" / f"{k:02d}" for k in range(len(done), len(done) + len(trials))]
    build_jobs = [
        BuildJob(recipe, (*_sets(trial.settings), "--out", str(folder.resolve())), trial.name)
        for trial, folder in zip(trials, folders, strict=True)
    ]
    outcomes = batch.run(build_jobs, landed) if build_jobs else []
    return done + [_result(t, f, o) for t, f, o in zip(trials, folders, outcomes, strict=True)]


def _sets(settings: dict[str, Any]) -> list[str]:
    return [part for key, value in settings.items() for part in ("--set", f"{key}={json.dumps(value)}")]


def _result(trial: Trial, folder: Path, outcome: BuildOutcome) -> TrialResult:
    report_path = folder / "report.json"
    built = outcome.exit_code in (EXIT_OK, EXIT_GATE_FAILED) and report_path.is_file()
    report = json.loads(report_path.read_text()) if built else None
    metric, score, snr = _score(report) if report else (None, None, None)
    return TrialResult(
        trial.name, trial.settings, str(folder), outcome.exit_code, outcome.exit_code == EXIT_OK, metric, score,
        snr, round(outcome.seconds, 1), report["artifacts"]["int8_tflite"]["sha256"] if report else None,
    )  # fmt: skip


def _score(report: dict[str, Any]) -> tuple[str, float | None, float | None]:
    drift = drift_comparison(report["comparisons"])["metrics"]
    if drift.get("accuracy_candidate") is not None:
        return "accuracy", drift["accuracy_candidate"], drift["snr_db"]
    return "snr_db", drift["snr_db"], drift["snr_db"]


def ranked(results: list[TrialResult]) -> list[TrialResult]:
    """The trials that built, best first: passing the gates first, then the best score, then the best SNR (accuracy
    ties often: it moves in whole samples); the earlier trial on a tie."""
    built = [r for r in results if r.score is not None]
    return sorted(built, key=lambda r: (r.passed, r.score, r.snr_db or 0.0, -results.index(r)), reverse=True)


def best(results: list[TrialResult]) -> TrialResult | None:
    """The first of `ranked`; None when no trial built."""
    leaders = ranked(results)
    return leaders[0] if leaders else None


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
