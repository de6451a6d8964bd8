"""measure_latency's statistics, fed a fake runner whose inference times are known in advance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compiler_kit.runners import Runner
from compiler_kit.timing import LatencyStats, measure_latency


class ScriptedRunner(Runner):
    """Each infer() reports the next time from a script instead of the clock (the base class times real runners);
    it records every feed it was given."""

    def __init__(self, times: list[float], threads: int = 3) -> None:
        super().__init__("scripted", threads)
        self.times = list(times)
        self.feeds: list[dict[str, np.ndarray]] = []
        self.prepare()

    def prepare_impl(self) -> list[str]:
        return ["logits"]

    def stage_impl(self, feed):
        return feed

    def infer_impl(self, staged):
        return None

    def fetch_impl(self, raw):
        return [np.zeros((1, 10), np.float32)]

    def infer(self, feed):
        outputs = super().infer(feed)
        self.feeds.append(feed)
        self.last_inference_ms = self.times.pop(0)
        return outputs

    def describe(self):
        return {"runtime": "scripted", "version": "0"}


FEED = {"image": np.zeros((1, 16, 16, 1), np.float32)}
# Warm-up times are huge: if any of them leaked into the statistics, max and mean would show it.
WARMUP = [1000.0, 900.0, 800.0]
TIMED = [7.0, 1.0, 10.0, 3.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0]  # 1..10, shuffled


def test_statistics_of_the_timed_runs():
    runner = ScriptedRunner(WARMUP + TIMED, threads=3)
    stats = measure_latency(runner, FEED, first_ms=42.5, warmup=3, runs=10)
    assert isinstance(stats, LatencyStats)
    assert stats.first_ms == 42.5
    assert stats.min_ms == 1.0
    assert stats.max_ms == 10.0
    assert stats.mean_ms == pytest.approx(5.5)
    assert stats.std_ms == pytest.approx(math.sqrt(8.25))  # population std of 1..10
    # Linear interpolation between order statistics: rank (n - 1) q.
    assert stats.p50_ms == pytest.approx(5.5)  # rank 4.5 -> between 5 and 6
    assert stats.p90_ms == pytest.approx(9.1)  # rank 8.1 -> 9 + 0.1
    assert stats.p99_ms == pytest.approx(9.91)  # rank 8.91 -> 9 + 0.91
    assert (stats.runs, stats.warmup, stats.threads) == (10, 3, 3)


def test_warmup_and_timed_runs_are_all_executed_with_the_same_feed():
    runner = ScriptedRunner(WARMUP + TIMED)
    measure_latency(runner, FEED, first_ms=1.0, warmup=3, runs=10)
    assert len(runner.feeds) == 13
    assert all(feed is FEED for feed in runner.feeds)
    assert runner.times == []


def test_without_warmup_every_run_is_timed():
    runner = ScriptedRunner([2.0, 4.0, 9.0])
    stats = measure_latency(runner, FEED, first_ms=3.0, warmup=0, runs=3)
    assert (stats.min_ms, stats.p50_ms, stats.max_ms) == (2.0, 4.0, 9.0)
    assert stats.mean_ms == pytest.approx(5.0)
    assert stats.warmup == 0


def test_a_single_run():
    stats = measure_latency(ScriptedRunner([100.0, 0.25]), FEED, first_ms=0.5, warmup=1, runs=1)
    assert stats.p50_ms == stats.p90_ms == stats.p99_ms == stats.mean_ms == stats.min_ms == stats.max_ms == 0.25
    assert stats.std_ms == 0.0


def test_as_dict_has_every_field():
    stats = measure_latency(ScriptedRunner([1.0, 3.0]), FEED, first_ms=2.0, warmup=0, runs=2)
    assert stats.as_dict() == {
        "first_ms": 2.0,
        "p50_ms": 2.0,
        "p90_ms": pytest.approx(2.8),
        "p99_ms": pytest.approx(2.98),
        "mean_ms": 2.0,
        "std_ms": 1.0,
        "min_ms": 1.0,
        "max_ms": 3.0,
        "runs": 2,
        "warmup": 0,
        "samples_ms": [1.0, 3.0],
        "threads": 3,
    }
