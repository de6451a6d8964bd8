"""Comparisons: registered signal metrics (metrics.py) and task metrics (tasks.py) over runner outputs, output by
output (outputs.py)."""

from compiler_kit.compare.catalog import CATALOG
from compiler_kit.compare.metrics import METRICS


def metric_names() -> set[str]:
    """Every metric a comparison of one output can hold: what gates may name."""
    return set(CATALOG)


__all__ = ["METRICS", "metric_names"]
