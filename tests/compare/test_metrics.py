"""Every registered comparison metric on small arrays whose results are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compiler_kit.compare import METRICS
from compiler_kit.compare.metrics import SNR_CEILING_DB, accuracy

REFERENCE = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 4], [2, 1, 0]], dtype=np.float32)
CANDIDATE = np.array([[3, 1, 0], [1, 0, 2], [1, 0, 4], [2, 1, 0]], dtype=np.float32)
SIGNAL_METRICS = {"cosine", "snr_db", "max_abs_error", "rmse"}


def metric(name: str, reference, candidate):
    return METRICS[name](np.asarray(reference, np.float32), np.asarray(candidate, np.float32))


def test_registry_holds_the_signal_metrics_only():
    """What an output's numbers mean (classes, masks, boxes) is judged by tasks.py, not here."""
    assert set(METRICS) == SIGNAL_METRICS


@pytest.mark.parametrize("name", sorted(SIGNAL_METRICS))
def test_signal_metrics_are_floats(name):
    assert isinstance(metric(name, REFERENCE, CANDIDATE), float)


def test_accuracy_flattens_non_vector_outputs():
    # (samples, 2, 2): the argmax is over the flattened 4 values of each sample.
    reference = np.zeros((2, 2, 2), np.float32)
    reference[0, 1, 1] = 1.0  # flat index 3
    reference[1, 0, 1] = 1.0  # flat index 1
    assert accuracy(reference, np.array([3, 1])) == 1.0
    assert accuracy(reference, np.array([1, 1])) == 0.5


def test_cosine_per_sample_mean():
    # Rows: orthogonal (0), parallel (1), opposite (-1), [3, 4] . [4, 3] / 25 = 0.96.
    reference = [[1, 0], [1, 1], [1, 0], [3, 4]]
    candidate = [[0, 1], [2, 2], [-1, 0], [4, 3]]
    assert metric("cosine", reference, candidate) == pytest.approx((0 + 1 - 1 + 0.96) / 4)


def test_cosine_of_identical_outputs_is_one():
    assert metric("cosine", REFERENCE, REFERENCE) == pytest.approx(1.0)


def test_cosine_counts_rows_that_are_zero_in_both_as_one():
    reference = [[0, 0], [1, 0]]
    candidate = [[0, 0], [0, 1]]
    assert metric("cosine", reference, candidate) == pytest.approx(0.5)
    assert metric("cosine", [[0, 0, 0]], [[0, 0, 0]]) == 1.0


def test_cosine_of_a_zero_row_against_a_non_zero_row_is_zero():
    # A candidate that collapsed to all zeros has no similarity to a non-zero reference, and vice versa.
    assert metric("cosine", [[1, 2]], [[0, 0]]) == 0.0
    assert metric("cosine", [[0, 0]], [[1, 2]]) == 0.0
    assert metric("cosine", [[0, 0], [1, 0]], [[3, 0], [1, 0]]) == pytest.approx(0.5)


def test_snr_db_exact_for_a_known_noise_level():
    # Signal power 3^2 + 4^2 = 25, error power 0.5^2 = 0.25: 10 log10(100) = 20 dB.
    assert metric("snr_db", [[3, 4]], [[3.5, 4]]) == pytest.approx(20.0)
    # Over several samples: signal 1 + 9 = 10, error 1: 10 dB.
    assert metric("snr_db", [[1], [3]], [[2], [3]]) == pytest.approx(10.0)
    # Error power equal to signal power: 0 dB; bigger: negative.
    assert metric("snr_db", [[2, 0]], [[0, 0]]) == pytest.approx(0.0)
    assert metric("snr_db", [[1, 0]], [[-1, 0]]) == pytest.approx(10 * math.log10(1 / 4))


def test_snr_db_of_identical_outputs_is_the_ceiling():
    assert metric("snr_db", REFERENCE, REFERENCE) == SNR_CEILING_DB == 200.0


def test_snr_db_is_capped_at_the_ceiling():
    reference = np.ones((1, 4))
    candidate = reference + 1e-12  # 10 log10(4 / 4e-24) = 240 dB
    assert METRICS["snr_db"](reference, candidate) == SNR_CEILING_DB


def test_snr_db_of_a_zero_reference_is_minus_the_ceiling():
    assert metric("snr_db", [[0, 0]], [[1, 0]]) == -SNR_CEILING_DB


def test_max_abs_error_and_rmse():
    reference = [[1, -2], [0, 5]]
    candidate = [[1.5, -2], [0, 2]]  # errors 0.5, 0, 0, 3
    assert metric("max_abs_error", reference, candidate) == pytest.approx(3.0)
    assert metric("rmse", reference, candidate) == pytest.approx(math.sqrt((0.25 + 9) / 4))
    assert metric("max_abs_error", reference, reference) == 0.0
    assert metric("rmse", reference, reference) == 0.0


def test_max_abs_error_sees_negative_errors():
    assert metric("max_abs_error", [[0, 0]], [[-4, 1]]) == pytest.approx(4.0)


def test_confusion_counts_reference_against_candidate_predictions() -> None:
    from compiler_kit.compare.metrics import confusion

    reference = np.eye(3)[[0, 1, 2, 2]]
    candidate = np.eye(3)[[0, 2, 2, 1]]
    result = confusion(reference, candidate)
    assert result["classes"] == [0, 1, 2]
    assert result["matrix"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]


def test_cosine_scores_samples_blank_in_both_relative_to_the_set_as_one():
    # Sample 0 sets the scale (norm 5). Sample 1: a probability map on an image with nothing to find, ~1e-7 in
    # both float models: the raw cosine of the two noise vectors is -1, but both are blank (reference and error
    # norms below 1e-6 * 5) -> 1.0. Sample 2: near-blank reference, candidate exactly zero -> 1.0. Sample 3:
    # near-blank reference, candidate with real signal -> 0.0.
    reference = [[3, 4], [1e-7, -1e-7], [2e-7, 0], [1e-7, 0]]
    candidate = [[3, 4], [-1e-7, 1e-7], [0, 0], [0, 0.5]]
    assert metric("cosine", reference, candidate) == pytest.approx(3 / 4)
    from compiler_kit.compare.metrics import per_sample_cosine

    assert per_sample_cosine(np.asarray(reference), np.asarray(candidate)).tolist() == [1.0, 1.0, 1.0, 0.0]
    # Blank is relative: alone, the same tiny sample is the set's scale and keeps its plain cosine of -1.
    assert metric("cosine", [[1e-7, -1e-7]], [[-1e-7, 1e-7]]) == pytest.approx(-1.0)


def test_the_catalog_describes_exactly_the_metrics_the_registries_compute() -> None:
    """One table says how each metric reads and which way is better; it must name every metric and no other."""
    from compiler_kit.compare.catalog import CATALOG
    from compiler_kit.compare.tasks import TASK_METRIC_NAMES

    computed = {*METRICS, *(name for names in TASK_METRIC_NAMES.values() for name in names)}
    assert set(CATALOG) == computed


def test_the_worst_over_outputs_follows_the_catalog() -> None:
    from compiler_kit.compare.catalog import worst

    assert worst("snr_db", [40.0, 12.5]) == 12.5  # higher is better: the lowest
    assert worst("max_abs_error", [0.1, 3.0]) == 3.0  # lower is better: the highest
    assert worst("bias", [0.1, -0.2]) is None  # better neither way
    assert worst("top1_agreement", [0.9, None]) is None
