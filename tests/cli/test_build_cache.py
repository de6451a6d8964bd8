"""`ckit build` twice, changed, forced, damaged, killed and raced: the stage cache, atomic artifacts and the lock.

Each test starts from an empty cache of its own (conftest's `test_cache`); `warm_cache` holds one finished build
of the base recipe, copied in where a test needs a cache that already has it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from compiler_kit.artifacts import LOCK, sha256_file
from compiler_kit.cli import app
from compiler_kit.errors import EXIT_INTERRUPTED
from compiler_kit.quantize import check_full_integer
from compiler_kit.stages.quantize import FLOAT_TFLITE, INT8_TFLITE
from tests.conftest import WriteRecipe, build_recipe
from tests.test_cache import read_only

pytestmark = pytest.mark.slow  # every test builds the trained digits model

CACHED = ("convert", "quantize", "edgetpu", "verify", "latency")


def ckit(*args: str):
    return CliRunner().invoke(app, list(args))


def statuses(build_dir: Path) -> dict[str, str]:
    report = json.loads((build_dir / "report.json").read_text())
    return {stage: found["status"] for stage, found in report["cache"]["stages"].items()}


def temporary_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.name.endswith(".tmp") or p.parent.name == "tmp"]


@pytest.fixture(scope="module")
def warm_cache(base_recipe: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warm-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CKIT_CACHE_DIR", str(root))
        build_recipe(base_recipe, tmp_path_factory.mktemp("warm-build"))
    return root


def test_a_second_build_reuses_every_stage_and_says_so(write_recipe: WriteRecipe, tmp_path: Path) -> None:
    recipe = write_recipe()
    first = ckit("build", str(recipe))
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    artifacts = {name: sha256_file(tmp_path / "build" / name) for name in (FLOAT_TFLITE, INT8_TFLITE)}
    assert statuses(tmp_path / "build") == dict.fromkeys(CACHED, "miss")

    second = ckit("build", str(recipe))
    assert second.exit_code == 0, second.output
    for number, stage in enumerate(CACHED, start=2):
        assert f"[{number}/7] {stage} reused from the cache" in second.output
    assert statuses(tmp_path / "build") == dict.fromkeys(CACHED, "hit")
    again = json.loads((tmp_path / "build" / "report.json").read_text())
    assert again["comparisons"] == report["comparisons"] and again["latency"] == report["latency"]
    assert {name: sha256_file(tmp_path / "build" / name) for name in artifacts} == artifacts


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(recipe: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        section = recipe
        for key in parents:
            section = section.setdefault(key, {})
        section[leaf] = value

    return edit


@pytest.mark.parametrize(
    "edit, rerun",
    [
        (_set("quantization.granularity", "per-tensor"), {"quantize", "edgetpu", "verify", "latency"}),
        # the verify stage's calibration curve quantizes again from the calibration samples: it must run again too
        (_set("calibration.num_samples", 100), {"quantize", "edgetpu", "verify", "latency"}),
        (_set("verify.num_samples", 100), {"verify", "latency"}),
        (_set("verify.latency.runs", 7), {"latency"}),
        (_set("gates.min_snr_db", 20.0), set()),  # gates judge the measurements; they measure nothing
        (_set("output.dir", "elsewhere"), set()),  # the cache is keyed by content, not by where things go
    ],
    ids=["quantization", "calibration-samples", "verify-samples", "latency-runs", "gates", "build-folder"],
)
def test_a_change_reruns_only_the_stages_downstream_of_it(
    warm_cache: Path, test_cache: Path, write_recipe: WriteRecipe, tmp_path: Path, edit, rerun: set[str]
) -> None:
    shutil.copytree(warm_cache, test_cache)
    result = ckit("build", str(write_recipe(edit)))
    assert result.exit_code == 0, result.output
    build_dir = tmp_path / "elsewhere" if (tmp_path / "elsewhere").exists() else tmp_path / "build"
    assert statuses(build_dir) == {stage: "miss" if stage in rerun else "hit" for stage in CACHED}


def test_force_runs_every_stage_again(warm_cache: Path, test_cache: Path, write_recipe: WriteRecipe, tmp_path: Path):
    shutil.copytree(warm_cache, test_cache)
    result = ckit("build", str(write_recipe()), "--force")
    assert result.exit_code == 0, result.output
    assert statuses(tmp_path / "build") == dict.fromkeys(CACHED, "forced")
    assert ckit("build", str(write_recipe())).exit_code == 0
    assert statuses(tmp_path / "build") == dict.fromkeys(CACHED, "hit")  # what --force stored is good


def test_a_corrupted_entry_is_detected_and_built_again_never_used(
    warm_cache: Path, test_cache: Path, write_recipe: WriteRecipe, tmp_path: Path
) -> None:
    shutil.copytree(warm_cache, test_cache)
    [entry] = (test_cache / "quantize").iterdir()
    good = sha256_file(entry / "files" / INT8_TFLITE)
    damaged = bytearray((entry / "files" / INT8_TFLITE).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (entry / "files" / INT8_TFLITE).write_bytes(bytes(damaged))

    result = ckit("build", str(write_recipe()), "--quiet")
    assert result.exit_code == 0, result.output
    # A warning, not progress: on stderr though --quiet silences progress, and in the report.
    assert result.stderr == (
        f"warning: the cached quantize entry {entry} is corrupt ({INT8_TFLITE}: hash mismatch): building it again\n"
    )
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert report["cache"]["stages"]["quantize"]["problem"] == f"{INT8_TFLITE}: hash mismatch"
    assert statuses(tmp_path / "build")["quantize"] == "corrupt"
    assert sha256_file(tmp_path / "build" / INT8_TFLITE) == good  # TFLite conversion is deterministic
    assert sha256_file(entry / "files" / INT8_TFLITE) == good


def test_a_real_ckit_process_says_on_stderr_that_an_entry_is_corrupt(
    warm_cache: Path, test_cache: Path, write_recipe: WriteRecipe
) -> None:
    """The warning is met during the stage, whose file descriptor 2 goes to build.log: CliRunner (above) captures
    sys.stderr and never saw that it reached only the log. A real `ckit build` process must print it."""
    shutil.copytree(warm_cache, test_cache)
    [entry] = (test_cache / "quantize").iterdir()
    (entry / "files" / INT8_TFLITE).write_bytes(b"damaged")
    command = [sys.executable, "-m", "compiler_kit", "build", str(write_recipe()), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == (
        f"warning: the cached quantize entry {entry} is corrupt ({INT8_TFLITE}: hash mismatch): building it again\n"
    )


def _edit(stage: str, change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """Damage the cached `stage` entry: `change` edits the metadata of its entry.json, parsed, in place."""

    def damage(cache: Path) -> None:
        [entry_json] = (cache / stage).glob("*/entry.json")
        document = json.loads(entry_json.read_text())
        change(document["meta"])
        entry_json.write_text(json.dumps(document, indent=1))

    return damage


def _as_list(stage: str) -> Callable[[Path], None]:
    def damage(cache: Path) -> None:
        [entry_json] = (cache / stage).glob("*/entry.json")
        document = json.loads(entry_json.read_text())
        entry_json.write_text(json.dumps({**document, "meta": list(document["meta"].values())}))

    return damage


def _truncate(stage: str) -> Callable[[Path], None]:
    def damage(cache: Path) -> None:
        [entry_json] = (cache / stage).glob("*/entry.json")
        entry_json.write_text(entry_json.read_text()[:300])

    return damage


EDITED = "(metadata: hash mismatch)"


def _rename_key(section: dict[str, Any]) -> None:
    section["on_tpu"] = section.pop("ops_on_edgetpu")


@pytest.mark.parametrize(
    "stage, damage, problem",
    [
        ("latency", _edit("latency", lambda meta: meta["runners"]["tflite-int8"].update(p50_ms=12345.0)), EDITED),
        ("edgetpu", _edit("edgetpu", lambda meta: meta["section"].update(ops_on_edgetpu=0)), EDITED),
        ("edgetpu", _edit("edgetpu", lambda meta: meta["section"]["ops"][0].update(operator="RELU")), EDITED),
        ("edgetpu", _edit("edgetpu", lambda meta: _rename_key(meta["section"])), EDITED),
        ("edgetpu", _truncate("edgetpu"), "entry.json unreadable"),
        ("edgetpu", _as_list("edgetpu"), "entry.json does not describe an entry"),
    ],
    ids=["latency-p50", "ops-on-edgetpu", "op-name", "renamed-key", "truncated-json", "meta-a-list"],
)
def test_damaged_metadata_is_corrupt_and_measured_again_never_reported(
    warm_cache: Path, test_cache: Path, write_recipe: WriteRecipe, tmp_path: Path, stage: str, damage, problem: str
) -> None:
    shutil.copytree(warm_cache, test_cache)
    [original] = (warm_cache / "edgetpu").glob("*/entry.json")
    found = json.loads(original.read_text())["meta"]["section"]  # what the warm build's analysis really found
    damage(test_cache)

    result = ckit("build", str(write_recipe()), "--quiet")
    assert result.exit_code == 0, result.output
    [warning] = result.stderr.splitlines()  # --quiet: the warning and nothing else
    assert warning.startswith(f"warning: the cached {stage} entry {test_cache / stage}/") and problem in warning
    assert statuses(tmp_path / "build") == {name: "corrupt" if name == stage else "hit" for name in CACHED}
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert report["latency"]["tflite-int8"]["p50_ms"] != 12345.0  # measured again, not the edited figure
    assert report["edgetpu"]["ops_on_edgetpu"] == found["ops_on_edgetpu"] == 7
    assert report["edgetpu"]["ops"] == found["ops"]
    assert ckit("build", str(write_recipe())).exit_code == 0  # and the entry stored in its place is good
    assert statuses(tmp_path / "build") == dict.fromkeys(CACHED, "hit")


def _no_leftovers(build_dir: Path) -> bool:
    return [p.name for p in build_dir.iterdir() if p.name.startswith(".")] == [LOCK]


def test_a_file_where_the_cache_should_be_builds_uncached_with_one_warning(
    write_recipe: WriteRecipe, test_cache: Path, tmp_path: Path
) -> None:
    test_cache.write_text("not a folder")
    result = ckit("build", str(write_recipe()), "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"warning: the stage cache {test_cache} cannot be written ({test_cache} is a file): building every stage "
        "without it; fix: make it a folder you can write, or set --cache-dir or CKIT_CACHE_DIR to one\n"
    )
    assert statuses(tmp_path / "build") == dict.fromkeys(CACHED, "miss")
    assert json.loads((tmp_path / "build" / "report.json").read_text())["passed"]
    assert test_cache.read_text() == "not a folder" and _no_leftovers(tmp_path / "build")


def test_a_file_in_place_of_a_stage_folder_builds_that_stage_uncached_with_one_warning(
    warm_cache: Path, test_cache: Path, write_recipe: WriteRecipe, tmp_path: Path
) -> None:
    shutil.copytree(warm_cache, test_cache)
    shutil.rmtree(test_cache / "latency")
    (test_cache / "latency").write_text("in the way")
    result = ckit("build", str(write_recipe()), "--quiet")
    assert result.exit_code == 0, result.output
    [warning] = result.stderr.splitlines()
    assert f"({test_cache / 'latency'} is a file): reusing its entries but storing no new ones" in warning
    assert statuses(tmp_path / "build") == {**dict.fromkeys(CACHED, "hit"), "latency": "miss"}
    assert json.loads((tmp_path / "build" / "report.json").read_text())["latency"]["tflite-int8"]["runs"] == 20
    assert temporary_files(tmp_path / "build", test_cache) == [] and _no_leftovers(tmp_path / "build")


def test_a_read_only_warm_cache_is_reused_but_never_written_or_touched(
    warm_cache: Path, test_cache: Path, write_recipe: WriteRecipe, tmp_path: Path
) -> None:
    """A CI cache restored read only: its entries make the build fast; what it lacks is built, not stored."""
    shutil.copytree(warm_cache, test_cache)
    before = {path: path.stat().st_mtime_ns for path in test_cache.rglob("*")}
    recipe = write_recipe(_set("verify.latency.runs", 7))
    command = [sys.executable, "-m", "compiler_kit", "build", str(recipe), "--quiet"]
    done = subprocess.run(read_only([test_cache], command), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [warning] = done.stderr.splitlines()
    assert warning.startswith(f"warning: the stage cache {test_cache} cannot be written ({test_cache / 'tmp'}: ")
    assert "Read-only file system): reusing its entries but storing no new ones" in warning
    assert statuses(tmp_path / "build") == {**dict.fromkeys(CACHED, "hit"), "latency": "miss"}
    assert json.loads((tmp_path / "build" / "report.json").read_text())["latency"]["tflite-int8"]["runs"] == 7
    assert {path: path.stat().st_mtime_ns for path in test_cache.rglob("*")} == before
    assert _no_leftovers(tmp_path / "build")

    prune = [sys.executable, "-m", "compiler_kit", "cache", "prune", "--older-than-days", "0"]
    pruned = subprocess.run(read_only([test_cache], prune), capture_output=True, text=True, timeout=120)
    assert pruned.returncode == 2 and "Traceback" not in pruned.stderr
    assert f"error: {test_cache}: cannot remove cache entries: Read-only file system" in pruned.stderr


def _start(recipe: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "compiler_kit", "build", str(recipe), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(process: subprocess.Popen[str], line_start: str) -> list[str]:
    """Progress lines up to the first that starts with `line_start` (the build is then inside that stage)."""
    seen = []
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if line.startswith(line_start):
            return seen
    raise AssertionError(f"the build ended before '{line_start}':\n{''.join(seen)}")


@pytest.mark.parametrize("stage", ["[3/7] quantize", "[5/7] verify"])
def test_a_build_killed_mid_stage_leaves_complete_artifacts_and_the_next_continues(
    write_recipe: WriteRecipe, test_cache: Path, tmp_path: Path, stage: str
) -> None:
    recipe, build_dir = write_recipe(), tmp_path / "build"
    process = _start(recipe)
    _wait_for(process, stage)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (build_dir / "report.json").exists()  # no verdict for a build that did not finish
    for name in (FLOAT_TFLITE, INT8_TFLITE):  # each artifact is either absent or a whole, loadable model
        if (build_dir / name).exists():
            assert name == FLOAT_TFLITE or check_full_integer((build_dir / name).read_bytes()) is None
            assert any(sha256_file(build_dir / name) == sha256_file(f) for f in test_cache.rglob(name))

    result = ckit("build", str(recipe))
    assert result.exit_code == 0, result.output
    assert "[2/7] convert reused from the cache" in result.output  # finished before the kill: not done again
    assert statuses(build_dir)["convert"] == "hit"
    assert temporary_files(build_dir, test_cache) == []  # what the killed build left is gone


def test_sigterm_stops_a_build_cleanly_with_exit_130(write_recipe: WriteRecipe, test_cache: Path, tmp_path: Path):
    process = _start(write_recipe())
    _wait_for(process, "[3/7] quantize")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED
    assert "error: interrupted" in stderr and "Traceback" not in stderr
    assert temporary_files(tmp_path / "build", test_cache) == []
    assert not (tmp_path / "build" / "report.json").exists()


def test_two_builds_of_one_recipe_at_once_take_turns_and_both_pass(write_recipe: WriteRecipe, tmp_path: Path):
    recipe = write_recipe()
    processes = [_start(recipe), _start(recipe)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0, 0], results
    waited = [stderr for _, stderr in results if "waiting for another build of" in stderr]
    assert len(waited) == 1, results  # the lock, not luck: one build waited for the other
    assert waited[0].count("reused from the cache") == len(CACHED)  # and then found every stage done
    assert json.loads((tmp_path / "build" / "report.json").read_text())["passed"]
    assert [p.name for p in (tmp_path / "build").iterdir() if p.name.startswith(".")] == [LOCK]


def test_many_recipes_build_in_parallel_and_the_worst_exit_code_wins(write_recipe: WriteRecipe, tmp_path: Path):
    passing = write_recipe(_set("output.dir", str(tmp_path / "a")), name="a.yaml")
    failing = write_recipe(_set("gates.min_snr_db", 1000.0), name="b.yaml")  # builds into tmp_path / "build"
    result = ckit("build", str(passing), str(failing), "-j", "2", "--quiet")
    assert result.exit_code == 3, result.output
    assert f"{passing}: passed" in result.output and f"{failing}: gate failed" in result.output
    assert json.loads((tmp_path / "a" / "report.json").read_text())["passed"]
    assert not json.loads((tmp_path / "build" / "report.json").read_text())["passed"]


def test_out_with_several_recipes_is_bad_input(write_recipe: WriteRecipe, tmp_path: Path) -> None:
    result = ckit("build", str(write_recipe()), str(write_recipe(name="b.yaml")), "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "--out names one build folder" in result.output


def test_quiet_parallel_builds_still_show_each_build_s_warnings(write_recipe: WriteRecipe, tmp_path: Path):
    clamped = write_recipe(_set("verify.num_samples", 1000), name="a.yaml")  # the eval split has 360 samples
    plain = write_recipe(_set("output.dir", str(tmp_path / "b")), name="b.yaml")
    result = ckit("build", str(clamped), str(plain), "-j", "2", "--quiet")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning: " in line]
    assert warnings == ["[a] warning: verify.num_samples is 1000 but the data has 360 samples: all 360 are used"]
