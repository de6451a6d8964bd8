"""Each diagnosis fires on its evidence, and stays silent without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler_kit.compare.diagnoses import (
    CURVE_RISE_DB,
    DIAGNOSES,
    BatchNormEvidence,
    Evidence,
    batchnorm_statistics,
    calibration_size,
    clipped_activations,
    constant_predictions,
    diagnose,
    input_grid,
    output_steps,
    outputs_below_one_step,
)
from compiler_kit.compare.layers import LayerDrift, LayerDrifts


def _layer(name: str, clipped: float, source: str | None = None) -> LayerDrift:
    return LayerDrift(name, "CONV_2D", [1, 4], 30.0, 0.1, 0.3, 0.02, 5.0, None, None, name, "name", source, clipped)


class _Samples:
    """The part of a Dataset input_grid reads: its first samples."""

    def __init__(self, samples: list[np.ndarray]) -> None:
        self.samples = samples

    def first(self, count: int) -> list[np.ndarray]:
        return self.samples[:count]


def test_nothing_measured_means_nothing_diagnosed() -> None:
    assert diagnose(Evidence()) == []
    assert set(DIAGNOSES) == {
        "input_grid",
        "outputs_below_one_step",
        "clipped_activations",
        "calibration_size",
        "batchnorm_statistics",
    }


def test_input_grid_needs_a_costly_input_term_and_outliers() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    values[0, 0, 0, 0] = 500.0  # one far outlier stretches the grid
    costly = {"outputs": {"y": {"input_db": 20.0, "int8_db": 18.0}}}
    cheap = {"outputs": {"y": {"input_db": 60.0, "int8_db": 18.0}}}
    verify = _Samples(list(values[:, None]))
    [note] = input_grid(Evidence(verify=verify, budget=costly))  # type: ignore[arg-type]
    assert "costs 20.0 dB" in note and ", 500] but 99.8% lie within [" in note and "calibration.preprocess" in note
    assert input_grid(Evidence(verify=verify, budget=cheap)) == []  # type: ignore[arg-type]
    even = _Samples(list(rng.uniform(0, 1, (64, 1, 1, 8, 8)).astype(np.float32)))
    assert input_grid(Evidence(verify=even, budget=costly)) == []  # type: ignore[arg-type]


def test_clipped_activations_name_the_worst_source_layer_and_the_calibration_size() -> None:
    layers = LayerDrifts([_layer("a", 0.0005), _layer("b", 0.02, "features.3 (Relu)"), _layer("c", 0.004)])
    [note] = clipped_activations(Evidence(layers=layers, calibration_samples=(200, 50)))
    assert note.startswith("2 layers clip") and "'features.3 (Relu)', 2.00% of its values" in note
    assert "calibration.num_samples is 200, 50 used" in note
    assert clipped_activations(Evidence(layers=LayerDrifts([_layer("a", 0.0005)]))) == []
    assert clipped_activations(Evidence(layers=layers, calibration_method="percentile")) == []  # clipping on purpose


def _curve(*snrs: dict[str, float], available: int = 359, last: int = 16) -> dict:
    """A calibration curve of points at last/4, last/2 and last samples, with these SNRs by output."""
    counts = [last // 4, last // 2, last][-len(snrs) :]
    points = [{"samples": n, "snr_db": snr} for n, snr in zip(counts, snrs, strict=True)]
    return {"reference": "tflite-float", "verify_samples": 32, "available": available, "points": points}


def test_calibration_size_fires_while_the_snr_still_rises_and_says_how_many_samples_the_data_has() -> None:
    rising = _curve({"a": 27.6, "b": 30.0}, {"a": 27.7, "b": 30.2}, {"a": 33.7, "b": 30.4})
    [note] = calibration_size(Evidence(calibration_samples=(16, 16), calibration_curve=rising))
    assert note.startswith(
        "the int8 SNR still rises with the calibration samples (output 'a' against float: 27.6 dB from 4, 27.7 dB "
        "from 8, 33.7 dB from 16 samples; +6.0 dB from 8 to 16)"
    )  # the output that gains most
    assert note.endswith("raise calibration.num_samples (now 16; the data has 359 samples)")
    short = _curve({"a": 27.7}, {"a": 33.7}, available=96, last=96)
    [over] = calibration_size(Evidence(calibration_samples=(500, 96), calibration_curve=short))
    assert over.endswith(
        "calibration.num_samples is 500 but the data has only 96 samples: add samples of the serving distribution to "
        "calibration.data"
    )
    [every] = calibration_size(Evidence(calibration_samples=(96, 96), calibration_curve=short))
    assert every.endswith("add samples of the serving distribution to calibration.data (all 96 are used)")


def test_calibration_size_stays_silent_once_the_snr_has_settled_or_without_a_curve() -> None:
    settled = _curve({"a": 39.6}, {"a": 39.3}, {"a": 38.3}, last=200)  # the digits example's, as measured
    barely = _curve({"a": 30.0}, {"a": 30.0 + CURVE_RISE_DB}, last=200)
    for curve in (settled, barely, _curve({"a": 12.0}), {}, {"error": "ValueError"}, {"skipped": "too many"}):
        assert calibration_size(Evidence(calibration_samples=(200, 200), calibration_curve=curve)) == []


def test_clipping_names_its_cause_from_the_calibration_curve() -> None:
    """Clipping with an SNR that still rises: too few samples; with one that no longer does: data unlike the
    served data, which more of the same would not fix."""
    layers = LayerDrifts([_layer("b", 0.02)])
    rising = _curve({"a": 27.7}, {"a": 33.7})
    flat = _curve({"a": 30.1}, {"a": 30.0})
    [few] = clipped_activations(Evidence(layers=layers, calibration_curve=rising))
    [unlike] = clipped_activations(Evidence(layers=layers, calibration_curve=flat))
    [unknown] = clipped_activations(Evidence(layers=layers))
    assert "the calibration data is too small (the int8 SNR still rises with more of it)" in few
    assert "the calibration data is unlike the data the model serves (the int8 SNR no longer rises with more" in unlike
    assert "-0.1 dB from 8 to 16 samples)" in unlike
    assert "the calibration data is too small or unlike the data the model serves" in unknown


def test_batchnorm_statistics_judge_shift_and_spread() -> None:
    running_mean, running_var = np.zeros(4), np.ones(4)

    def evidence(mean: float, var: float) -> Evidence:
        found = BatchNormEvidence("bn1", running_mean, running_var, np.full(4, mean), np.full(4, var))
        return Evidence(batchnorm=found)

    assert batchnorm_statistics(evidence(0.3, 1.5)) == []
    [shifted] = batchnorm_statistics(evidence(3.0, 1.0))
    assert "first BatchNorm ('bn1')" in shifted and "3.0 running standard deviations" in shifted
    [spread] = batchnorm_statistics(evidence(0.0, 250.0))
    assert "variances 250x" in spread


@pytest.mark.slow
def test_outputs_below_one_int8_step_are_found_on_the_real_int8_model(built) -> None:
    int8 = built.build_dir / "model_int8.tflite"
    steps = output_steps(Path(int8))
    (name, step) = next(iter(steps.items()))
    assert 0 < step < 1
    loud = {name: np.full((10, 10), 5 * step)}
    quiet = {name: np.full((10, 10), 0.2 * step)}
    assert outputs_below_one_step(Evidence(int8_tflite=int8, float_outputs=loud)) == []
    [note] = outputs_below_one_step(Evidence(int8_tflite=int8, float_outputs=quiet))
    assert note.startswith(f"output '{name}': on 100% of the samples every value is below one int8 step")


def test_constant_predictions_of_a_classifier() -> None:
    rng = np.random.default_rng(0)
    stuck = rng.normal(0, 0.1, (40, 10))
    stuck[:, 3] += 5  # class 3 wins on every sample, though the values vary
    varied = rng.normal(0, 1, (40, 10))
    [note] = constant_predictions({"logits": stuck, "other": varied}, ["logits", "other"])
    assert note.startswith("output 'logits': the source model gives class 3 for 100% of the 40 verification samples")
    assert constant_predictions({"logits": stuck[:10]}, ["logits"]) == []  # too few samples to say
    assert constant_predictions({"logits": stuck}, []) == []  # not judged as classes: no claim
