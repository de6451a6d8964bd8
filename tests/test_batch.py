"""Several builds: the exit code is the most serious of theirs; on a Ray cluster, the same builds as tasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.ray_cluster import LocalCluster, new_cluster, process_table
from compiler_kit.batch import worst_exit
from compiler_kit.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from tests.conftest import WriteRecipe


@pytest.mark.parametrize(
    "codes, expected",
    [
        ([0, 0], 0),
        ([0, 3], 3),
        ([3, 4], 4),
        ([4, 2, 3], 2),
        ([2, 1], 1),
        ([0, -9], 1),  # killed by a signal: no verdict, as bad as a crash
        ([1, 130], 130),
        ([], 0),
    ],
)
def test_worst_exit(codes: list[int], expected: int) -> None:
    assert worst_exit(codes) == expected


# --- builds as tasks on a real Ray cluster, started on loopback by the fixture (never mocked) ---


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalCluster]:
    """`ray start --head` on a free loopback port with two CPUs; afterwards its own processes are killed (not every
    Ray process on the machine, as `ray stop --force` would)."""
    cluster = new_cluster()
    command = cluster.start_command(Path(sys.executable).with_name("ray"))
    try:
        started = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        yield cluster
    finally:
        cluster.stop()


def _ckit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "compiler_kit", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def test_an_unreachable_cluster_is_bad_input_at_once(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\n")
    for address, problem in (("127.0.0.1:9", "cannot reach the Ray cluster at 127.0.0.1:9"), ("x", "not host:port")):
        done = _ckit("build", str(recipe), "--ray", address)
        assert done.returncode == EXIT_BAD_INPUT and problem in done.stderr and "Traceback" not in done.stderr


def _numbers(report: dict[str, Any]) -> Any:
    """What a build measured on the model (timings and dates differ from run to run, so they are left out)."""
    return {
        "int8": report["artifacts"]["int8_tflite"]["sha256"],
        "comparisons": report["comparisons"],
        "budget": report["quantization_budget"],
        "layers": report["layers"],
    }


@pytest.mark.slow
def test_builds_on_ray_match_local_ones_and_a_bad_one_fails_alone(
    ray_cluster: LocalCluster, write_recipe: WriteRecipe, tmp_path: Path
) -> None:
    good = write_recipe(name="good.yaml")
    bad = write_recipe(lambda recipe: recipe["calibration"].update(num_samples=-1), name="bad.yaml")
    local = _ckit("build", str(good), "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "c1"), "-q")
    assert local.returncode == 0, local.stderr[-2000:]
    on_ray = _ckit(
        "build", str(good), str(bad), "--ray", ray_cluster.address, "--cache-dir", str(tmp_path / "c2"), "-q"
    )
    assert on_ray.returncode == EXIT_BAD_INPUT, on_ray.stderr[-2000:]  # the worst of the two
    assert "good: passed" in on_ray.stderr and "bad: bad input" in on_ray.stderr
    assert "[bad] error: invalid recipe" in on_ray.stderr  # a failed build's own lines come back
    reports = [json.loads((folder / "report.json").read_text()) for folder in (tmp_path / "local", tmp_path / "build")]
    assert _numbers(reports[0]) == _numbers(reports[1])


@pytest.mark.slow
def test_tune_runs_its_trials_on_ray_over_one_connection(
    ray_cluster: LocalCluster, write_recipe: WriteRecipe, tmp_path: Path
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("- name: mse\n  set: {calibration.method: mse}\n")
    drivers = len(_driver_logs(ray_cluster))
    out = str(tmp_path / "t")
    every_count = {**os.environ, "CKIT_PROGRESS_INTERVAL_S": "0"}
    done = _ckit(
        "tune", str(write_recipe()), "--space", str(space), "--ray", ray_cluster.address, "--out", out, env=every_count
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # the first trial and the other run over one connection: one job, whose workers the other reuses
    assert len(_driver_logs(ray_cluster)) == drivers + 1
    tune = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert [trial["name"] for trial in tune["trials"]] == ["recipe as written", "mse"]
    assert all(trial["passed"] and trial["snr_db"] > 20 for trial in tune["trials"])
    assert "mse: passed in" in done.stderr and "(ray)" in done.stderr
    counts = [line.split()[2] for line in done.stderr.splitlines() if line.startswith("  tune: trials: ")]
    assert counts == ["1/2", "2/2"]  # each trial counted as it lands


@pytest.mark.slow
def test_sigterm_ends_a_tune_on_ray_with_exit_130_and_cancels_its_builds(
    ray_cluster: LocalCluster, write_recipe: WriteRecipe, tmp_path: Path
) -> None:
    recipe = write_recipe()
    command = [sys.executable, "-m", "compiler_kit", "tune", str(recipe), "--ray", ray_cluster.address]
    with subprocess.Popen([*command, "--out", str(tmp_path / "t")], stderr=subprocess.PIPE, text=True) as tune:
        _wait_until(lambda: bool(_builds_of(recipe)))  # the first trial runs on the cluster
        tune.send_signal(signal.SIGTERM)
        _, stderr = tune.communicate(timeout=120)
    assert tune.returncode == EXIT_INTERRUPTED, stderr[-2000:]  # ckit's own handling: Ray's would exit 1
    assert "Traceback" not in stderr
    _wait_until(lambda: not _builds_of(recipe))  # cancelled, not left running


def _builds_of(recipe: Path) -> list[int]:
    return [pid for pid, (_, args) in process_table().items() if "build" in args and str(recipe.resolve()) in args]


def _wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _driver_logs(cluster: LocalCluster) -> list[Path]:
    """One log per connection (a Ray job) the cluster has had."""
    return list((cluster.temp / "session_latest" / "logs").glob("python-core-driver-*.log"))
