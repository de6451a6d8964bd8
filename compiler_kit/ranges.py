"""Calibration ranges other than min-max: each activation's int8 range chosen from a histogram of its values.

The converter's calibration records each activation's min and max over the calibration samples; one far outlier
then stretches the whole grid, and every ordinary value loses precision. Two remedies, both keeping the model
fully int8, by name in RANGE_METHODS:
  - percentile: the range that holds all but (100 - p)% of the values at each end;
  - mse: the range, shrunk from min-max by a common factor, with the least expected squared error: values beyond it
    cost their clipping, values within it the rounding of a 256-step grid (step^2 / 12).
Both keep zero inside the range (the int8 grid must hold it exactly) and never widen min-max.

How: the converter calibrates only (`_experimental_calibrate_only`), which gives a float model whose activations
carry their min and max; that model runs on the same calibration samples (every tensor kept) to fill a histogram
per activation over [min, max]; the chosen ranges replace min and max in the model, and the converter's own
quantizer (`mlir_quantize`) makes the int8 model from them, as it would from its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from compiler_kit.compare.layers import TensorGraph
from compiler_kit.tflite_edit import packed

BINS = 2048
MSE_STEPS = 128  # shrink factors tried by the mse method: k / MSE_STEPS, k = 1..MSE_STEPS
LEVELS = 255  # steps of an int8 grid
Range = tuple[float, float]


class Histogram:
    """Counts of one activation's values in BINS equal bins over its calibrated [low, high]."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self.counts = np.zeros(BINS, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        if self.high <= self.low:
            return
        scaled = (values.ravel().astype(np.float64) - self.low) * (BINS / (self.high - self.low))
        self.counts += np.bincount(np.clip(scaled.astype(np.int64), 0, BINS - 1), minlength=BINS)

    def centers(self) -> np.ndarray:
        width = (self.high - self.low) / BINS
        return self.low + (np.arange(BINS) + 0.5) * width


def percentile_range(histogram: Histogram, percentile: float) -> Range:
    total = histogram.counts.sum()
    if not total or histogram.high <= histogram.low:
        return histogram.low, histogram.high
    cumulative = np.cumsum(histogram.counts) / total
    tail = (100.0 - percentile) / 100.0
    edges = np.linspace(histogram.low, histogram.high, BINS + 1)
    low = edges[int(np.searchsorted(cumulative, tail, side="right"))]
    high = edges[min(BINS, int(np.searchsorted(cumulative, 1.0 - tail, side="left")) + 1)]
    return _with_zero(float(low), float(high))


def mse_range(histogram: Histogram) -> Range:
    if not histogram.counts.sum() or histogram.high <= histogram.low:
        return histogram.low, histogram.high
    centers, counts = histogram.centers(), histogram.counts.astype(np.float64)
    best, best_error = (histogram.low, histogram.high), np.inf
    for k in range(1, MSE_STEPS + 1):
        low, high = _with_zero(histogram.low * k / MSE_STEPS, histogram.high * k / MSE_STEPS)
        step = (high - low) / LEVELS
        clipped = np.clip(centers, low, high)
        error = float(np.dot(counts, (centers - clipped) ** 2 + np.where(centers == clipped, step**2 / 12, 0.0)))
        if error < best_error:
            best, best_error = (low, high), error
    return best


def _with_zero(low: float, high: float) -> Range:
    return min(low, 0.0), max(high, 0.0)


RANGE_METHODS: dict[str, Callable[[Histogram, float], Range]] = {
    "percentile": percentile_range,
    "mse": lambda histogram, _: mse_range(histogram),
}


def with_ranges(calibrated: bytes, samples: Iterable[np.ndarray], method: str, percentile: float) -> bytes:
    """The calibrated float model (bytes) with each activation's min and max chosen by `method` from the values it
    takes on `samples` (in the model's layout)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(calibrated, 0)
    tensors = model.subgraphs[0].tensors
    recorded = {
        index: tensor.quantization
        for index, tensor in enumerate(tensors)
        if tensor.quantization is not None and tensor.quantization.min is not None and len(tensor.quantization.min)
    }
    histograms = _histograms(calibrated, samples, {i: (float(q.min[0]), float(q.max[0])) for i, q in recorded.items()})
    choose = RANGE_METHODS[method]
    for index, quantization in recorded.items():
        low, high = choose(histograms[index], percentile)
        quantization.min, quantization.max = [low], [high]
    return packed(model)


def _histograms(calibrated: bytes, samples: Iterable[np.ndarray], ranges: dict[int, Range]) -> dict[int, Histogram]:
    graph = TensorGraph(calibrated, 1)  # every tensor kept, no delegate to fuse them away
    histograms = {index: Histogram(*span) for index, span in ranges.items()}
    for sample in samples:
        for index, values in graph.run(np.asarray(sample, dtype=np.float32), histograms).items():
            histograms[index].add(values)
    return histograms
