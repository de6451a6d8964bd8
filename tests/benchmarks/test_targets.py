"""benchmarks/targets.py: targets, verdicts, the table and the --only parser (pure logic; nothing is timed)."""

from __future__ import annotations

import pytest

from benchmarks.targets import COLUMNS, Measurement, Target, growth_pct, parse_only, ratio, table, verdict


@pytest.mark.parametrize(
    ("target", "value", "met"),
    [
        (Target("<=", 1.15), 1.15, True),
        (Target("<=", 1.15), 1.151, False),
        (Target("<", 0.5, " s"), 0.5, False),
        (Target("<", 0.5, " s"), 0.21, True),
        (Target(">=", 0.9), 0.9, True),
        (Target(">=", 0.9), 0.89, False),
        (Target(">", 1.0), 1.0, False),
    ],
)
def test_target_is_met_on_the_right_side_of_its_threshold(target: Target, value: float, met: bool) -> None:
    assert target.met(value) is met


def test_target_reads_like_the_brief() -> None:
    assert str(Target("<=", 1.15)) == "≤ 1.15"
    assert str(Target(">=", 0.9)) == "≥ 0.9"
    assert str(Target("<", 0.5, " s")) == "< 0.5 s"
    assert str(Target("<", 20.0, " %")) == "< 20.0 %"


def test_a_measurement_that_could_not_be_taken_has_no_verdict() -> None:
    missing = Measurement("b", "warm / cold", None, Target("<=", 0.1), detail="no cache")
    assert missing.met is None
    assert verdict(missing.met) == "-"
    assert missing.shown_value() == "n/a (no cache)"
    assert missing.as_dict()["met"] is None


def test_measurement_shows_its_value_unit_and_raw_figures() -> None:
    row = Measurement("a", "cold / bare", 1.0789, Target("<=", 1.15), detail="9.02 s / 8.36 s")
    assert row.met is True
    assert row.shown_value() == "1.08 (9.02 s / 8.36 s)"
    assert row.as_dict() == {
        "key": "a",
        "name": "cold / bare",
        "value": 1.0789,
        "unit": "",
        "target": {"comparison": "<=", "threshold": 1.15},
        "met": True,
        "detail": "9.02 s / 8.36 s",
    }


def test_table_has_the_four_columns_aligned_and_a_verdict_per_row() -> None:
    text = table(
        [
            Measurement("a", "cold / bare", 1.3, Target("<=", 1.15)),
            Measurement("c", "ckit --help start-up", 0.18, Target("<", 0.5, " s"), " s"),
        ]
    )
    header, rule, first, second = text.splitlines()
    assert header.split() == list(COLUMNS)
    assert set(rule.replace(" ", "")) == {"-"}
    assert first.split()[-1] == "no" and second.split()[-1] == "yes"
    assert "0.18 s" in second
    starts = [line.index(cell) for line, cell in ((header, "target"), (first, "≤"), (second, "<"))]
    assert len(set(starts)) == 1  # the target column is aligned


def test_ratio_and_growth() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None
    assert growth_pct(100.0, 110.0) == pytest.approx(10.0)
    assert growth_pct(100.0, 95.0) == pytest.approx(-5.0)
    assert growth_pct(0.0, 1.0) is None


def test_only_keeps_the_suite_order_and_rejects_unknown_parts() -> None:
    known = ["a", "b", "c", "d", "e"]
    assert parse_only(None, known) == known
    assert parse_only("", known) == known
    assert parse_only("d, A", known) == ["a", "d"]
    with pytest.raises(ValueError, match="unknown measurement"):
        parse_only("a,z", known)
