"""Many recipes at once (`ckit build A.yaml B.yaml -j N`): each in its own `ckit build` process, N at a time.

A process per build, not a thread: TensorFlow fixes its thread count at import, and a crash in native code
ends one build, not all. Builds of the same folder still take turns (the folder lock); builds of different
recipes share finished stages through the cache. Every line a build prints is echoed with its recipe's name.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from compiler_kit.errors import (
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TOOL_MISSING,
)

# The batch exits with the most serious of its builds' codes, in this order.
SEVERITY = (EXIT_INTERRUPTED, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_TOOL_MISSING, EXIT_GATE_FAILED, EXIT_OK)
VERDICTS = {EXIT_OK: "passed", EXIT_GATE_FAILED: "gate failed", EXIT_BAD_INPUT: "bad input"}


def worst_exit(codes: list[int]) -> int:
    known = [code for code in SEVERITY if code in codes]
    unknown = [code for code in codes if code not in SEVERITY]  # a signal's negative code, say: a crash
    return EXIT_INTERNAL if unknown else (known[0] if known else EXIT_OK)


@dataclass(frozen=True)
class BuildJob:
    recipe: Path
    options: tuple[str, ...] = ()  # this build's own options, after the batch's
    label: str = ""  # what its echoed lines start with (default: the recipe's name)

    @property
    def name(self) -> str:
        return self.label or self.recipe.stem


@dataclass
class BuildOutcome:
    job: BuildJob
    exit_code: int
    seconds: float
    tail: list[str]  # the last lines it printed, shown when it failed

    @property
    def recipe(self) -> Path:
        return self.job.recipe

    @property
    def verdict(self) -> str:
        return VERDICTS.get(self.exit_code, f"exit {self.exit_code}")


class BatchBuild:
    def __init__(self, options: list[str], jobs: int, echo: Callable[[str], None], *, quiet: bool) -> None:
        self.options = options  # passed on to every `ckit build`
        self.jobs = jobs
        self.echo = echo
        self.quiet = quiet
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()

    def run(self, jobs: list[BuildJob]) -> list[BuildOutcome]:
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            return list(pool.map(self._build, jobs))
        finally:  # on Ctrl-C or SIGTERM too: no build outlives the batch
            with self._lock:
                for process in self._running:
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)

    def _build(self, job: BuildJob) -> BuildOutcome:
        recipe = job.recipe
        command = [sys.executable, "-m", "compiler_kit", "build", str(recipe), *self.options, *job.options]
        start = time.perf_counter()
        tail: list[str] = []
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            with self._lock:
                self._running.add(process)
            assert process.stdout is not None
            for line in process.stdout:
                tail = [*tail[-19:], line.rstrip()]
                if not self.quiet or line.startswith("warning: "):  # warnings are never silenced, as in one build
                    self._say(f"[{job.name}] {line.rstrip()}")
        with self._lock:
            self._running.discard(process)
        outcome = BuildOutcome(job, process.returncode, time.perf_counter() - start, tail)
        self._say(f"{job.label or recipe}: {outcome.verdict} in {outcome.seconds:.1f} s")
        if outcome.exit_code not in (EXIT_OK, EXIT_GATE_FAILED) and self.quiet:
            for line in tail:
                self._say(f"[{job.name}] {line}")
        return outcome

    def _say(self, line: str) -> None:
        with self._lock:
            self.echo(line)
