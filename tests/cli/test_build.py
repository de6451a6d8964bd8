"""`ckit build` through typer's CliRunner: the exit code is the verdict, bad input is one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from compiler_kit.cli import app
from tests.conftest import WriteRecipe

runner = CliRunner()


def ckit(*args: str):
    return runner.invoke(app, list(args))


def assert_bad_input(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output  # one message, after any progress lines
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.mark.slow
def test_build_passes_and_prints_summary(write_recipe: WriteRecipe, tmp_path: Path) -> None:
    result = ckit("build", str(write_recipe()))
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output
    assert "[7/7] report done" in result.output  # progress per stage
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert report["passed"] is True
    assert (tmp_path / "build" / "report.md").read_text().startswith("# ckit build")


@pytest.mark.slow
def test_tightened_gate_exits_3_and_still_writes_the_report(write_recipe: WriteRecipe, tmp_path: Path) -> None:
    def tighten(recipe: dict) -> None:
        recipe["gates"]["min_snr_db"] = 150.0  # int8 cannot reach this

    result = ckit("build", str(write_recipe(tighten)))
    assert result.exit_code == 3, result.output
    assert "gate failed: min_snr_db" in result.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    failed = [gate["name"] for gate in report["gates"] if not gate["passed"]]
    assert report["passed"] is False and failed == ["min_snr_db"]


@pytest.mark.slow
def test_misspelled_key_exits_2_with_suggestion(write_recipe: WriteRecipe) -> None:
    def misspell(recipe: dict) -> None:
        recipe["calibration"]["num_sample"] = recipe["calibration"].pop("num_samples")

    assert_bad_input(ckit("build", str(write_recipe(misspell))), "num_sample", "did you mean 'num_samples'")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsource:\n  framework: keras\n  path: [unclosed\n")
    assert_bad_input(ckit("build", str(path)), "YAML syntax error", f"{path}:5:", "starts at line 4")


@pytest.mark.slow
def test_wrong_type_names_the_field(write_recipe: WriteRecipe) -> None:
    def wrong(recipe: dict) -> None:
        recipe["verify"]["threads"] = "two"

    assert_bad_input(ckit("build", str(write_recipe(wrong))), "verify.threads")


def test_missing_recipe_file(tmp_path: Path) -> None:
    assert_bad_input(ckit("build", str(tmp_path / "nope.yaml")), "recipe file not found")


def _with_model(model: Path):
    def edit(recipe: dict) -> None:
        recipe["source"]["path"] = str(model)

    return edit


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make_model", "message"),
    [
        (lambda d, real: d / "absent.keras", "model file not found"),
        (lambda d, real: _write(d / "empty.keras", b""), "the model file is empty"),
        (
            lambda d, real: _write(d / "cut.keras", real.read_bytes()[: real.stat().st_size // 2]),
            "not a .keras archive (a zip file): truncated",
        ),
        (lambda d, real: _write(d / "text.keras", b"definitely not a zip"), "not a .keras archive"),
        (lambda d, real: _write(d / "model.onnx", real.read_bytes()), "must end in .keras"),
    ],
    ids=["missing", "empty", "truncated", "wrong-format", "wrong-suffix"],
)
def test_bad_model_file_exits_2(write_recipe, keras_model_path: Path, tmp_path: Path, make_model, message) -> None:
    model = make_model(tmp_path, keras_model_path)
    result = ckit("build", str(write_recipe(_with_model(model))))
    assert_bad_input(result, str(model), message)
    leftovers = [p.name for p in (tmp_path / "build").iterdir()] if (tmp_path / "build").exists() else []
    assert not [name for name in leftovers if name.endswith((".tflite", ".tmp")) or "saved_model" in name]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _data_variant(tmp_path: Path, digits_dir: Path, role: str, change) -> callable:
    """Copy a digits split with `change(x, y) -> (x, y)` applied and point the recipe's `role` data at it."""
    with np.load(digits_dir / ("calibration.npz" if role == "calibration" else "eval.npz")) as data:
        x, y = change(data["x"].astype(np.float32), data["y"])
    path = tmp_path / f"{role}_variant.npz"
    np.savez(path, x=x, y=y)

    def edit(recipe: dict) -> None:
        recipe[role]["data"]["path"] = str(path)

    return edit


def _with_nan(x, y):
    x[:, 5, 5, 0] = np.nan
    return x, y


