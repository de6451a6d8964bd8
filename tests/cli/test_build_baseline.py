"""Gates relative to a baseline report: the model in production is what a new build must not be worse than."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler_kit.cli import app
from tests.conftest import WriteRecipe

pytestmark = pytest.mark.slow  # every test builds the trained digits model or reads the session's build

runner = CliRunner()


def with_baseline(path: Path, **gates: object):
    def edit(recipe: dict) -> None:
        recipe["verify"]["num_samples"] = 60
        recipe["gates"] = {"baseline": str(path), **gates}

    return edit


def test_relative_gates_against_a_baseline(write_recipe: WriteRecipe, built, tmp_path: Path) -> None:
    baseline = built.build_dir / "report.json"
    recipe = write_recipe(
        with_baseline(
            baseline,
            max_accuracy_below_baseline_pp=5.0,
            max_latency_p50_above_baseline_pct={"tflite-int8": 1e6, "tflite-float": -99.99},
        )
    )
    result = runner.invoke(app, ["build", str(recipe), "--quiet"])
    assert result.exit_code == 3, result.output  # the impossible latency gate fails, the others pass
    gates = {gate["name"]: gate for gate in json.loads((tmp_path / "build" / "report.json").read_text())["gates"]}
    assert gates["max_accuracy_below_baseline_pp"]["passed"] is True
    assert abs(gates["max_accuracy_below_baseline_pp"]["value"]) < 5.0
    assert gates["max_latency_p50_above_baseline_pct[tflite-int8]"]["passed"] is True
    assert gates["max_latency_p50_above_baseline_pct[tflite-float]"]["passed"] is False
    assert "gate failed: max_latency_p50_above_baseline_pct[tflite-float]" in result.output


def test_a_baseline_of_another_model_is_bad_input(write_recipe: WriteRecipe, built, tmp_path: Path) -> None:
    other = json.loads((built.build_dir / "report.json").read_text()) | {"name": "someone_else"}
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    result = runner.invoke(app, ["build", str(write_recipe(with_baseline(path, max_accuracy_below_baseline_pp=1)))])
    assert result.exit_code == 2 and "baseline report is of another model" in result.output
    assert not (tmp_path / "build" / "model_int8.tflite").exists()  # refused before any work


def test_a_baseline_of_another_schema_version_is_bad_input(write_recipe: WriteRecipe, built, tmp_path: Path) -> None:
    old = json.loads((built.build_dir / "report.json").read_text()) | {"schema_version": 0}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    result = runner.invoke(app, ["build", str(write_recipe(with_baseline(path, max_accuracy_below_baseline_pp=1)))])
    assert result.exit_code == 2 and "schema_version" in result.output


def test_relative_gates_without_a_baseline_are_refused(write_recipe: WriteRecipe) -> None:
    def no_baseline(recipe: dict) -> None:
        recipe["gates"] = {"max_accuracy_below_baseline_pp": 0.3}

    result = runner.invoke(app, ["build", str(write_recipe(no_baseline))])
    assert result.exit_code == 2 and "need gates.baseline" in result.output
