"""`ckit report diff OLD NEW`: Markdown by default, --json for scripts, exit 2 with one message for bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from compiler_kit.cli import app
from compiler_kit.report import REPORT_JSON, SCHEMA_VERSION
from compiler_kit.report.diff import WORSE

pytestmark = pytest.mark.slow  # every test reads the session's real build (conftest `built`)

runner = CliRunner()
INT8 = ("source", "tflite-int8")


@pytest.fixture(scope="module")
def report(built) -> dict[str, Any]:
    return json.loads((built.build_dir / REPORT_JSON).read_text(encoding="utf-8"))


def write(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report))
    return path


@pytest.fixture
def slower(report: dict[str, Any], tmp_path: Path) -> Path:
    """The session's report with a lower int8 accuracy, a 2x slower int8 p50 and one op fewer on the Edge TPU."""
    new = copy.deepcopy(report)
    metrics = next(c["metrics"] for c in new["comparisons"] if (c["reference"], c["candidate"]) == INT8)
    metrics["accuracy_candidate"] -= 0.025
    new["latency"]["tflite-int8"]["p50_ms"] *= 2
    new["edgetpu"]["ops_on_edgetpu"] -= 1
    return write(tmp_path / "new.json", new)


def test_markdown_marks_what_got_worse(built, slower):
    result = runner.invoke(app, ["report", "diff", str(built.build_dir / REPORT_JSON), str(slower)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("# ckit report diff `digits_keras`")
    assert "| what | old | new | change |" in lines
    assert "3 figure(s) got worse (▼)." in lines
    row = next(line for line in lines if line.startswith("| source -> tflite-int8 accuracy_candidate"))
    assert row.endswith(f"| {WORSE} -2.50 pp |")
    row = next(line for line in lines if line.startswith("| tflite-int8 p50_ms"))
    assert row.endswith("(+100.0%) |") and f"| {WORSE} +" in row
    assert any(line.startswith("| Edge TPU ops_on_edgetpu") and line.endswith(f"| {WORSE} -1 |") for line in lines)


def test_identical_reports_show_no_change(built):
    path = str(built.build_dir / REPORT_JSON)
    result = runner.invoke(app, ["report", "diff", path, path])
    assert result.exit_code == 0, result.output
    assert "No change." in result.output and WORSE not in result.output


def test_json_keys(built, slower):
    result = runner.invoke(app, ["report", "diff", str(built.build_dir), str(slower), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"old", "new", "changes", "worse", "only_in_old", "only_in_new"}
    assert set(data["old"]) == {"name", "created_utc"}
    assert set(data["changes"][0]) == {"key", "what", "old", "new", "change", "change_pct", "better", "worse"}
    assert data["worse"] == [
        "comparisons.source->tflite-int8.accuracy_candidate",
        "latency.tflite-int8.p50_ms",
        "edgetpu.ops_on_edgetpu",
    ]
    p50 = next(change for change in data["changes"] if change["key"] == "latency.tflite-int8.p50_ms")
    assert p50["change_pct"] == pytest.approx(100.0)


def bad(*args: str) -> str:
    result = runner.invoke(app, ["report", "diff", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") and result.output.count("error: ") == 1
    return result.output


def test_errors_exit_2_with_one_message(built, report, tmp_path: Path):
    good = str(built.build_dir / REPORT_JSON)
    newer = write(tmp_path / "newer.json", {**report, "schema_version": SCHEMA_VERSION + 1})
    output = bad(good, str(newer))
    assert f"{newer}: report schema_version {SCHEMA_VERSION + 1}" in output and "rebuild it with this ckit" in output
    not_json = tmp_path / "report.md"
    not_json.write_text("# ckit build\n")
    assert f"{not_json}: not JSON" in bad(str(not_json), good)
    not_report = write(tmp_path / "data.json", {"name": "digits_keras"})
    assert f"{not_report}: not a ckit report (no schema_version)" in bad(good, str(not_report))
    assert "nope.json: no such file" in bad(good, str(tmp_path / "nope.json"))


def test_other_model_needs_the_flag(built, report, tmp_path: Path):
    good = str(built.build_dir / REPORT_JSON)
    other = str(write(tmp_path / "other.json", {**report, "name": "resnet"}))
    assert "different models: old 'digits_keras', new 'resnet'" in bad(good, other)
    result = runner.invoke(app, ["report", "diff", good, other, "--allow-other-model"])
    assert result.exit_code == 0, result.output
    assert "`digits_keras` -> `resnet`" in result.output


def test_no_comparable_runners(built, report, tmp_path: Path):
    other = write(tmp_path / "other.json", {**report, "latency": {}, "comparisons": []})
    assert "no comparable runners" in bad(str(built.build_dir / REPORT_JSON), str(other))
