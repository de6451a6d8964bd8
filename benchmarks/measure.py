"""Whole-process measurements: wall time and peak RSS of one command, and what machine and versions ran them."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = ("compiler_kit", "tensorflow", "keras", "ai-edge-litert", "numpy", "onnxruntime", "torch")


@dataclass(frozen=True)
class ProcessRun:
    command: list[str]
    seconds: float  # wall time from spawn to exit: interpreter start and imports included
    peak_rss_mb: float  # the process's own peak (and that of any child it waited for)
    exit_code: int
    stdout: str
    stderr_tail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class CommandFailed(RuntimeError):
    pass


class Refused(Exception):
    """Bad input to a benchmark script (a missing model, a report without the measurement asked for): one sentence
    saying what and how to fix it; `refusing` turns it into exit code 2."""


@contextmanager
def refusing() -> Iterator[None]:
    """A script's main under it: a Refused ends the process with its sentence on stderr and exit code 2, no
    traceback."""
    try:
        yield
    except Refused as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def run_process(
    command: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,), cwd: Path = REPO
) -> ProcessRun:
    """Run `command` to completion; wait4 gives this one child's peak RSS (ru_maxrss, KiB on Linux)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen.wait
        out.seek(0)
        err.seek(0)
        run = ProcessRun(
            command=[str(part) for part in command],
            seconds=seconds,
            peak_rss_mb=usage.ru_maxrss / 1024,
            exit_code=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr_tail=err.read().decode(errors="replace")[-2000:],
        )
    if run.exit_code not in ok:
        raise CommandFailed(f"{' '.join(run.command)} exited with {run.exit_code}:\n{run.stderr_tail}")
    return run


def median(values: list[float]) -> float:
    return statistics.median(values)


def environment(**overrides: str) -> dict[str, str]:
    return {**os.environ, **overrides}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_state() -> dict[str, object]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "changed_files": git("status", "--porcelain").splitlines()}
