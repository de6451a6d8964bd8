"""`ckit compile-log`: a readable report or JSON from real compiler output; exit 2 for a file that is not one."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from compiler_kit.cli import app
from compiler_kit.edgetpu.log_parser import read_log
from tests.conftest import frameworks_imported_by

LOGS = Path(__file__).resolve().parent.parent / "edgetpu" / "logs"
runner = CliRunner()


def test_table_and_summary() -> None:
    result = runner.invoke(app, ["compile-log", str(LOGS / "yolov3_tiny_15.0_stdout.txt")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Edge TPU compiler 15.0.340273435: compiled, but not every op runs on the Edge TPU"
    header = next(line for line in lines if line.startswith("operator"))
    assert header.split() == ["operator", "count", "status", "mapped"]
    assert any(line.split()[:2] == ["LEAKY_RELU", "11"] and line.endswith("  no") for line in lines)
    assert any(line.startswith("CONV_2D") and "Mapped to Edge TPU" in line and line.endswith("yes") for line in lines)
    assert "Edge TPU subgraphs: 1  ops on Edge TPU: 2  on CPU: 34  total: 36" in lines
    assert "parameters: on-chip 3.00 KiB (remaining 7.67 MiB), off-chip 0 B (streamed on every inference)" in lines


def test_failure_with_advice() -> None:
    result = runner.invoke(app, ["compile-log", str(LOGS / "op_version_16.0.txt")])
    assert result.exit_code == 0, result.output
    assert "Edge TPU compiler 16.0.384591198: FAILED" in result.output
    assert "failure (op_version): ERROR: Didn't find op for builtin opcode 'TRANSPOSE_CONV'" in result.output
    assert "  advice: The converter that wrote this model is newer" in result.output


def test_segments_are_listed() -> None:
    result = runner.invoke(app, ["compile-log", str(LOGS / "cocompiled_15.0_stdout.txt")])
    assert result.exit_code == 0, result.output
    assert "segment 0: cnn.tflite: Edge TPU subgraphs: 1  ops on Edge TPU: 313" in result.output
    assert "segment 1: rnn.tflite:" in result.output and "off-chip 4.53 MiB" in result.output


def test_json_is_exactly_the_parsed_result() -> None:
    path = LOGS / "tiny_yolo_14.1.log"
    result = runner.invoke(app, ["compile-log", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert result.output == json.dumps(read_log(path).as_dict(), indent=2) + "\n"
    data = json.loads(result.output)
    keys = {"compiler_version", "ops", "edgetpu_subgraphs", "ops_on_edgetpu", "ops_on_cpu", "on_chip_bytes"}
    assert keys | {"off_chip_bytes"} <= set(data)
    assert set(data["ops"][0]) == {"operator", "count", "status", "mapped"}
    assert (data["ops_on_edgetpu"], data["ops_on_cpu"]) == (19, 6)


def test_missing_file_exits_2_with_one_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compile-log", str(tmp_path / "nope.log")])
    assert result.exit_code == 2
    assert "nope.log: no such file" in result.output and "Traceback" not in result.output


def test_file_without_compiler_output_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "readme.txt"
    path.write_text("This is not what the compiler printed.\n")
    result = runner.invoke(app, ["compile-log", str(path), "--json"])
    assert result.exit_code == 2
    assert "readme.txt: no Edge TPU compiler output found" in result.output


def test_help_lists_it_and_loads_no_framework() -> None:
    assert "compile-log" in CliRunner().invoke(app, ["--help"]).output
    assert frameworks_imported_by(["compile-log", str(LOGS / "tiny_yolo_14.1.log")]) == []
