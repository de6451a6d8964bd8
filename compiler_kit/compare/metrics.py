"""Comparison metrics: pure functions `(reference, candidate, labels | None) -> float | None`, by name.

`reference` and `candidate` are one model output over all verification samples, shape (samples, ...), float.
Recipes' gates and reports name these metrics by their registry key. A metric that needs labels returns None
without them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray | None], float | None]
METRICS: dict[str, Metric] = {}

# Identical outputs have an infinite SNR, which JSON cannot hold; 200 dB is far past float32 round-off.
SNR_CEILING_DB = 200.0


def register(name: str) -> Callable[[Metric], Metric]:
    def add(metric: Metric) -> Metric:
        METRICS[name] = metric
        return metric

    return add


def top1(outputs: np.ndarray) -> np.ndarray:
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(top1(outputs) == labels))


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over samples of the cosine similarity of the flattened outputs (1.0 when both are zero, 0.0 when
    only one is)."""
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = candidate.reshape(len(candidate), -1).astype(np.float64)
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    norms = norm_a * norm_b
    dots = np.einsum("ij,ij->i", a, b)
    both_zero = (norm_a == 0) & (norm_b == 0)
    # Where one side is zero the dot product is 0 too, so dividing by 1 gives the 0.0 it should be.
    per_sample = np.where(both_zero, 1.0, dots / np.where(norms == 0, 1.0, norms))
    return float(per_sample.mean())


def snr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """10 log10(signal power / error power) over all outputs, capped at SNR_CEILING_DB."""
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    noise = float(np.sum((reference.astype(np.float64) - candidate) ** 2))
    if noise == 0:
        return SNR_CEILING_DB
    if signal == 0:
        return -SNR_CEILING_DB
    return float(min(SNR_CEILING_DB, 10 * np.log10(signal / noise)))


@register("accuracy_reference")
def _accuracy_reference(reference, candidate, labels):
    return None if labels is None else accuracy(reference, labels)


@register("accuracy_candidate")
def _accuracy_candidate(reference, candidate, labels):
    return None if labels is None else accuracy(candidate, labels)


@register("accuracy_drop_pp")
def _accuracy_drop_pp(reference, candidate, labels):
    """Percentage points lost from reference to candidate (negative when the candidate is better)."""
    return None if labels is None else 100 * (accuracy(reference, labels) - accuracy(candidate, labels))


@register("top1_agreement")
def _top1_agreement(reference, candidate, labels):
    return float(np.mean(top1(reference) == top1(candidate)))


@register("cosine")
def _cosine(reference, candidate, labels):
    return cosine(reference, candidate)


@register("snr_db")
def _snr_db(reference, candidate, labels):
    return snr_db(reference, candidate)


@register("max_abs_error")
def _max_abs_error(reference, candidate, labels):
    return float(np.max(np.abs(reference.astype(np.float64) - candidate)))


@register("rmse")
def _rmse(reference, candidate, labels):
    return float(np.sqrt(np.mean((reference.astype(np.float64) - candidate) ** 2)))


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None) -> dict[str, float | None]:
    """Every registered metric of one reference/candidate pair."""
    return {name: metric(reference, candidate, labels) for name, metric in METRICS.items()}


def confusion(reference: np.ndarray, candidate: np.ndarray) -> dict[str, list]:
    """Counts of (reference top-1, candidate top-1) pairs: where int8 changes a float prediction, and to what."""
    ref, cand = top1(reference), top1(candidate)
    classes = sorted(set(ref.tolist()) | set(cand.tolist()))
    index = {label: k for k, label in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(matrix, ([index[r] for r in ref.tolist()], [index[c] for c in cand.tolist()]), 1)
    return {"classes": classes, "matrix": matrix.tolist()}