@pytest.mark.slow
@pytest.mark.parametrize(
    ("role", "change", "message"),
    [
        ("calibration", _with_nan, "contains NaN or Inf"),
        ("calibration", lambda x, y: (x[:0], y[:0]), "the data set is empty"),
        ("verify", lambda x, y: (x, y[:-5]), "355 labels for 360 samples"),
        ("verify", lambda x, y: (x[:, :8, :8], y), "shape [8, 8, 1]"),
    ],
    ids=["nan", "empty", "label-count", "shape"],
)
def test_bad_data_exits_2(write_recipe, digits_dir: Path, tmp_path: Path, role, change, message) -> None:
    result = ckit("build", str(write_recipe(_data_variant(tmp_path, digits_dir, role, change))))
    assert_bad_input(result, f"{role}_variant.npz", message)


@pytest.mark.slow
def test_accuracy_gate_without_labels_exits_2(write_recipe: WriteRecipe) -> None:
    def unlabel(recipe: dict) -> None:
        del recipe["verify"]["data"]["labels_key"]

    assert_bad_input(ckit("build", str(write_recipe(unlabel))), "max_accuracy_drop_pp need labels")


@pytest.mark.slow
def test_model_input_shape_contradicting_the_recipe_exits_2(write_recipe: WriteRecipe) -> None:
    def reshape(recipe: dict) -> None:
        recipe["inputs"][0]["shape"] = [1, 16, 16, 3]

    # the data no longer fits either; the data check runs first and names the shapes
    assert_bad_input(ckit("build", str(write_recipe(reshape))), "[16, 16, 3]")


@pytest.mark.slow
def test_unwritable_output_folder_exits_2(write_recipe: WriteRecipe, tmp_path: Path) -> None:
    blocker = _write(tmp_path / "a_file", b"")

    def unwritable(recipe: dict) -> None:
        recipe["output"]["dir"] = str(blocker / "build")

    assert_bad_input(ckit("build", str(write_recipe(unwritable))), "cannot write the build folder")


@pytest.mark.slow
def test_out_option_and_a_calibration_set_that_leaks_evaluation_samples(write_recipe: WriteRecipe, tmp_path: Path):
    def leak(recipe: dict) -> None:
        recipe["gates"] = {}
        recipe["verify"]["num_samples"] = 30
        recipe["calibration"]["data"]["path"] = recipe["verify"]["data"]["path"]  # the evaluation split
        recipe["calibration"]["num_samples"] = 360

    result = ckit("build", str(write_recipe(leak)), "--out", str(tmp_path / "elsewhere"), "--quiet")
    assert result.exit_code == 0, result.output
    assert "[1/7]" not in result.output
    assert "note: 30 of 30 verification samples also appear in the calibration data" in result.output
    report = json.loads((tmp_path / "elsewhere" / "report.json").read_text())
    assert report["gates"] == [] and report["inputs"]["datasets"]["verify"]["samples"] == 30
    assert any("also appear in the calibration data" in note for note in report["findings"])


@pytest.mark.slow
@pytest.mark.parametrize("section", ["calibration", "verify"])
def test_a_missing_data_set_names_its_recipe_field(write_recipe, tmp_path: Path, section: str) -> None:
    def edit(recipe: dict) -> None:
        recipe[section]["data"]["path"] = str(tmp_path / "absent.npz")

    result = ckit("build", str(write_recipe(edit)))
    assert_bad_input(result, f"{tmp_path / 'absent.npz'}: data set not found ({section}.data.path)")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "rows"),
    [
        ({"bias_correction": "empirical"}, ["int8_bias_correction"]),
        ({"weight_rounding": "gptq"}, ["int8_weight_rounding"]),
        ({"weight_rounding": "gptq", "bias_correction": "empirical"}, ["int8_weight_rounding", "int8_bias_correction"]),
    ],
)
def test_the_int8_remedies_run_when_asked_and_are_listed(
    write_recipe: WriteRecipe, tmp_path: Path, built, settings: dict[str, str], rows: list[str]
) -> None:
    """calibration.bias_correction: empirical and weight_rounding: gptq on the digits Keras build: only the quantize
    stage's int8 model changes, each remedy is listed with the legalization (Keras too) in the order they ran, the
    calibration curve is skipped, and the int8 SNR does not drop."""

    def remedy(recipe: dict) -> None:
        recipe["calibration"].update(settings)

    result = ckit("build", str(write_recipe(remedy)))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    listed = [row for row in report["legalization"]["rewrites"] if row["name"].startswith("int8_")]
    assert [row["name"] for row in listed] == rows
    assert all(row["status"] == "applied" and row["count"] > 0 and row["exact"] is True for row in listed), listed
    assert "skipped" in report["calibration_curve"]
    assert not any(row["name"].startswith("int8_") for row in built.report["legalization"].get("rewrites", []))

    def int8_snr(document: dict) -> float:
        pair = ("source", "tflite-int8")
        return next(c["metrics"]["snr_db"] for c in document["comparisons"] if (c["reference"], c["candidate"]) == pair)

    assert int8_snr(report) > int8_snr(built.report) - 0.5, (int8_snr(built.report), int8_snr(report))
