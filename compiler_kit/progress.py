"""Progress inside long work: counts, rate and time left, where the user can see them.

A `Reporter` is chosen once per command: on a terminal, rich progress bars redrawn four times a second (so a stage
that counts nothing still shows its clock moving); elsewhere (a CI log), a plain line at most every 10 s per stage,
with counts; with --quiet, nothing. Work reports through a `Task`: `reporter.task("calibration samples", 200)` as a
context manager, then `task.advance()` per item.

Bars and lines go to a duplicate of stderr taken when the reporter is made: during a stage, file descriptors 1 and
2 are pointed at build.log (TensorFlow and the converter print from C++), so native output lands there and never
breaks a bar.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Generic, Protocol, TypeVar

T = TypeVar("T")
# CI logs: at most one progress line per stage this often ($CKIT_PROGRESS_INTERVAL_S changes it: tests, chatty logs)
LINE_EVERY_S = 10.0
REFRESH_PER_S = 4  # terminal: bars redrawn this often (at least once a second, whatever the work counts)


class Task(Protocol):
    def advance(self, count: int = 1) -> None: ...


class Counting(Generic[T]):
    """`items` that advance `task` by one as each is consumed, every time they are iterated (a calibration set the
    converter reads once and a range method reads again counts twice)."""

    def __init__(self, items: Iterable[T], task: Task) -> None:
        self.items, self.task = items, task

    def __iter__(self) -> Iterator[T]:
        for item in self.items:
            yield item
            self.task.advance()


class Tally:
    """A task fed running totals ("7 of 23 done"), as tools report them: it advances by the difference, once."""

    def __init__(self, task: Task) -> None:
        self.task, self.done = task, 0

    def reach(self, done: int) -> None:
        if done > self.done:
            self.task.advance(done - self.done)
            self.done = done


class _NoTask:
    def advance(self, count: int = 1) -> None:
        pass


NO_TASK: Task = _NoTask()


class Reporter:
    """Quiet: every task is silent. The base of the two that show something."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """The stage now running: lines and bars are prefixed with it."""
        yield

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield NO_TASK

    def say(self, line: str) -> None:
        """A line the user must see whatever the progress shows (a batch's verdicts): stderr, even when quiet."""
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass

    @staticmethod
    def for_terminal(quiet: bool) -> Reporter:
        """Bars on a terminal, lines in a log, nothing when quiet: decided by what stderr is now."""
        if quiet:
            return Reporter()
        try:
            stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
        except (OSError, io.UnsupportedOperation):  # stderr is no file (captured by a test runner): write to it as is
            return LineReporter(sys.stderr, _interval(), owned=False)
        if stream.isatty():
            return BarReporter(stream)
        return LineReporter(stream, _interval())


QUIET = Reporter()


def _interval() -> float:
    return float(os.environ.get("CKIT_PROGRESS_INTERVAL_S", LINE_EVERY_S))


class _Counted:
    def __init__(self, description: str, total: int | None) -> None:
        self.description, self.total = description, total
        self.done, self.started = 0, time.monotonic()

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        counted = f"{self.done}/{self.total}" if self.total else str(self.done)
        left = f", {(self.total - self.done) / rate:.0f} s left" if self.total and rate > 0 else ""
        return f"{self.description}: {counted} ({rate:.1f}/s{left})"


class LineReporter(Reporter):
    """A plain line per stage at most every LINE_EVERY_S, for logs that keep every line."""

    def __init__(self, stream: IO[str], every_s: float = LINE_EVERY_S, owned: bool = True) -> None:
        self.stream, self.every_s, self.owned = stream, every_s, owned  # owned: a duplicate made for it
        self.prefix = ""
        self._last = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.prefix, self._last = f"  {name}: ", time.monotonic()
        yield

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield _LineTask(self, _Counted(description, total))

    def say(self, line: str) -> None:
        self.stream.write(f"{line}\n")
        self.stream.flush()

    def line(self, counted: _Counted) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.stream.write(f"{self.prefix}{counted.summary()}\n")

    def close(self) -> None:
        if self.owned:
            self.stream.close()


class _LineTask:
    def __init__(self, reporter: LineReporter, counted: _Counted) -> None:
        self.reporter, self.counted = reporter, counted

    def advance(self, count: int = 1) -> None:
        self.counted.done += count
        self.reporter.line(self.counted)


class BarReporter(Reporter):
    """rich progress bars: description, bar, count, rate, time left; redrawn by rich's own thread."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.stream = stream
        self.console = Console(file=stream, force_terminal=True)
        columns = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _rate_column(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        self.bars = _drawn_by_its_thread(Progress)(
            *columns, console=self.console, transient=True, refresh_per_second=REFRESH_PER_S
        )
        self.prefix = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """The stage's own bar (its clock) for as long as it runs: no stage is silent for more than a refresh."""
        self.prefix = f"{name}: "
        with self._shown(), self.task("running"):
            yield

    @contextmanager
    def _shown(self) -> Iterator[None]:
        self.bars.start()
        try:
            yield
        finally:
            self.bars.stop()

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        task_id = self.bars.add_task(f"{self.prefix}{description}", total=total)
        task = _BarTask(self.bars, task_id)
        try:
            yield task
        finally:
            task.flush()
            self.bars.remove_task(task_id)

    def say(self, line: str) -> None:
        """Printed above the bars (rich moves them down), never through them."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.stream.close()


class _BarTask:
    """Advances are handed to rich at most every FLUSH_S: its advance takes a lock and keeps a speed sample (about
    1.5 us), a tenth of a small model's inference, while the bar is drawn only REFRESH_PER_S times a second."""

    FLUSH_S = 0.05

    def __init__(self, bars: Any, task_id: Any) -> None:
        self.bars, self.task_id = bars, task_id
        self.pending, self.flushed = 0, time.monotonic()

    def advance(self, count: int = 1) -> None:
        self.pending += count
        now = time.monotonic()
        if now - self.flushed >= self.FLUSH_S:
            self.flush()
            self.flushed = now

    def flush(self) -> None:
        self.bars.advance(self.task_id, self.pending)
        self.pending = 0


def _drawn_by_its_thread(progress: type) -> Any:
    """rich's Progress whose bars are drawn only by its live display's thread, REFRESH_PER_S times a second: its
    add_task redraws at once, in the caller's thread, which took milliseconds, longer than a small model's whole
    pass over the verification samples."""

    class Bars(progress):
        def refresh(self) -> None:
            """Not here: the live display's thread draws, and draws once more when it stops."""

    return Bars


def _rate_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second (rich's own speed column counts bytes)."""

        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")

    return RateColumn()
