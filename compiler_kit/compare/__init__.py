"""Comparisons: registered metrics over runner outputs (see metrics.py)."""

from compiler_kit.compare.metrics import METRICS, compare

__all__ = ["METRICS", "compare"]
