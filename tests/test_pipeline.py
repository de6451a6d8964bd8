"""A whole build of the digits Keras CNN: the numbers the issue's acceptance rests on."""

from __future__ import annotations

import numpy as np
import pytest

from compiler_kit.quantize import check_full_integer
from compiler_kit.recipe import load_recipe
from compiler_kit.stages.quantize import FLOAT_TFLITE, INT8_TFLITE
from tests.conftest import SHIPPED_RECIPE


def _comparison(report: dict, reference: str, candidate: str) -> dict:
    return next(
        c["metrics"] for c in report["comparisons"] if (c["reference"], c["candidate"]) == (reference, candidate)
    )


@pytest.mark.slow
def test_int8_accuracy_within_one_point_of_keras(built) -> None:
    drift = _comparison(built.report, "source", "tflite-int8")
    assert drift["accuracy_reference"] > 0.9  # the model really learned digits
    assert abs(drift["accuracy_drop_pp"]) <= 1.0
    assert drift["top1_agreement"] >= 0.97
    assert built.passed


@pytest.mark.slow
def test_conversion_is_near_lossless_and_quantization_is_where_drift_is(built) -> None:
    conversion = _comparison(built.report, "source", "tflite-float")
    quantization = _comparison(built.report, "tflite-float", "tflite-int8")
    assert conversion["cosine"] > 0.9999 and conversion["snr_db"] > 60
    assert 10 < quantization["snr_db"] < conversion["snr_db"]
    assert built.report["findings"] == []


@pytest.mark.slow
def test_int8_model_is_full_integer_with_int8_io(built) -> None:
    model = (built.build_dir / INT8_TFLITE).read_bytes()
    check_full_integer(model)
    io = built.report["runners"]["tflite-int8"]
    assert io["input_quantization"][0]["dtype"] == "int8" and io["output_quantization"][0]["dtype"] == "int8"
    assert (built.build_dir / FLOAT_TFLITE).stat().st_size > len(model)


@pytest.mark.slow
def test_every_runner_saw_the_verification_set_and_was_timed(built) -> None:
    datasets = built.report["inputs"]["datasets"]
    assert datasets["verify"]["samples"] == 360 and datasets["verify"]["labels"]
    assert datasets["calibration"]["samples"] == 200
    assert datasets["calibration"]["sha256"] != datasets["verify"]["sha256"]
    for name in ("source", "tflite-float", "tflite-int8"):
        stats = built.report["latency"][name]
        assert stats["runs"] == 20 and stats["threads"] == 1
        assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
        assert np.isfinite(stats["first_ms"])


@pytest.mark.slow
def test_no_temporary_files_left_in_the_build_folder(built) -> None:
    # Only the lock file stays: removing it would let a waiting build lock a file nobody else sees.
    assert [p.name for p in built.build_dir.iterdir() if p.name.startswith(".")] == [".ckit.lock"]


def test_shipped_recipe_is_valid_and_points_at_the_shipped_data() -> None:
    recipe = load_recipe(SHIPPED_RECIPE)
    assert recipe.calibration.data.path.name == "calibration.npz"
    assert recipe.verify.data.path.name == "eval.npz"
    assert recipe.calibration.data.path.parent == recipe.verify.data.path.parent
    assert recipe.calibration.data.path.parent.name == "digits"


@pytest.mark.slow
def test_per_layer_drift_is_in_the_report_and_names_the_worst_layer(built) -> None:
    layers = built.report["layers"]
    assert [layer["op"] for layer in layers][:2] == ["INPUT", "CONV_2D"]
    assert all(10 < layer["snr_db"] <= 200 for layer in layers)
    worst = built.report["worst_layers"]
    assert worst and worst[0] == min(layers, key=lambda layer: layer["snr_db"])["name"]
    assert "Layers that lose the most" in (built.build_dir / "report.md").read_text()


@pytest.mark.slow
def test_confusion_of_float_and_int8_predictions_matches_the_agreement(built) -> None:
    confusion = built.report["confusion"]
    matrix = np.array(confusion["matrix"])
    assert (confusion["reference"], confusion["candidate"]) == ("source", "tflite-int8")
    assert matrix.sum() == 360 and len(confusion["classes"]) == 10
    agreement = _comparison(built.report, "source", "tflite-int8")["top1_agreement"]
    assert np.trace(matrix) / matrix.sum() == agreement
    assert len(built.report["latency"]["tflite-int8"]["samples_ms"]) == 20
