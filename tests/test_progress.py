"""Progress inside stages: plain lines in logs (rate-limited per stage, with counts), rich bars on a terminal,
nothing when quiet; and a real build, and a batch of builds, under a pseudo-terminal and under pipes."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compiler_kit.progress import NO_TASK, BarReporter, Counting, LineReporter, Reporter
from tests.conftest import WriteRecipe


def test_lines_carry_the_stage_the_work_and_its_counts() -> None:
    stream = io.StringIO()
    reporter = LineReporter(stream, every_s=0)
    with reporter.stage("verify"), reporter.task("samples", 4) as task:
        for _ in range(4):
            task.advance()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("  verify: samples: 4/4 (")
    assert "/s" in lines[0] and "s left" in lines[0]


def test_lines_come_at_most_once_per_interval_per_stage() -> None:
    stream = io.StringIO()
    reporter = LineReporter(stream, every_s=0.2)
    with reporter.stage("latency"):
        for name in ("a runs", "b runs"):  # two tasks of one stage share its interval
            with reporter.task(name, 1000) as task:
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline:
                    task.advance()
                    time.sleep(0.001)
    lines = stream.getvalue().splitlines()
    assert 3 <= len(lines) <= 6, lines  # about 1.0 s of work at one line per 0.2 s, never one per advance


def test_counting_advances_on_every_pass() -> None:
    stream = io.StringIO()
    reporter = LineReporter(stream, every_s=0)
    with reporter.task("calibration samples", 6) as task:
        items = Counting([1, 2, 3], task)
        assert list(items) + list(items) == [1, 2, 3, 1, 2, 3]
    assert stream.getvalue().splitlines()[-1].startswith("calibration samples: 6/6")


def test_bars_take_advances_in_batches_and_lose_none() -> None:
    reporter = BarReporter(io.StringIO())
    with reporter.stage("verify"), reporter.task("samples", 5000) as task:
        for _ in range(5000):
            task.advance()
        (_, bar) = reporter.bars.tasks  # the stage's clock, then this task
        assert bar.completed + task.pending == 5000  # rich is not called on every advance: the last are held
    assert bar.completed == 5000  # and handed over when the task ends


def test_quiet_is_silent() -> None:
    reporter = Reporter.for_terminal(quiet=True)
    assert type(reporter) is Reporter
    with reporter.stage("convert"), reporter.task("x", 3) as task:
        assert task is NO_TASK


def _ckit_build(recipe: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "compiler_kit", "build", str(recipe), "--force", *extra]


def _read_pty(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the follower side closed: the build is over
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_build_on_a_terminal_shows_bars_and_in_a_log_plain_lines(write_recipe: WriteRecipe) -> None:
    recipe = write_recipe()
    env = {**os.environ, "CKIT_PROGRESS_INTERVAL_S": "0.2", "COLUMNS": "120"}
    code, terminal = _read_pty(_ckit_build(recipe), env)
    assert code == 0, terminal[-2000:]
    assert "━" in terminal and "samples through 3 runners" in terminal  # rich's bars, with the work's name
    assert "\x1b[" in terminal  # drawn in place with escape codes, not printed as lines
    logged = subprocess.run(_ckit_build(recipe), capture_output=True, text=True, env=env, check=False)
    assert logged.returncode == 0, logged.stderr[-2000:]
    lines = [line for line in logged.stderr.splitlines() if line.startswith("  verify: samples through 3 runners: ")]
    assert lines and "/360 (" in lines[-1] and "━" not in logged.stderr and "\x1b[" not in logged.stderr
    quiet = subprocess.run(_ckit_build(recipe, "--quiet"), capture_output=True, text=True, env=env, check=False)
    assert quiet.returncode == 0 and "samples through" not in quiet.stderr + quiet.stdout


def test_a_batch_counts_its_builds_as_they_land_in_a_bar_or_in_lines(tmp_path: Path) -> None:
    recipes = [tmp_path / f"r{k}.yaml" for k in range(3)]
    for recipe in recipes:
        recipe.write_text("name: x\n")  # invalid: each build ends at once, with exit 2
    command = [sys.executable, "-m", "compiler_kit", "build", *map(str, recipes), "-j", "2"]
    env = {**os.environ, "CKIT_PROGRESS_INTERVAL_S": "0", "COLUMNS": "120"}
    code, terminal = _read_pty(command, env)
    assert code == 2 and "batch: builds" in terminal and "━" in terminal, terminal[-2000:]
    assert all(f"{recipe}: bad input in" in terminal for recipe in recipes)
    logged = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    counts = [line for line in logged.stderr.splitlines() if line.startswith("  batch: builds: ")]
    assert [line.split()[2] for line in counts] == ["1/3", "2/3", "3/3"], logged.stderr[-2000:]
    assert "━" not in logged.stderr and logged.stderr.count(": bad input in ") == 3
    quiet = subprocess.run([*command, "--quiet"], capture_output=True, text=True, env=env, check=False)
    assert "batch: builds" not in quiet.stderr and quiet.stderr.count(": bad input in ") == 3  # verdicts stay


def test_onnx2tf_node_lines_advance_the_task() -> None:
    from compiler_kit.frontends.onnx import _Onnx2tfLines

    stream = io.StringIO()
    reporter = LineReporter(stream, every_s=0)
    with reporter.task("onnx2tf nodes", 23) as task:
        lines = _Onnx2tfLines(task)
        for line in ("\x1b[32mINFO:\x1b[0m \x1b[32m2 / 23\x1b[0m\n", "onnx_op_type: Conv\n", "INFO: 7 / 23\n"):
            lines.read(line)
    assert stream.getvalue().splitlines()[-1].startswith("onnx2tf nodes: 7/23")
    assert len(lines.lines) == 3  # every line kept for onnx2tf.log
