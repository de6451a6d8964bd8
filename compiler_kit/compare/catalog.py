"""What each metric is: how its value reads (its kind) and which way is better. One table, for everything that
judges or shows a metric: the worst over a model's outputs, report diffs, recipe gates (`min_<name>` /
`max_<name>` of a catalogued name).

The functions live in their registries (metrics.py: signal metrics, tasks.py: task metrics); a test keeps this
table and those registries naming the same metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# fraction: a share in [0, 1], shown as %; pp: percentage points; ratio: a number in [0, 1] or [-1, 1] shown to 6
# digits; db: decibels; count: per sample or in all; units: the output's own units (regression, in `units`).
Kind = Literal["fraction", "pp", "ratio", "db", "count", "units"]
Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class MetricInfo:
    kind: Kind
    better: Better | None  # None: better neither way (a count, a bias, the reference's own accuracy)


def _higher(kind: Kind) -> MetricInfo:
    return MetricInfo(kind, "higher")


def _lower(kind: Kind) -> MetricInfo:
    return MetricInfo(kind, "lower")


CATALOG: dict[str, MetricInfo] = {
    # signal (every output)
    "cosine": _higher("ratio"),
    "snr_db": _higher("db"),
    "max_abs_error": _lower("units"),
    "rmse": _lower("units"),
    # classification
    "top1_agreement": _higher("fraction"),
    "top5_agreement": _higher("fraction"),
    "accuracy_reference": MetricInfo("fraction", None),
    "accuracy_candidate": _higher("fraction"),
    "accuracy_drop_pp": _lower("pp"),
    # map
    "pixel_agreement": _higher("fraction"),
    "iou": _higher("ratio"),
    "iou_min": _higher("ratio"),
    "samples_iou_below_0_5": _lower("count"),
    # sequence
    "step_agreement": _higher("fraction"),
    "exact_match": _higher("fraction"),
    "edit_distance": _lower("count"),
    "normalized_edit_distance": _lower("ratio"),
    # detection
    "recall": _higher("fraction"),
    "precision": _higher("fraction"),
    "f1": _higher("ratio"),
    "mean_matched_iou": _higher("ratio"),
    "detections_reference": MetricInfo("count", None),
    "detections_candidate": MetricInfo("count", None),
    # regression
    "mae": _lower("units"),
    "bias": MetricInfo("units", None),
    # embedding
    "nearest_neighbour_agreement": _higher("fraction"),
}


def worst(metric: str, values: list[float | None]) -> float | None:
    """The worst of one metric's values over several outputs (None when any is unknown)."""
    better = CATALOG[metric].better
    if any(value is None for value in values) or better is None:
        return None
    known = [value for value in values if value is not None]
    return min(known) if better == "higher" else max(known)
