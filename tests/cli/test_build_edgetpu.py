"""The Edge TPU stage of `ckit build`: predicted without a compiler, compiled with one (a TEST DOUBLE here),
`required` without one exits 4, and its gates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler_kit.cli import app
from compiler_kit.edgetpu.compiler import ENV_VAR
from tests.conftest import WriteRecipe

pytestmark = pytest.mark.slow  # every test runs `ckit build` of the trained digits model

runner = CliRunner()


def build(recipe: Path, *options: str):
    result = runner.invoke(app, ["build", str(recipe), "--quiet", *options])
    report_path = recipe.parent / "build" / "report.json"
    return result, json.loads(report_path.read_text()) if report_path.exists() else None


def few_samples(recipe: dict) -> None:
    recipe["verify"]["num_samples"] = 40
    recipe["calibration"]["num_samples"] = 50


def test_without_a_compiler_the_verdict_is_predicted(write_recipe: WriteRecipe, monkeypatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)

    def gated(recipe: dict) -> None:
        few_samples(recipe)
        recipe["gates"] = {"min_ops_on_edgetpu_fraction": 1.0, "max_off_chip_bytes": 0}

    result, report = build(write_recipe(gated))
    assert result.exit_code == 0, result.output
    section = report["edgetpu"]
    assert section["predicted"] is True and section["compiled"] is False
    assert section["ops_on_edgetpu"] == 7 and section["ops_on_cpu"] == 0 and section["edgetpu_subgraphs"] == 1
    assert section["runtime"]["available"] is False and "libedgetpu" in section["runtime"]["reason"]
    assert "PREDICTED by static analysis" in result.output
    gates = {gate["name"]: gate for gate in report["gates"]}
    assert gates["min_ops_on_edgetpu_fraction"]["value"] == 1.0 and gates["max_off_chip_bytes"]["value"] == 0


def test_required_without_a_compiler_exits_4_before_any_work(write_recipe: WriteRecipe, monkeypatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")

    def required(recipe: dict) -> None:
        recipe["edgetpu"] = {"compile": "required"}

    result, report = build(write_recipe(required))
    assert result.exit_code == 4, result.output
    assert "edgetpu_compiler not found" in result.output and "Traceback" not in result.output
    assert report is None


def test_with_a_compiler_the_model_is_compiled_and_the_runtime_probed(
    write_recipe: WriteRecipe, fake_compiler: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "success")

    def compiled(recipe: dict) -> None:
        few_samples(recipe)
        recipe["edgetpu"] = {"compile": "required", "compiler": str(fake_compiler), "device": "usb:0"}

    result, report = build(write_recipe(compiled))
    assert result.exit_code == 0, result.output
    section = report["edgetpu"]
    assert section["predicted"] is False and section["compiled"] is True
    assert section["compiler"]["version"] == "16.0.384591198"
    assert report["artifacts"]["edgetpu_tflite"]["path"].endswith("edgetpu/model_int8_edgetpu.tflite")
    # no libedgetpu here: the report says so, and no edgetpu runner joins the chain
    assert section["runtime"]["available"] is False and "libedgetpu" in section["runtime"]["reason"]
    assert "edgetpu" not in report["latency"]


def test_a_compiler_that_refuses_the_model_fails_the_build_with_exit_3(
    write_recipe: WriteRecipe, fake_compiler: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "fail")
    monkeypatch.delenv(ENV_VAR, raising=False)

    def auto(recipe: dict) -> None:
        few_samples(recipe)
        recipe["gates"] = {}

    result, report = build(write_recipe(auto), "--compiler", str(fake_compiler))
    assert result.exit_code == 3, result.output
    assert "gate failed: edgetpu_compiled" in result.output
    assert report["edgetpu"]["compiled"] is False and "not quantized" in report["edgetpu"]["problem"].lower()
    assert any(failure["kind"] == "not_quantized" for failure in report["edgetpu"]["failures"])


def test_a_model_predicted_too_slow_for_the_edge_tpu_fails_its_gate(write_recipe: WriteRecipe, monkeypatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")

    def gated(recipe: dict) -> None:
        few_samples(recipe)
        recipe["gates"] = {"max_predicted_edgetpu_ms": {"usb": 100.0, "pcie": 1e-6}}

    recipe = write_recipe(gated)
    result, report = build(recipe)
    assert result.exit_code == 3, result.output
    latency = report["edgetpu"]["latency"]
    usb = latency["targets"]["usb"]
    assert usb["predicted_ms"] > usb["tpu_compute_ms"] > latency["ideal_floor_ms"] > 0
    assert latency["measured_p50_ms"] is None  # no Edge TPU here
    passed = {gate["name"]: gate["passed"] for gate in report["gates"]}
    assert passed == {"max_predicted_edgetpu_ms[usb]": True, "max_predicted_edgetpu_ms[pcie]": False}
    assert "gate failed: max_predicted_edgetpu_ms[pcie]" in result.output
    assert "Edge TPU latency PREDICTED by ckit's cost model" in (recipe.parent / "build" / "report.md").read_text()


def test_a_stage_that_is_off_says_so_instead_of_predicting(write_recipe: WriteRecipe) -> None:
    def off(recipe: dict) -> None:
        few_samples(recipe)
        recipe["edgetpu"] = {"compile": "off"}

    result = runner.invoke(app, ["build", str(write_recipe(off))])
    assert result.exit_code == 0, result.output
    assert "[4/7] edgetpu: off (edgetpu.compile: off) ..." in result.output
    assert "predict (static analysis)" not in result.output
