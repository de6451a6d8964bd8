"""The corpus tune benchmark's table and summary (the runs themselves are `make corpus-tune`)."""

from __future__ import annotations

from benchmarks.corpus_tune import table


def test_the_table_sums_up_gains_and_says_what_got_worse() -> None:
    rows = [
        {"model": "a", "default_db": 5.0, "best_db": 11.0, "gain_db": 6.0, "best": "percentile 99.9"},
        {"model": "b", "default_db": 12.0, "best_db": 12.0, "gain_db": 0.0, "best": "recipe as written"},
        {"model": "c", "default_db": 8.0, "best_db": 10.0, "gain_db": 2.0, "best": "mse"},
        {"model": "d", "skipped": "pip download d==1 failed (offline?)"},
    ]
    text = table(rows)
    assert "a                           5.0     11.0    6.0  percentile 99.9" in text
    assert "d                    pip download d==1 failed (offline?)" in text
    assert text.splitlines()[-1] == "improved 2 of 3; median gain 2.0 dB; worse than the default: 0"
