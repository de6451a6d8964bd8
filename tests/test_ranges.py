"""Range methods on histograms of known distributions: what each keeps, and that zero stays inside."""

from __future__ import annotations

import numpy as np
import pytest

from compiler_kit.ranges import BINS, RANGE_METHODS, Histogram, mse_range, percentile_range


def _histogram(values: np.ndarray) -> Histogram:
    histogram = Histogram(float(values.min()), float(values.max()))
    histogram.add(values)
    return histogram


def _quantization_mse(values: np.ndarray, low: float, high: float) -> float:
    step = (high - low) / 255
    return float(np.mean((values - (np.round((np.clip(values, low, high) - low) / step) * step + low)) ** 2))


def test_percentile_drops_the_outermost_values_and_keeps_zero() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0.0, 1.0, 100_000), [50.0] * 5])  # five hot values
    low, high = percentile_range(_histogram(values), 99.99)
    assert low == 0.0 and 0.99 < high < 1.1
    low, high = percentile_range(_histogram(values + 2.0), 99.99)  # all positive: the range still holds zero
    assert low == 0.0 and high < 3.1


def test_percentile_of_one_hundred_is_min_max() -> None:
    values = np.random.default_rng(1).normal(0, 1, 10_000)
    low, high = percentile_range(_histogram(values), 100.0)
    assert low == pytest.approx(values.min()) and high == pytest.approx(values.max(), rel=1e-3)


def test_mse_shrinks_a_heavy_tailed_range_and_lowers_the_error() -> None:
    values = np.random.default_rng(2).laplace(0, 1, 200_000)
    histogram = _histogram(values)
    low, high = mse_range(histogram)
    assert histogram.low < low < 0 < high < histogram.high  # shrunk, zero kept
    assert _quantization_mse(values, low, high) < 0.9 * _quantization_mse(values, histogram.low, histogram.high)
    # the known optimum for a Laplace(0, b) on 8 bits clips at about 9.9 b (Banner et al., ACIQ, 2019)
    assert 8.5 < high < 11 and -11 < low < -8.5


def test_mse_keeps_a_uniform_range() -> None:
    values = np.random.default_rng(3).uniform(-1, 1, 100_000)
    histogram = _histogram(values)
    low, high = mse_range(histogram)
    assert low == pytest.approx(histogram.low, rel=0.05) and high == pytest.approx(histogram.high, rel=0.05)


def test_an_empty_or_constant_tensor_keeps_its_range() -> None:
    empty = Histogram(-1.0, 1.0)
    for method in RANGE_METHODS.values():
        assert method(empty, 99.9) == (-1.0, 1.0)
    constant = Histogram(0.0, 0.0)
    constant.add(np.zeros(10))
    assert constant.counts.sum() == 0 and mse_range(constant) == (0.0, 0.0)
    assert len(Histogram(0, 1).centers()) == BINS
