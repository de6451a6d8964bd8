"""Many builds at once (`ckit build A.yaml B.yaml -j N`, `ckit tune`): each its own `ckit build` process, N at a
time here, or each a task on a Ray cluster (`--ray ADDRESS`).

A process per build, not a thread: TensorFlow fixes its thread count at import, and a crash in native code
ends one build, not all. Builds of the same folder still take turns (the folder lock); builds of different
recipes share finished stages through the cache. Every line a local build prints is echoed with its name; a
Ray build's last lines are shown when it fails. Each build's verdict is said as it lands, and advances the
caller's progress task (a bar of builds on a terminal, a line of counts in a log).

On Ray, each build is a task of one CPU running the same command on whichever node Ray picks: every node must
see the recipes, models, data, build folders and stage cache at the same paths (one machine, or a shared file
system) and have ckit installed in the Python its workers run. Only the core `ray` package is used
(`ray[default]` pulls a protobuf that breaks TensorFlow).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler_kit.errors import (
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TOOL_MISSING,
    BadInputError,
    describe_exception,
)
from compiler_kit.progress import NO_TASK, Reporter, Task

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


def build_command(python: str, job: BuildJob, options: list[str]) -> list[str]:
    return [python, "-m", "compiler_kit", "build", str(job.recipe), *options, *job.options]


class BatchBuild:
    def __init__(self, options: list[str], jobs: int, reporter: Reporter, *, quiet: bool) -> None:
        self.options = options  # passed on to every `ckit build`
        self.jobs = jobs
        self.reporter = reporter  # says the builds' lines and verdicts
        self.quiet = quiet
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()

    def __enter__(self) -> BatchBuild:  # as RayBuild is used
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to release: each run waits for its processes."""

    def run(self, jobs: list[BuildJob], landed: Task = NO_TASK) -> list[BuildOutcome]:
        """Every job's outcome, in the jobs' order; `landed` advances as each build ends."""
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            return list(pool.map(lambda job: self._build(job, landed), jobs))
        finally:  # on Ctrl-C or SIGTERM too: no build outlives the batch
            with self._lock:
                for process in self._running:
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)

    def _build(self, job: BuildJob, landed: Task) -> BuildOutcome:
        command = build_command(sys.executable, job, self.options)
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
        with self._lock:  # a verdict, the failed build's tail and the count together
            say_outcome(self.reporter, outcome, show_tail=self.quiet)
            landed.advance()
        return outcome

    def _say(self, line: str) -> None:
        with self._lock:
            self.reporter.say(line)


