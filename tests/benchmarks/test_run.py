"""benchmarks/run.py: its pure helpers (nothing is built or timed here)."""

from __future__ import annotations

from benchmarks.run import PARTS, TARGETS, cache_note, verify_samples


def test_cache_note_counts_the_reused_stages() -> None:
    report = {"cache": {"dir": "/c", "stages": {"convert": {"status": "hit"}, "verify": {"status": "miss"}}}}
    assert cache_note(report) == "1/2 stages reused"


def test_cache_note_says_when_ckit_has_no_cache() -> None:
    assert "no stage cache" in cache_note({})
    assert "no stage cache" in cache_note({"cache": "off"})


def test_verify_samples_is_none_when_the_report_lacks_it() -> None:
    assert verify_samples({"inputs": {"datasets": {"verify": {"samples": 360}}}}) == 360
    assert verify_samples({}) is None


def test_every_part_has_a_target() -> None:
    assert list(PARTS) == ["a", "b", "c", "d", "e", "f", "g"]
    assert {key[0] for key in TARGETS} == set(PARTS)
