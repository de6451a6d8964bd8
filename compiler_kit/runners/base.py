"""The runner contract: one artifact on one backend, fed the same samples as every other runner.

`prepare()` once; `infer({input name: array in the SOURCE layout})` -> `{output name: float array}` in the source
model's layout, keyed by the SOURCE model's output names whatever the converter called them (an int8 runner
dequantizes); `last_inference_ms` is the time of the last inference alone; `infer_all(feeds)` runs many (a
`batched` runner, on another machine, in one call). Runners execute; they never compare.

As in Polygraphy's runner template, the public methods live here once and a backend writes only the `*_impl`
hooks: `stage_impl` turns the feed into the backend's own inputs (untimed), `infer_impl` runs the model (timed,
here, the same way for every backend) and `fetch_impl` turns the backend's outputs back into float arrays in
`output_names` order (untimed).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from compiler_kit.progress import NO_TASK, Task


class Runner(ABC):
    # Runs every sample in one call (`infer_all`): a runner on another machine, where a round trip per sample would
    # time the network. The verify stage feeds it after the others.
    batched = False

    def __init__(self, name: str, threads: int) -> None:
        self.name = name
        self.threads = threads
        self.last_inference_ms = float("nan")
        self.output_names: list[str] = []  # known once prepared

    def prepare(self) -> None:
        self.output_names = self.prepare_impl()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        staged = self.stage_impl(feed)
        start = time.perf_counter()
        raw = self.infer_impl(staged)
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        return dict(zip(self.output_names, self.fetch_impl(raw), strict=True))

    def infer_all(
        self, feeds: Iterable[dict[str, np.ndarray]], task: Task = NO_TASK
    ) -> Iterator[dict[str, np.ndarray]]:
        """Each feed's outputs in turn; `task` advances per feed done."""
        for feed in feeds:
            yield self.infer(feed)
            task.advance()

    @abstractmethod
    def prepare_impl(self) -> list[str]:
        """Load the model; return its output names (the source model's names) in the order fetch_impl returns."""

    @abstractmethod
    def stage_impl(self, feed: dict[str, np.ndarray]) -> Any: ...

    @abstractmethod
    def infer_impl(self, staged: Any) -> Any: ...

    @abstractmethod
    def fetch_impl(self, raw: Any) -> list[np.ndarray]: ...

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """The runtime and its version, for the report."""