class RayBuild:
    """The same builds as BatchBuild, each a Ray task on the cluster at `address` (see the module's notes).

    Used as a context manager, for every run of one command (tune runs its first trial, then the others): one
    connection, because Ray starts a job's worker processes when its driver connects, and each new connection
    would wait for new ones (about a second). Connecting begins on entry, in a thread, so that importing Ray,
    connecting and the workers' start-up overlap what the command does before its first build (tune loads the
    recipe); a failure to connect surfaces at the first run.

    `exit_disconnects`: the process ends soon after the block (a ckit command: main() leaves with os._exit), so a
    block that ends normally leaves the connection to the process's exit. The raylet then ends the job as it
    does on ray.shutdown, whose own teardown in this process (joining its RPC threads) costs a quarter of a
    second. A block ended by an exception (Ctrl-C, SIGTERM) still disconnects, so the cancellations are sent.
    """

    def __init__(self, address: str, options: list[str], reporter: Reporter, *, exit_disconnects: bool = False) -> None:
        self.address = address
        self.options = options
        self.reporter = reporter
        self.exit_disconnects = exit_disconnects
        self._connection: Future[Any] | None = None  # the `ray` module, once connected

    def __enter__(self) -> RayBuild:
        self.connect()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        if kind is not None or not self.exit_disconnects:
            self.close()

    def connect(self) -> None:
        """Begin connecting, in the background (once)."""
        if self._connection is None:
            connecting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-connect")
            self._connection = connecting.submit(self._connect)
            connecting.shutdown(wait=False)

    def close(self) -> None:
        """Disconnect (after the connecting thread is done: a connection half made is still closed)."""
        connection, self._connection = self._connection, None
        if connection is not None and connection.exception() is None:
            connection.result().shutdown()

    def run(self, jobs: list[BuildJob], landed: Task = NO_TASK) -> list[BuildOutcome]:
        """Every job's outcome, in the jobs' order; each said, and `landed` advanced, as its task ends."""
        self.connect()  # used without `with`: the caller closes
        assert self._connection is not None
        ray = self._connection.result()  # a BadInputError of the connecting thread is raised here
        task = ray.remote(num_cpus=1, max_retries=0)(run_build_task)
        # absolute paths: a worker's working directory is its own
        absolute = [BuildJob(job.recipe.resolve(), job.options, job.name) for job in jobs]
        refs = [task.remote(job, self.options) for job in absolute]
        waiting = dict(zip(refs, absolute, strict=True))
        outcomes: dict[Any, BuildOutcome] = {}
        try:
            while waiting:
                done, _ = ray.wait(list(waiting), num_returns=1)
                for ref in done:
                    outcomes[ref] = BuildOutcome(waiting.pop(ref), *ray.get(ref))
                    say_outcome(self.reporter, outcomes[ref], show_tail=True, where=" (ray)")
                    landed.advance()
            return [outcomes[ref] for ref in refs]
        except BaseException:  # Ctrl-C or SIGTERM: no build outlives the batch (finished tasks are not cancelled:
            _, running = ray.wait(refs, num_returns=len(refs), timeout=0)  # Ray's core crashed on that once)
            for ref in running:
                ray.cancel(ref, force=True)
            raise

    def _connect(self) -> Any:
        """Runs in the connecting thread. Off the main thread, ray.init also leaves ckit's SIGTERM handler in place
        (in the main thread it installs its own, and SIGTERM ended the command with exit code 1, not 130)."""
        _reachable(self.address)  # ray.init retries an unreachable address for minutes
        import ray

        logging.getLogger("ray._private.worker").addFilter(_not_the_main_thread_notice)
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BadInputError(
                f"cannot reach the Ray cluster at {self.address}: {describe_exception(exc)}",
                fix="start one (`ray start --head`) and pass the address it prints (host:port), or drop --ray",
            ) from None
        return ray


def say_outcome(reporter: Reporter, outcome: BuildOutcome, *, show_tail: bool, where: str = "") -> None:
    """A build's verdict; and the last lines of one that did not build, unless they were echoed as they came."""
    job = outcome.job
    reporter.say(f"{job.label or job.recipe}: {outcome.verdict} in {outcome.seconds:.1f} s{where}")
    if show_tail and outcome.exit_code not in (EXIT_OK, EXIT_GATE_FAILED):
        for line in outcome.tail:
            reporter.say(f"[{job.name}] {line}")


def _not_the_main_thread_notice(record: logging.LogRecord) -> bool:
    """ray.init's warning that it set no SIGTERM handler: wanted here (RayBuild._connect), so not shown."""
    return "SIGTERM handler is not set" not in record.getMessage()


RAY_CONNECT_TIMEOUT_S = 5.0


def _reachable(address: str) -> None:
    """The cluster's head answers at host:port, or a BadInputError at once."""
    host, _, port = address.rpartition(":")
    fix = "pass the host:port `ray start --head` prints (its --port), or drop --ray"
    if not host or not port.isdigit():
        raise BadInputError(f"--ray {address}: not host:port", fix=fix)
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise BadInputError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}", fix=fix) from None


def run_build_task(job: BuildJob, options: list[str]) -> tuple[int, float, list[str]]:
    """A Ray task: one build in the worker's own Python; its exit code, seconds and last lines."""
    start = time.perf_counter()
    done = subprocess.run(
        build_command(sys.executable, job, options), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return done.returncode, time.perf_counter() - start, done.stdout.splitlines()[-20:]
