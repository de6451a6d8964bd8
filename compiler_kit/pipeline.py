"""`ckit build`: the stages (compiler_kit.stages) run in order on one build folder, under its lock.

Everything a build can refuse before any work (an unwritable folder, a `required` compiler that is absent, a bad
baseline) is refused first; then each stage runs, announced with its number and timed, and its result is kept on
the job for the stages after it. The report stage writes the report; its document is the build's result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler_kit.artifacts import BuildFolder
from compiler_kit.cache import StageCache, default_root
from compiler_kit.errors import BadInputError
from compiler_kit.frontends.onnx import ONNX2TF_LOG
from compiler_kit.progress import Reporter
from compiler_kit.recipe import Recipe
from compiler_kit.report import REPORT_HTML, REPORT_JSON, REPORT_MD
from compiler_kit.report.diff import baseline_values, load_report
from compiler_kit.stages import STAGE_NAMES, STAGES, Job, StageLog
from compiler_kit.stages.edgetpu import require_compiler
from compiler_kit.stages.report import REPORT

BUILD_LOG = "build.log"
Progress = Callable[[str], None]


@dataclass
class BuildResult:
    report: dict[str, Any]
    build_dir: Path

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    @property
    def failed_gates(self) -> list[dict[str, Any]]:
        return [gate for gate in self.report["gates"] if not gate["passed"]]


def build(
    recipe: Recipe,
    recipe_path: Path,
    out_dir: Path | None = None,
    progress: Progress = print,
    cache: StageCache | None = None,
    reporter: Reporter | None = None,
) -> BuildResult:
    folder = BuildFolder(out_dir or recipe.build_dir(recipe_path))
    folder.ensure_writable()
    compiler = require_compiler(recipe.edgetpu)  # `required` and absent: exit 4 before any work
    baseline = load_baseline(recipe)  # a bad baseline is bad input, found before any work too
    cache = cache or StageCache(default_root())
    with folder.locked(progress):
        folder.remove_leftovers((BUILD_LOG, REPORT_JSON, REPORT_MD, REPORT_HTML, ONNX2TF_LOG))
        with cache.for_build(scratch=folder.root):  # after remove_leftovers, which takes its scratch for a dead build's
            log = StageLog(STAGE_NAMES, progress, folder.path(BUILD_LOG), reporter)
            job = Job(recipe, recipe_path, folder, cache, log, compiler, baseline)
            for stage in STAGES:
                with log(stage.name, stage.plan(job)):
                    job.results[stage.name] = stage.run(job)
    return BuildResult(job[REPORT], folder.root)


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
