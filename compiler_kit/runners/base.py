"""The runner contract: one artifact on one backend, fed the same samples as every other runner.

`prepare()` once; `infer({input name: array in the SOURCE layout})` -> the model's outputs in model order, as
float arrays (an int8 runner dequantizes); `last_inference_ms` is the time of the last inference alone (no
data conversion). Runners execute; they never compare.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Runner(ABC):
    def __init__(self, name: str, threads: int) -> None:
        self.name = name
        self.threads = threads
        self.last_inference_ms = float("nan")

    @abstractmethod
    def prepare(self) -> None: ...

    @abstractmethod
    def infer(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """The runtime and its version, for the report."""
