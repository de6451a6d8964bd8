"""Comparisons: registered signal metrics (metrics.py) and task metrics (tasks.py) over runner outputs, output by
output (outputs.py)."""

from compiler_kit.compare.metrics import METRICS
from compiler_kit.compare.tasks import TASK_METRIC_NAMES


def metric_names() -> set[str]:
    """Every metric a comparison of one output can hold: what gates may name."""
    return {*METRICS, *(name for names in TASK_METRIC_NAMES.values() for name in names)}


__all__ = ["METRICS", "metric_names"]
