"""The calibration curve: which draws are quantized again, and the curve of real digits builds, one calibrated on
far too few samples and the session's on the recipe's 200."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler_kit.compare.budget import Probe
from compiler_kit.compare.calibration_curve import (
    CURVE_MAX_MACS,
    calibration_curve,
    curve_sizes,
    nested_draws,
    quantize_draws,
)
from compiler_kit.data import Dataset, open_dataset
from compiler_kit.frontends.base import FloatModel
from compiler_kit.recipe import DataSpec, InputSpec, Preprocess
from tests.conftest import build_recipe


def test_the_points_quantized_again_are_a_quarter_and_a_half_of_the_samples() -> None:
    assert curve_sizes(200) == [50, 100]
    assert curve_sizes(7) == [1, 3]
    assert curve_sizes(2) == [1]  # a quarter and a half of two are one sample
    assert curve_sizes(1) == []  # one sample: only the build's own model


def test_the_draws_are_seeded_random_and_nested() -> None:
    small, large = nested_draws(96, [24, 48], seed=0)
    assert len(small) == 24 and len(large) == 48 and set(small) <= set(large)
    assert list(small) == sorted(small) and list(large) == sorted(large)  # streamed in file order
    assert small.max() > 24  # not the first samples: files are often grouped (8 crops of each photo)
    again = nested_draws(96, [24, 48], seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, (small, large), strict=True))
    assert not np.array_equal(nested_draws(96, [24], seed=1)[0], small)


def _eight(tmp_path: Path) -> Dataset:
    """Eight calibration samples, sample k all k."""
    np.savez(tmp_path / "eight.npz", x=np.arange(8, dtype=np.float32)[:, None] * np.ones((8, 4), np.float32))
    return open_dataset(DataSpec(path=tmp_path / "eight.npz"), Preprocess(), InputSpec(name="x", shape=[1, 4]), None, 0)


def test_each_draw_is_quantized_again_into_a_model_of_its_size(tmp_path: Path) -> None:
    seen: list[list[float]] = []

    def requantize(calibration: Dataset) -> bytes:
        seen.append([float(sample[0, 0]) for sample in calibration])
        return b"model of %d" % len(calibration)

    draws = quantize_draws(requantize, _eight(tmp_path), 0, tmp_path, macs=1000)
    assert draws["samples"] == [2, 4] and draws["seconds"] >= 0
    assert (tmp_path / "int8_2.tflite").read_bytes() == b"model of 2" and (tmp_path / "int8_4.tflite").exists()
    small, large = seen
    assert set(small) <= set(large) and small == sorted(small)  # nested, streamed in file order
    assert small == [float(k) for k in nested_draws(8, [2], 0)[0]]  # the samples at the draw's positions


def test_a_model_too_large_to_calibrate_again_has_no_curve_and_says_why(tmp_path: Path) -> None:
    def requantize(calibration: Dataset) -> bytes:
        raise AssertionError("quantized again")

    eight = _eight(tmp_path)
    draws = quantize_draws(requantize, eight, 0, tmp_path, macs=int(CURVE_MAX_MACS / 5))  # 2 + 4 samples: too many
    assert draws == {
        "skipped": "calibrating again on 2 and 4 samples of 1.5e+10 multiply-accumulates each (9e+10 in all) would "
        "cost more than the curve is allowed (7.5e+10, where a MobileNetV2 build takes a quarter longer)"
    }
    model = FloatModel(tmp_path, "serving_default", [None], [])
    assert (
        calibration_curve(draws, tmp_path, eight, Probe(model, lambda: iter([]), 0, "x", {}, {})) == draws
    )  # the reason


@pytest.fixture(scope="module")
def too_few(base_recipe: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):
    """The digits build calibrated on 4 samples: far too few for its ranges to settle."""
    recipe = copy.deepcopy(base_recipe)
    recipe["calibration"]["num_samples"] = 4
    return build_recipe(recipe, tmp_path_factory.mktemp("too-few"))


def _snrs(report: dict[str, Any]) -> dict[int, float]:
    """The curve of the digits CNN's one output: SNR by calibration samples."""
    return {point["samples"]: point["snr_db"]["output_0"] for point in report["calibration_curve"]["points"]}


def _own_int8_db(report: dict[str, Any]) -> float:
    """The build's own int8 model on the same first verification samples, as the error budget measured it."""
    return float(report["quantization_budget"]["outputs"]["output_0"]["int8_db"])


@pytest.mark.slow
def test_too_few_calibration_samples_show_as_a_rising_curve_and_a_finding(too_few) -> None:
    report = too_few.report
    curve, snrs = report["calibration_curve"], _snrs(report)
    assert list(snrs) == [1, 2, 4] and curve["verify_samples"] == 32 and curve["available"] == 359
    assert snrs[4] == _own_int8_db(report)  # the last point is the build's own model, not quantized again
    models = too_few.build_dir / "calibration_curve"
    assert sorted(path.name for path in models.iterdir()) == ["int8_1.tflite", "int8_2.tflite"]
    assert snrs[4] > snrs[1] + 3.0 and snrs[4] > snrs[2] + 3.0, snrs  # measured: 12.8, 15.8, 25.3 dB
    [note] = [note for note in report["diagnoses"] if "still rises with the calibration samples" in note]
    assert note.endswith("raise calibration.num_samples (now 4; the data has 359 samples)")
    assert note in report["findings"]
    line = "Calibration size: the int8 model calibrated on 1 / 2 / 4 of the 4 calibration samples (the data has 359)"
    for page in ("report.md", "report.html"):
        assert line in (too_few.build_dir / page).read_text(), page


@pytest.mark.slow
def test_the_recipes_200_samples_have_settled(built) -> None:
    snrs = _snrs(built.report)
    assert list(snrs) == [50, 100, 200] and snrs[200] == _own_int8_db(built.report)
    assert snrs[200] - snrs[100] < 1.0, snrs  # measured: 39.6, 39.3, 38.3 dB (min-max widens with samples)
    assert not any("calibration samples" in note for note in built.report["findings"])
    page = (built.build_dir / "report.md").read_text()
    assert "Calibration size: the int8 model calibrated on 50 / 100 / 200 of the 200 calibration samples" in page
