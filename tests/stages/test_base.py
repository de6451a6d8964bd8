"""The stage contract on a toy cached stage: produced once, reused through the same `load`, files installed, and
the stage log's numbering and timings. No model is converted here (the stages themselves: tests/test_pipeline.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compiler_kit.artifacts import BuildFolder
from compiler_kit.cache import Entry, StageCache
from compiler_kit.recipe import load_recipe
from compiler_kit.stages import STAGE_NAMES
from compiler_kit.stages.base import CachedStage, Job, StageLog
from tests.conftest import SHIPPED_RECIPE


class Doubling(CachedStage[int]):
    """Doubles the recipe's calibration sample count; writes the result to a file, counts its runs."""

    name = "convert"
    installed = ("twice.txt",)

    def __init__(self) -> None:
        self.produced = 0

    def key_inputs(self, job: Job) -> dict[str, Any]:
        return {"samples": job.recipe.calibration.num_samples}

    def produce(self, job: Job, files: Path) -> dict[str, Any]:
        self.produced += 1
        twice = 2 * job.recipe.calibration.num_samples
        (files / "twice.txt").write_text(str(twice))
        return {"twice": twice}

    def load(self, job: Job, entry: Entry) -> int:
        return int(entry.meta["twice"])


def _job(tmp_path: Path, lines: list[str], folder: str = "build") -> Job:
    recipe = load_recipe(SHIPPED_RECIPE)
    build = BuildFolder(tmp_path / folder)
    build.ensure_writable()
    log = StageLog(STAGE_NAMES, lines.append, build.path("build.log"))
    return Job(recipe, SHIPPED_RECIPE, build, StageCache(tmp_path / "cache"), log, None, None)


def _run(stage: Doubling, job: Job) -> int:
    with job.cache.for_build(scratch=job.folder.root), job.log(stage.name, "toy"):
        job.results[stage.name] = stage.run(job)
    return job[stage]


def test_a_cached_stage_is_produced_once_and_reused_through_the_same_load(tmp_path: Path) -> None:
    stage, lines = Doubling(), []
    first = _job(tmp_path, lines)
    assert _run(stage, first) == 400  # the shipped recipe calibrates on 200 samples
    again = _job(tmp_path, lines, folder="elsewhere")
    assert _run(stage, again) == 400
    assert stage.produced == 1
    assert (first.log.cache["convert"]["status"], again.log.cache["convert"]["status"]) == ("miss", "hit")
    assert first.keys == again.keys and len(first.keys["convert"]) == 64
    for job in (first, again):  # the installed file reaches each build folder
        assert (job.folder.root / "twice.txt").read_text() == "400"


def test_the_stage_log_numbers_stages_and_times_the_running_one(tmp_path: Path) -> None:
    lines: list[str] = []
    job = _job(tmp_path, lines)
    _run(Doubling(), job)
    assert lines[0] == "[2/7] convert: toy ..."
    assert lines[1].startswith("[2/7] convert done in ")
    with job.log("report", ""):
        running = job.log.so_far()
        assert set(running) == {"convert", "report"} and running["report"] >= 0
    assert lines[-1].startswith("[7/7] report done in ")


def test_job_results_are_read_by_stage(tmp_path: Path) -> None:
    job, stage = _job(tmp_path, []), Doubling()
    with pytest.raises(KeyError):
        job[stage]
    _run(stage, job)
    assert job[stage] == 400
