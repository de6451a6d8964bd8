"""Every registered comparison metric on small arrays whose results are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compiler_kit.compare import METRICS, compare
from compiler_kit.compare.metrics import SNR_CEILING_DB

# top-1 of REFERENCE: [0, 1, 2, 0]; of CANDIDATE: [0, 2, 2, 0]; LABELS: [0, 1, 2, 1].
# reference right on samples 0, 1, 2 (0.75); candidate right on 0, 2 (0.5); they agree on 0, 2, 3 (0.75).
REFERENCE = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 4], [2, 1, 0]], dtype=np.float32)
CANDIDATE = np.array([[3, 1, 0], [1, 0, 2], [1, 0, 4], [2, 1, 0]], dtype=np.float32)
LABELS = np.array([0, 1, 2, 1], dtype=np.int64)

LABEL_METRICS = {"accuracy_reference", "accuracy_candidate", "accuracy_drop_pp"}
ALL_METRICS = LABEL_METRICS | {"top1_agreement", "cosine", "snr_db", "max_abs_error", "rmse"}


def metric(name: str, reference, candidate, labels=None):
    return METRICS[name](np.asarray(reference, np.float32), np.asarray(candidate, np.float32), labels)


def test_registry_holds_the_documented_metrics():
    assert set(METRICS) == ALL_METRICS


def test_accuracy_of_reference_and_candidate():
    assert metric("accuracy_reference", REFERENCE, CANDIDATE, LABELS) == pytest.approx(0.75)
    assert metric("accuracy_candidate", REFERENCE, CANDIDATE, LABELS) == pytest.approx(0.5)


def test_accuracy_flattens_non_vector_outputs():
    # (samples, 2, 2): the argmax is over the flattened 4 values of each sample.
    reference = np.zeros((2, 2, 2), np.float32)
    reference[0, 1, 1] = 1.0  # flat index 3
    reference[1, 0, 1] = 1.0  # flat index 1
    assert metric("accuracy_reference", reference, reference, np.array([3, 1])) == 1.0
    assert metric("accuracy_reference", reference, reference, np.array([1, 1])) == 0.5


def test_accuracy_drop_is_in_percentage_points_and_positive_when_the_candidate_is_worse():
    assert metric("accuracy_drop_pp", REFERENCE, CANDIDATE, LABELS) == pytest.approx(25.0)


def test_accuracy_drop_is_negative_when_the_candidate_is_better():
    assert metric("accuracy_drop_pp", CANDIDATE, REFERENCE, LABELS) == pytest.approx(-25.0)


def test_accuracy_drop_is_zero_for_equal_accuracy():
    assert metric("accuracy_drop_pp", REFERENCE, REFERENCE, LABELS) == 0.0


@pytest.mark.parametrize("name", sorted(LABEL_METRICS))
def test_label_metrics_return_none_without_labels(name):
    assert metric(name, REFERENCE, CANDIDATE, None) is None


@pytest.mark.parametrize("name", sorted(ALL_METRICS - LABEL_METRICS))
def test_other_metrics_do_not_need_labels(name):
    value = metric(name, REFERENCE, CANDIDATE, None)
    assert isinstance(value, float)
    assert value == metric(name, REFERENCE, CANDIDATE, LABELS)


def test_top1_agreement():
    assert metric("top1_agreement", REFERENCE, CANDIDATE) == pytest.approx(0.75)
    assert metric("top1_agreement", REFERENCE, REFERENCE) == 1.0
    # Only the argmax matters, not the scale of the logits.
    assert metric("top1_agreement", REFERENCE, 10 * REFERENCE - 3) == 1.0


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
    assert METRICS["snr_db"](reference, candidate, None) == SNR_CEILING_DB


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


def test_compare_returns_every_metric():
    result = compare(REFERENCE, CANDIDATE, LABELS)
    assert set(result) == set(METRICS) == ALL_METRICS
    assert result["accuracy_drop_pp"] == pytest.approx(25.0)
    assert result["top1_agreement"] == pytest.approx(0.75)
    for name, value in result.items():
        assert value == METRICS[name](REFERENCE, CANDIDATE, LABELS)


def test_compare_without_labels_keeps_every_key():
    result = compare(REFERENCE, CANDIDATE, None)
    assert set(result) == ALL_METRICS
    assert {name for name, value in result.items() if value is None} == LABEL_METRICS


def test_confusion_counts_reference_against_candidate_predictions() -> None:
    from compiler_kit.compare.metrics import confusion

    reference = np.eye(3)[[0, 1, 2, 2]]
    candidate = np.eye(3)[[0, 2, 2, 1]]
    result = confusion(reference, candidate)
    assert result["classes"] == [0, 1, 2]
    assert result["matrix"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
