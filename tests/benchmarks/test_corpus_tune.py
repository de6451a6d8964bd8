"""The corpus tune benchmark's table and summary (the runs themselves are `make corpus-tune`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import corpus
from benchmarks.corpus_tune import main, table


def test_the_table_sums_up_gains_on_the_tune_photos_and_held_out_and_says_what_got_worse() -> None:
    held = {"heldout_default_db": 6.0, "heldout_best_db": 10.5, "heldout_gain_db": 4.5}
    worse = {"heldout_default_db": 9.0, "heldout_best_db": 8.5, "heldout_gain_db": -0.5}
    rows = [
        {"model": "a", "default_db": 5.0, "best_db": 11.0, "gain_db": 6.0, "best": "percentile 99.9", **held},
        {"model": "b", "default_db": 12.0, "best_db": 12.0, "gain_db": 0.0, "best": "recipe as written"},
        {"model": "c", "default_db": 8.0, "best_db": 10.0, "gain_db": 2.0, "best": "mse", **worse},
        {"model": "d", "skipped": "pip download d==1 failed (offline?)"},
    ]
    lines = table(rows).splitlines()
    assert lines[1] == "a                           5.0     11.0    6.0  6.0->10.5 +4.5  percentile 99.9"
    assert lines[2] == "b                          12.0     12.0    0.0               -  recipe as written"
    assert lines[4] == "d                    pip download d==1 failed (offline?)"
    assert lines[-2] == "improved 2 of 3; median gain 2.0 dB; worse than the default: 0"
    assert lines[-1] == "held out: improved 1 of 2; median gain 2.0 dB; worse than the default: 1"


def test_without_the_corpus_table_it_exits_2_naming_make_corpus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(corpus, "RESULTS", tmp_path / "corpus.json")
    assert main([]) == 2
    assert capsys.readouterr().out.strip() == (
        f"error: {tmp_path / 'corpus.json'} is missing: run `make corpus` first, or name models with --only"
    )
