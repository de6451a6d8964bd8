"""benchmarks/trials.py and its verdicts (benchmarks/trial_checks.py): the pure parts, no build is run here."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import trial_checks as checks
from benchmarks.trial_inputs import hostile_cases
from benchmarks.trials import FAMILIES, Context, FamilyResult, Outcome, in_namespace, pick, table, targets

TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: boom\n'
RECIPE = "/tmp/t/recipe.yaml"
BAD_RECIPE = (
    "error: invalid recipe\n"
    f"  {RECIPE}:17: calibration.num_samples: Input should be greater than 0\n"
    "  fix: correct the keys named above; `ckit schema` lists every key\n"
)


def test_a_traceback_is_found_in_any_stream_and_quoted_by_its_last_line() -> None:
    assert checks.has_traceback("", "progress\n" + TRACEBACK)
    assert not checks.has_traceback("error: x\n", "Traceback without its header")
    assert checks.traceback_problems("fine", TRACEBACK) == ["traceback: ValueError: boom"]
    assert checks.traceback_problems("fine") == []


def test_the_error_message_is_its_line_and_the_indented_lines_after_it() -> None:
    stderr = "[1/7] data ...\n" + BAD_RECIPE + "warning: later\n"
    assert checks.error_message(stderr) == BAD_RECIPE.rstrip("\n")
    assert checks.has_fix(checks.error_message(stderr))
    assert checks.error_message("no error here\n") == ""
    assert not checks.has_fix("error: x\n  fix:")  # a fix that says nothing is none


def test_a_good_bad_input_message_passes() -> None:
    assert checks.bad_input_problems(2, "", BAD_RECIPE, ["calibration.num_samples"]) == []
    assert checks.bad_input_problems(2, "", BAD_RECIPE, ["nope", RECIPE]) == []  # any one of the names


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "names", "problem"),
    [
        (0, "", "", ["x"], "exit 0 (expected 2)"),
        (1, "", TRACEBACK, ["x"], "traceback: ValueError: boom"),
        (None, "", "[2/7] convert ...\n", ["x"], "timed out; stderr ends: [2/7] convert ..."),
        (2, "", BAD_RECIPE + BAD_RECIPE, ["calibration"], "2 error: lines"),
        (2, "", BAD_RECIPE, ["verify.num_samples"], "message names none of ['verify.num_samples']"),
        (2, "", "error: /m.keras: not a model\n", ["/m.keras"], "no fix: line"),
        (2, TRACEBACK, BAD_RECIPE, ["calibration"], "traceback"),
    ],
    ids=["exit-0", "crash", "timeout", "two-errors", "names-the-wrong-field", "no-fix", "traceback-on-stdout"],
)
def test_each_way_a_bad_input_message_fails(code, stdout: str, stderr: str, names: list[str], problem: str) -> None:
    problems = checks.bad_input_problems(code, stdout, stderr, names)
    assert any(p.startswith(problem) for p in problems), problems


def test_leftovers_are_temporary_names_and_hidden_files_but_the_lock() -> None:
    listing = [
        ".ckit.lock",
        "report.json",
        "float_model/saved_model/saved_model.pb",
        ".model_int8.tflite.abc123.tmp",
        ".ckit-cache.x1y2.tmp/files/model.tflite",
        ".write-test-k3j4",
        "float_model/.float_model.old.9.tmp",
    ]
    assert checks.leftovers(listing) == [
        ".ckit-cache.x1y2.tmp/files/model.tflite",
        ".model_int8.tflite.abc123.tmp",
        ".write-test-k3j4",
        "float_model/.float_model.old.9.tmp",
    ]


def test_staging_and_onnx2tf_leftovers() -> None:
    cache = ["tmp", "tmp/4242-abcd", "tmp/4242-abcd/files", "tmp/4242-discard-x", "quantize/k/entry.json", "tmpx/1-a"]
    assert checks.staging_leftovers(cache) == ["tmp/4242-abcd", "tmp/4242-discard-x"]
    assert checks.work_dir_leftovers(["ckit-onnx2tf-77-abc", "__autograph_generated_file1.py"]) == [
        "ckit-onnx2tf-77-abc"
    ]


def test_listing_is_relative_and_empty_for_a_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c.txt").write_text("x")
    assert checks.listing(tmp_path) == ["a", "a/b", "a/b/c.txt"]
    assert checks.listing(tmp_path / "absent") == []


def test_reports_are_all_or_none() -> None:
    assert checks.reports_all_or_none(["model_int8.tflite"])
    assert checks.reports_all_or_none(["report.json", "report.md", "report.html", "build.log"])
    assert not checks.reports_all_or_none(["report.json", "report.md"])


def test_cache_and_corrupt_warnings() -> None:
    stderr = (
        "warning: the cached quantize entry /c/quantize/k is corrupt (model_int8.tflite: hash mismatch): building it\n"
        "warning: the stage cache /c cannot be written (/c is a file): building every stage without it\n"
        "warning: accuracy dropped\n"
    )
    assert len(checks.cache_warnings(stderr)) == 2
    assert len(checks.corrupt_warnings(stderr, "quantize")) == 1
    assert checks.corrupt_warnings(stderr, "verify") == []


FULL = Path("/t/small")
NO_SPACE = (
    f"error: {FULL}/build: No space left on device: writing the reports needs 58 KB there, 24 KB free; no half\n"
    "  fix: free some space there, or build into another folder (--out) or stage cache (--cache-dir)\n"
)


def test_a_full_disk_is_one_message_naming_a_folder_on_it_with_a_fix() -> None:
    assert checks.disk_full_problems(2, "", "[7/7] report ...\n" + NO_SPACE, FULL) == []
    assert checks.disk_full_problems(0, "report: ...", "", FULL) == []  # it fit
    elsewhere = NO_SPACE.replace(str(FULL), "/home/u/.cache/ckit")
    assert checks.disk_full_problems(2, "", elsewhere, FULL)[0].startswith("names /home/u/.cache/ckit/build")
    no_fix = NO_SPACE.splitlines()[0] + "\n"
    assert checks.disk_full_problems(2, "", no_fix, FULL) == ["no fix: line"]
    assert checks.disk_full_problems(2, "", "error: oops\n", FULL)[0].startswith("not a 'No space left on device'")
    assert checks.disk_full_problems(1, "", TRACEBACK, FULL)[-1] == "traceback: ValueError: boom"


def test_planted_values_are_found_in_any_report() -> None:
    texts = ['{"p50_ms": 12345.678}', "| op | TAMPERED_OP |"]
    assert checks.tampered_values(texts, ["12345.678", "TAMPERED_OP", "98765.4321"]) == ["12345.678", "TAMPERED_OP"]
    assert checks.tampered_values(["{}"], []) == []


def test_a_namespace_run_prints_its_listing_after_a_marker() -> None:
    from benchmarks.trials import LISTING

    head, paths = checks.parse_listing(f"summary\nreport: x\n{LISTING}\nbuild\nbuild/report.json\n", LISTING)
    assert head == "summary\nreport: x\n" and paths == ["build", "build/report.json"]
    command = in_namespace("mount -t tmpfs tmpfs /t", ["python", "-m", "compiler_kit"], listed=Path("/t"))
    assert command[:5] == ["unshare", "--user", "--map-root-user", "--mount", "sh"]
    assert LISTING in command[6] and command[-3:] == ["python", "-m", "compiler_kit"]


def test_the_hostile_catalogue_has_over_100_uniquely_named_cases() -> None:
    names = [case.name for case in hostile_cases(Path("model_int8.tflite"))]
    assert len(names) >= 100 and len(set(names)) == len(names)
    kinds = {name.split("-")[0] for name in names}
    assert {"recipe", "yaml", "model", "data", "baseline", "inspect"} <= kinds


def test_the_table_lists_every_failure_with_its_reason_and_targets_count_them() -> None:
    results = [
        FamilyResult("sigkill", [Outcome("a", [], 1.0), Outcome("b", ["left in TMPDIR: ckit-onnx2tf-1-x"], 1.0)], 2),
        FamilyResult("hostile-inputs", [Outcome("c", ["traceback: KeyError: 'x'"], 1.0)], 1),
    ]
    text = table(results)
    assert "sigkill" in text and "FAILED b: left in TMPDIR: ckit-onnx2tf-1-x" in text
    assert "FAILED c: traceback: KeyError: 'x'" in text
    found = targets(results)
    assert found["tracebacks"] == 1 and found["leaks_after_sigkill"] == 1
    assert found["bad_inputs_exit_2_with_message_pct"] == 0.0


def test_every_family_of_the_issue_is_there() -> None:
    assert list(FAMILIES) == [
        "sigkill",
        "concurrent",
        "damaged-cache",
        "unusable-cache",
        "disk-full",
        "hostile-inputs",
        "sigterm",
    ]


@pytest.mark.parametrize(
    ("quick", "count", "expected"), [(False, 5, [0, 1, 2, 3, 4]), (True, 2, [0, 4]), (True, 3, [0, 2, 4])]
)
def test_quick_picks_a_spread_with_the_first_and_the_last(quick: bool, count: int, expected: list[int]) -> None:
    ctx = Context(Path("/scratch"), seed=0, quick=quick, workers=1)
    assert pick(ctx, [0, 1, 2, 3, 4], count) == expected


def test_where_a_signal_landed_is_the_last_progress_line() -> None:
    assert checks.stage_reached("") == "in start-up"
    assert checks.stage_reached("[1/7] data done in 0.0 s\n[2/7] convert: keras -> float ...\n") == "in [2/7] convert"
    assert checks.stage_reached("[7/7] report ...\n[7/7] report done in 0.0 s\n") == "after [7/7] report"
    assert checks.stage_reached("[3/7] quantize reused from the cache in 0.0 s\nerror: x\n") == "after [3/7] quantize"
