"""The stage contract, and the job every stage of one build reads from.

A stage is declared once, in its own module: its name, the plan its progress line shows, and `run`, which reads the
results of earlier stages from the job (`job[CONVERT]`) and returns its own typed result. A cached stage declares
instead what its cache key is made of (`key_inputs`), how it fills a new entry (`produce`: files into the entry's
folder, its result's metadata returned), which of the entry's files the build folder gets (`installed`), and how its
result is read back from an entry (`load`). A reused entry and a fresh one reach the build through the same `load`,
so what a build reports never depends on whether the cache had it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

from compiler_kit import lazy, stage_keys
from compiler_kit.artifacts import BuildFolder
from compiler_kit.cache import Entry, StageCache, stage_key
from compiler_kit.progress import Reporter
from compiler_kit.recipe import Recipe
from compiler_kit.runners import Runner

R = TypeVar("R")
Progress = Callable[[str], None]


class Stage(ABC, Generic[R]):
    """One step of the build; its position in `compiler_kit.stages.STAGES` is its number."""

    name: ClassVar[str]

    def plan(self, job: Job) -> str:
        """What the stage is about to do, for its progress line."""
        return ""

    @abstractmethod
    def run(self, job: Job) -> R: ...


class CachedStage(Stage[R]):
    """A stage whose work is kept in the stage cache under a key of everything it depends on."""

    installed: ClassVar[tuple[str, ...]] = ()  # files of its entry the build folder gets

    @abstractmethod
    def key_inputs(self, job: Job) -> dict[str, Any]:
        """Everything the stage's result depends on (compiler_kit.cache.stage_key hashes it)."""

    @abstractmethod
    def produce(self, job: Job, files: Path) -> dict[str, Any]:
        """Do the work: write the entry's files into `files`, return its metadata."""

    @abstractmethod
    def load(self, job: Job, entry: Entry) -> R:
        """The stage's result from its entry (whose `installed` files are already in the build folder)."""

    def run(self, job: Job) -> R:
        return self.load(job, job.cached(self))


class StageLog:
    """Announces each stage with its number and elapsed time, keeps the timings and the cache verdicts for the
    report, and sends what native code prints during a stage to the build log."""

    def __init__(
        self, names: tuple[str, ...], progress: Progress, log_path: Path, reporter: Reporter | None = None
    ) -> None:
        self.names = names
        self.progress = progress
        self.reporter = reporter or Reporter()  # progress inside a stage: bars, lines or nothing
        self.log_path = log_path
        self.seconds: dict[str, float] = {}
        self.cache: dict[str, dict[str, str]] = {}
        self._started: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, plan: str) -> Iterator[None]:
        number = f"[{self.names.index(name) + 1}/{len(self.names)}]"
        self.progress(f"{number} {name}{': ' + plan if plan else ''} ...")
        self._started[name] = time.perf_counter()
        # TF and the converter print from C++: that goes to the log, the reporter keeps its own copy of stderr
        with self.reporter.stage(name), lazy.native_output_to(self.log_path):
            yield
        self.seconds[name] = self.elapsed(name)
        how = "reused from the cache" if self.cache.get(name, {}).get("status") == "hit" else "done"
        self.progress(f"{number} {name} {how} in {self.seconds[name]:.1f} s")

    def elapsed(self, name: str) -> float:
        return round(time.perf_counter() - self._started[name], 3)

    def so_far(self) -> dict[str, float]:
        """Each finished stage's seconds, and the running one's until now (the report stage times itself so)."""
        running = {name: self.elapsed(name) for name in self._started if name not in self.seconds}
        return {**self.seconds, **running}


@dataclass
class Job:
    """One build: its settings, the stage results so far (by stage), and the runners its stages share."""

    recipe: Recipe
    recipe_path: Path
    folder: BuildFolder
    cache: StageCache
    log: StageLog
    compiler: Path | None  # edgetpu_compiler, when there is one to run
    baseline: dict[str, float | None] | None  # the baseline report's figures, when the recipe names one
    results: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # cached stage -> its key
    runners: list[Runner] = field(default_factory=list)  # the verify stage's chain, which latency times too
    _prepared: set[str] = field(default_factory=set)

    def __getitem__(self, stage: Stage[R]) -> R:
        return cast(R, self.results[stage.name])

    @cached_property
    def model_sha256(self) -> str:
        """Read once: the convert stage's key and the report both name the model by it."""
        return stage_keys.model_sha256(self.recipe.source)

    @property
    def reporter(self) -> Reporter:
        """Where a stage's counted work reports (the build's terminal, its log, or nothing)."""
        return self.log.reporter

    def cached(self, stage: CachedStage[Any]) -> Entry:
        """The stage's entry (reused or produced now); what it holds for the build folder is installed there."""
        name = stage.name
        key = self.keys[name] = stage_key(name, stage.key_inputs(self))
        found = self.cache.lookup(name, key)
        verdict = {"status": found.status, "key": key}
        if found.status == "corrupt":  # a warning, not progress: on stderr even with --quiet, and in the report
            where = self.cache.root / name / key
            self.cache.warn(f"the cached {name} entry {where} is corrupt ({found.problem}): building it again")
            verdict["problem"] = found.problem
        entry = found.entry or self.cache.produce(
            name, key, lambda files: stage.produce(self, files), replace=found.replace
        )
        for item in stage.installed:
            self.folder.install(entry.files / item, item)
        self.log.cache[name] = verdict
        return entry

    def prepare_runners(self) -> None:
        """Prepare each runner once, in whichever stage first runs it (none does after a reused verify stage)."""
        for runner in self.runners:
            if runner.name not in self._prepared:
                runner.prepare()
                self._prepared.add(runner.name)
