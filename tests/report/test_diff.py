"""`compiler_kit.report.diff`: the session's real report against a worse copy of itself, and what is refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from compiler_kit.errors import EXIT_BAD_INPUT, BadInputError
from compiler_kit.report import REPORT_JSON, SCHEMA_VERSION
from compiler_kit.report.diff import WORSE, baseline_values, diff_reports, load_report

INT8 = ("source", "tflite-int8")


def pair_metrics(report: dict[str, Any], pair: tuple[str, str] = INT8) -> dict[str, Any]:
    return next(c["metrics"] for c in report["comparisons"] if (c["reference"], c["candidate"]) == pair)


def worse_copy(report: dict[str, Any]) -> dict[str, Any]:
    """Lower int8 accuracy (by 5 points), a 50% slower int8 p50, two ops fewer on the Edge TPU."""
    worse = copy.deepcopy(report)
    metrics = pair_metrics(worse)
    metrics["accuracy_candidate"] -= 0.05
    metrics["accuracy_drop_pp"] += 5.0
    worse["latency"]["tflite-int8"]["p50_ms"] *= 1.5
    worse["edgetpu"]["ops_on_edgetpu"] -= 2
    worse["edgetpu"]["ops_on_cpu"] += 2
    return worse


@pytest.fixture(scope="module")
def report(built) -> dict[str, Any]:
    return load_report(built.build_dir / REPORT_JSON)


def by_key(diff) -> dict[str, Any]:
    return {change.key: change for change in diff.changes}


@pytest.mark.slow
def test_worse_copy_shows_the_numbers_and_marks_them(report):
    diff = diff_reports(report, worse_copy(report))
    changes = by_key(diff)
    accuracy = changes["comparisons.source->tflite-int8.accuracy_candidate"]
    assert accuracy.delta == pytest.approx(-0.05) and accuracy.worse
    assert changes["comparisons.source->tflite-int8.accuracy_drop_pp"].delta == pytest.approx(5.0)
    p50 = changes["latency.tflite-int8.p50_ms"]
    assert p50.old == report["latency"]["tflite-int8"]["p50_ms"]
    assert p50.percent == pytest.approx(50.0) and p50.worse
    ops = changes["edgetpu.ops_on_edgetpu"]
    assert (ops.old - ops.new, ops.worse) == (2, True)
    assert set(diff.as_dict()["worse"]) == {
        "comparisons.source->tflite-int8.accuracy_candidate",
        "comparisons.source->tflite-int8.accuracy_drop_pp",
        "latency.tflite-int8.p50_ms",
        "edgetpu.ops_on_edgetpu",
        "edgetpu.ops_on_cpu",
    }
    text = diff.markdown()
    assert "5 figure(s) got worse" in text
    row = next(line for line in text.splitlines() if line.startswith("| source -> tflite-int8 accuracy_candidate"))
    assert row.endswith(f"| {WORSE} -5.00 pp |")
    row = next(line for line in text.splitlines() if line.startswith("| tflite-int8 p50_ms"))
    assert f"{WORSE} +" in row and "(+50.0%)" in row
    assert f"| Edge TPU ops_on_edgetpu | {ops.old} | {ops.new} | {WORSE} -2 |" in text


@pytest.mark.slow
def test_better_is_not_marked_worse(report):
    diff = diff_reports(worse_copy(report), report)
    assert diff.worse == [] and "Nothing got worse." in diff.markdown()
    assert by_key(diff)["latency.tflite-int8.p50_ms"].percent < 0


@pytest.mark.slow
def test_identical_reports_show_no_change(report):
    diff = diff_reports(report, copy.deepcopy(report))
    assert diff.worse == [] and not any(change.changed for change in diff.changes)
    assert all(change.delta in (0, None) for change in diff.changes)
    text = diff.markdown()
    assert "No change." in text and WORSE not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert rows and all(row.endswith("| = |") for row in rows)
    data = diff.as_dict()
    assert set(data) == {"old", "new", "changes", "worse", "only_in_old", "only_in_new"}
    assert (data["worse"], data["only_in_old"], data["only_in_new"]) == ([], [], [])
    keys = {change["key"] for change in data["changes"]}
    assert {"passed", "latency.source.p99_ms", "edgetpu.off_chip_bytes", "artifacts.int8_tflite.bytes"} <= keys
    assert json.loads(json.dumps(data)) == data


@pytest.mark.slow
def test_failed_verdict_is_worse(report):
    failed = copy.deepcopy(report)
    failed["passed"] = False
    verdict = by_key(diff_reports(report, failed))["passed"]
    assert verdict.worse and verdict.row()[1:] == ["PASSED", "FAILED", f"{WORSE} FAILED now"]


@pytest.mark.slow
def test_only_common_runners_and_an_edgetpu_stage_that_is_off(report):
    new = copy.deepcopy(report)
    del new["latency"]["source"]
    new["comparisons"] = [c for c in new["comparisons"] if c["reference"] != "source"]
    new["edgetpu"] = {"mode": "off"}
    diff = diff_reports(report, new)
    keys = set(by_key(diff))
    assert "latency.source.p50_ms" not in keys and "latency.tflite-int8.p50_ms" in keys
    assert not any(key.startswith("comparisons.source->") for key in keys)
    assert diff.only_old == ["comparison source -> tflite-float", "comparison source -> tflite-int8", "runner source"]
    ops = by_key(diff)["edgetpu.ops_on_edgetpu"]
    assert ops.new is None and ops.delta is None and not ops.worse


@pytest.mark.slow
def test_baseline_values(report):
    values = baseline_values(report)
    assert values["accuracy"] == pair_metrics(report)["accuracy_candidate"]
    assert values["latency_p50_ms[tflite-int8]"] == report["latency"]["tflite-int8"]["p50_ms"]
    assert set(values) == {"accuracy"} | {f"latency_p50_ms[{runner}]" for runner in report["latency"]}
    unlabelled = copy.deepcopy(report)
    pair_metrics(unlabelled)["accuracy_candidate"] = None
    assert baseline_values(unlabelled)["accuracy"] is None


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(BadInputError) as info:
        call(*args, **kwargs)
    assert info.value.exit_code == EXIT_BAD_INPUT
    return str(info.value)


@pytest.mark.slow
def test_other_model_is_refused_unless_allowed(report):
    other = copy.deepcopy(report)
    other["name"] = "another_model"
    message = refused(diff_reports, report, other)
    assert "different models" in message and "another_model" in message and "--allow-other-model" in message
    assert "# ckit report diff `digits_keras` -> `another_model`" in (
        diff_reports(report, other, allow_other_model=True).markdown()
    )


@pytest.mark.slow
def test_no_comparable_runners(report):
    other = copy.deepcopy(report)
    other["latency"] = {"edgetpu": report["latency"]["tflite-int8"]}
    other["comparisons"] = []
    assert "no comparable runners" in refused(diff_reports, report, other)


@pytest.mark.slow
def test_load_report_refuses_what_is_not_a_report(report, tmp_path: Path):
    missing = tmp_path / "nope.json"
    assert refused(load_report, missing).startswith(f"{missing}: no such file")
    text = tmp_path / "report.md"
    text.write_text("# not json\n")
    assert refused(load_report, text).startswith(f"{text}: not JSON")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"passed": True}))
    assert refused(load_report, other).startswith(f"{other}: not a ckit report (no schema_version)")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**report, "schema_version": SCHEMA_VERSION + 1}))
    message = refused(load_report, old)
    assert message.startswith(f"{old}: report schema_version {SCHEMA_VERSION + 1}")
    assert "fix: rebuild it with this ckit" in message


@pytest.mark.slow
def test_each_output_task_metric_is_compared_by_name(report):
    worse = copy.deepcopy(report)
    drift = next(c for c in worse["comparisons"] if (c["reference"], c["candidate"]) == INT8)
    (name, entry), *_ = drift["outputs"].items()
    entry["metrics"]["top5_agreement"] -= 0.1
    changes = by_key(diff_reports(report, worse))
    top5 = changes[f"outputs.{name}.top5_agreement"]
    assert top5.delta == pytest.approx(-0.1) and top5.worse
    assert f"outputs.{name}.accuracy_reference" not in changes  # the reference's own accuracy is judged nowhere


@pytest.mark.slow
def test_a_schema_1_report_still_reads_as_a_baseline(report, tmp_path: Path):
    """Schema 2 only added keys: a production report built before it is compared on what both have."""
    old = {key: value for key, value in report.items() if key not in ("tasks", "warnings")}
    old["comparisons"] = [{k: v for k, v in c.items() if k != "outputs"} for c in report["comparisons"]]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({**old, "schema_version": 1}))
    changes = by_key(diff_reports(load_report(path), report))
    assert "comparisons.source->tflite-int8.snr_db" in changes
    assert not [key for key in changes if key.startswith("outputs.")]


@pytest.mark.slow
def test_load_report_takes_a_build_folder(built, report):
    assert load_report(built.build_dir) == report == json.loads(json.dumps(built.report))


def test_a_json_nested_too_deep_is_bad_input(tmp_path: Path) -> None:
    deep = tmp_path / "report.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BadInputError, match="nested too deep"):
        load_report(deep)
