"""The benchmark's verdicts: each measurement against its target, and the table printed on the terminal.

Pure logic (no timing, no processes), so it is tested in tests/benchmarks/.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Comparison = Literal["<=", "<", ">=", ">"]
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
_SYMBOLS = {"<=": "≤", "<": "<", ">=": "≥", ">": ">"}
COLUMNS = ("measurement", "value", "target", "met")


@dataclass(frozen=True)
class Target:
    comparison: Comparison
    threshold: float
    unit: str = ""

    def met(self, value: float) -> bool:
        return _OPERATORS[self.comparison](value, self.threshold)

    def __str__(self) -> str:
        return f"{_SYMBOLS[self.comparison]} {_number(self.threshold)}{self.unit}"


@dataclass(frozen=True)
class Measurement:
    """One row of the table: `value` is None when it could not be measured (then `detail` says why)."""

    key: str  # the suite part it belongs to: a, b, c, d or e
    name: str
    value: float | None
    target: Target
    unit: str = ""
    detail: str = ""  # the raw figures behind a ratio, or why a target cannot hold yet

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.target.met(self.value)

    def shown_value(self) -> str:
        value = "n/a" if self.value is None else f"{_number(self.value)}{self.unit}"
        return f"{value} ({self.detail})" if self.detail else value

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": {"comparison": self.target.comparison, "threshold": self.target.threshold},
            "met": self.met,
            "detail": self.detail,
        }


def verdict(met: bool | None) -> str:
    return {True: "yes", False: "no", None: "-"}[met]


def rows(measurements: Iterable[Measurement]) -> list[tuple[str, str, str, str]]:
    return [(m.name, m.shown_value(), str(m.target), verdict(m.met)) for m in measurements]


def table(measurements: Iterable[Measurement]) -> str:
    """A plain-text table with the columns measurement, value, target, met."""
    body = rows(measurements)
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *body, strict=False)]
    lines = [COLUMNS, tuple("-" * width for width in widths), *body]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is not positive (nothing to divide by)."""
    return numerator / denominator if denominator > 0 else None


def growth_pct(before: float, after: float) -> float | None:
    """How much `after` grew from `before`, in percent."""
    share = ratio(after - before, before)
    return None if share is None else 100 * share


def parse_only(text: str | None, known: Iterable[str]) -> list[str]:
    """`--only a,c` -> ["a", "c"] in the suite's order; None or "" -> all of them. Unknown keys raise ValueError."""
    order = list(known)
    if not text:
        return order
    wanted = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(order))
    if unknown:
        raise ValueError(f"unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(order)}")
    return [key for key in order if key in wanted]


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
