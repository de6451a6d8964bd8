"""Signal metrics: pure functions `(reference, candidate) -> float`, by name, that every output gets whatever it
computes (how far the candidate's numbers are from the reference's). What the numbers MEAN (a class, a mask, a box)
is judged by the task metrics of tasks.py, which use the helpers here.

`reference` and `candidate` are one model output over all verification samples, shape (samples, ...), float.
Recipes' gates and reports name these metrics by their registry key.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]
METRICS: dict[str, Metric] = {}

# Identical outputs have an infinite SNR, which JSON cannot hold; 200 dB is far past float32 round-off.
SNR_CEILING_DB = 200.0

# per_sample_cosine: a sample whose reference norm is below this share of the set's largest reference norm is
# blank relative to the output's own scale (float32 round-off noise, not signal).
BLANK_RELATIVE_NORM = 1e-6


def register(name: str) -> Callable[[Metric], Metric]:
    def add(metric: Metric) -> Metric:
        METRICS[name] = metric
        return metric

    return add


def top1(outputs: np.ndarray) -> np.ndarray:
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(top1(outputs) == labels))


def per_sample_cosine(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened outputs, shape (samples,), float64.

    Both zero: 1.0; exactly one zero: 0.0. Near-blank, which takes precedence: with `bound` = BLANK_RELATIVE_NORM
    times the largest reference norm of the set, a sample whose reference norm AND error norm |candidate -
    reference| are both below `bound` scores 1.0 ("both blank", even if one side is exactly zero); a reference
    below `bound` whose candidate is not that close scores 0.0, like a zero reference against a non-zero candidate.
    """
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = candidate.reshape(len(candidate), -1).astype(np.float64)
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    norms = norm_a * norm_b
    dots = np.einsum("ij,ij->i", a, b)
    # Where one side is zero the dot product is 0 too, so dividing by 1 gives the 0.0 it should be.
    per_sample = dots / np.where(norms == 0, 1.0, norms)
    per_sample[(norm_a == 0) & (norm_b == 0)] = 1.0
    # The bound is relative to the output's own scale: a probability map on an image with nothing to find has
    # a max of ~1e-7 in both float models, and the cosine of two round-off noise vectors says nothing. An
    # all-zero set has bound 0, so nothing is near-blank and the exact-zero rules above stand alone.
    bound = BLANK_RELATIVE_NORM * norm_a.max(initial=0.0)
    blank = np.flatnonzero(norm_a < bound)
    both_blank = np.linalg.norm(b[blank] - a[blank], axis=1) < bound
    per_sample[blank] = np.where(both_blank, 1.0, 0.0)
    return per_sample


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over samples of per_sample_cosine: the cosine similarity of each sample's flattened outputs, 1.0
    when both are zero or both near-blank relative to the set's largest reference, 0.0 when only one is."""
    return float(per_sample_cosine(reference, candidate).mean())


def snr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """10 log10(signal power / error power) over all outputs, capped at SNR_CEILING_DB."""
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    noise = float(np.sum((reference.astype(np.float64) - candidate) ** 2))
    if noise == 0:
        return SNR_CEILING_DB
    if signal == 0:
        return -SNR_CEILING_DB
    return float(min(SNR_CEILING_DB, 10 * np.log10(signal / noise)))


@register("cosine")
def _cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    return cosine(reference, candidate)


@register("snr_db")
def _snr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    return snr_db(reference, candidate)


@register("max_abs_error")
def _max_abs_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.max(np.abs(reference.astype(np.float64) - candidate)))


@register("rmse")
def _rmse(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.sqrt(np.mean((reference.astype(np.float64) - candidate) ** 2)))


def confusion(reference: np.ndarray, candidate: np.ndarray) -> dict[str, list]:
    """Counts of (reference top-1, candidate top-1) pairs: where int8 changes a float prediction, and to what."""
    ref, cand = top1(reference), top1(candidate)
    classes = sorted(set(ref.tolist()) | set(cand.tolist()))
    index = {label: k for k, label in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(matrix, ([index[r] for r in ref.tolist()], [index[c] for c in cand.tolist()]), 1)
    return {"classes": classes, "matrix": matrix.tolist()}
