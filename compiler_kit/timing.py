"""Latency of one runner on this machine (the build's latency stage): the first inference apart, then warm-up, then
timed runs. (benchmarks/ is the suite that measures ckit itself.)"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from compiler_kit.progress import NO_TASK, Task
from compiler_kit.runners import Runner


@dataclass(frozen=True)
class LatencyStats:
    first_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    threads: int
    samples_ms: list[float]  # every timed run, for distribution plots

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def measure_latency(
    runner: Runner, feed: dict[str, np.ndarray], *, first_ms: float, warmup: int, runs: int, task: Task = NO_TASK
) -> LatencyStats:
    """Time `runs` inferences of one sample after `warmup` untimed ones; `first_ms` was measured by the caller
    on the runner's very first inference (it includes one-off work such as memory planning)."""
    for _ in range(warmup):
        runner.infer(feed)
        task.advance()
    times = np.empty(runs)
    for i in range(runs):
        runner.infer(feed)
        times[i] = runner.last_inference_ms
        task.advance()
    return latency_stats(list(times), first_ms, warmup, runner.threads)


def latency_stats(times_ms: list[float], first_ms: float, warmup: int, threads: int) -> LatencyStats:
    """The statistics of timed runs, wherever they were taken (here, or by a device's agent)."""
    times = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return LatencyStats(
        first_ms=first_ms,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(times.mean()),
        std_ms=float(times.std()),
        min_ms=float(times.min()),
        max_ms=float(times.max()),
        runs=len(times),
        warmup=warmup,
        threads=threads,
        samples_ms=[round(float(t), 6) for t in times],
    )
