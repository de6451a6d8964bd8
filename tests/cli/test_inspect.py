"""`ckit inspect` through typer's CliRunner: the predicted table, JSON, bad files, and no TensorFlow import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler_kit.cli import app
from compiler_kit.cli.inspect import PREDICTED
from tests.conftest import frameworks_imported_by

runner = CliRunner()


@pytest.mark.slow
def test_table_lists_every_op_and_the_predicted_verdict(built) -> None:
    result = runner.invoke(app, ["inspect", str(built.build_dir / "model_int8.tflite")])
    assert result.exit_code == 0, result.output
    assert PREDICTED in result.output
    rows = [line.split() for line in result.output.splitlines() if line[:4].strip().isdigit()]
    assert [row[1] for row in rows] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE"] + [
        "FULLY_CONNECTED"
    ] * 2
    assert "int8[1,16,16,1] int8[16,3,3,1] int32[16] -> int8[1,16,16,16]" in result.output
    assert "Ops on the Edge TPU: 7   on the CPU: 0   Edge TPU subgraphs: 1" in result.output
    assert "Multiply-accumulates: 365,184" in result.output and "4 TOPS" in result.output
    assert "Edge TPU latency PREDICTED by ckit's cost model" in result.output
    assert "target (PREDICTED)" in result.output and "\nusb " in result.output and "\ndevboard " in result.output


@pytest.mark.slow
def test_float_model_shows_failure_and_advice(built) -> None:
    result = runner.invoke(app, ["inspect", str(built.build_dir / "model_float.tflite")])
    assert result.exit_code == 0, result.output
    assert "failure (not_quantized): Model not quantized" in result.output
    assert "advice: quantize to full integer" in result.output
    assert "reason: tensor" in result.output


@pytest.mark.slow
def test_json_is_the_prediction(built) -> None:
    result = runner.invoke(app, ["inspect", str(built.build_dir / "model_int8.tflite"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {
        "compiler_version", "ops", "edgetpu_subgraphs", "ops_on_edgetpu", "ops_on_cpu", "on_chip_bytes",
        "off_chip_bytes", "predicted", "failures", "per_op", "parameter_bytes", "macs", "ideal_latency_ms", "latency",
    }  # fmt: skip
    assert data["predicted"] is True and data["ops_on_edgetpu"] == 7 and data["macs"] == 365_184
    latency = data["latency"]
    assert latency["predicted"] is True and latency["ideal_floor_ms"] == data["ideal_latency_ms"]
    assert latency["cpu_part_here"] is None
    for target in ("usb", "devboard", "pcie"):  # every op maps: nothing runs on the CPU, nothing streams
        estimate = latency["targets"][target]
        assert estimate["cpu_ms"] == 0 and estimate["parameter_stream_ms"] == 0
        assert estimate["predicted_ms"] > estimate["tpu_compute_ms"] > latency["ideal_floor_ms"]
    assert data["ops"][0] == {"operator": "CONV_2D", "count": 2, "status": "Mapped to Edge TPU", "mapped": True}


def test_bad_files_exit_2_with_one_message(tmp_path: Path) -> None:
    text = tmp_path / "notes.tflite"
    text.write_text("not a model\n")
    for path, fragment in ((text, "no 'TFL3' file identifier"), (tmp_path / "missing.tflite", "not found")):
        result = runner.invoke(app, ["inspect", str(path)])
        assert result.exit_code == 2, result.output
        assert f"error: {path}: " in result.output and fragment in result.output
        assert "Traceback" not in result.output


@pytest.mark.slow
def test_inspect_never_imports_a_framework(built) -> None:
    assert frameworks_imported_by(["inspect", str(built.build_dir / "model_int8.tflite")]) == []


def test_a_model_with_a_custom_op_is_inspected_not_refused(tmp_path: Path) -> None:
    """Coral's posenet models end in a custom decoder op LiteRT has no kernel for: the op is listed on the CPU with
    its reason, the CPU part is estimated for each target's host with it and timed here without it (the caption names
    it); exit 0."""
    from tests.edgetpu.test_compiler_rules import custom_op_graph

    model = custom_op_graph(tmp_path)
    result = runner.invoke(app, ["inspect", str(model)])
    assert result.exit_code == 0, result.output
    assert "MyPoseDecoder" in result.output and "reason: custom op 'MyPoseDecoder'" in result.output
    assert "Not in that timing (no kernel here: custom or unknown ops" in result.output
    assert "cannot read): #1 MyPoseDecoder" in result.output
    data = json.loads(runner.invoke(app, ["inspect", "--json", str(model)]).output)
    assert data["latency"]["cpu_unmeasured_ops"] == ["#1 MyPoseDecoder"]
    latency = data["latency"]
    assert latency["cpu_part_here"]["ms"] > 0  # the RESHAPE after it was timed here
    assert 0 < latency["targets"]["usb"]["cpu_ms"] < latency["targets"]["devboard"]["cpu_ms"]  # estimated per host
    assert [op["kind"] for op in data["per_op"]] == ["builtin", "custom", "builtin"]
