"""Runners on a remote device (compiler_kit/device): `device:NAME` (the int8 model on the device's CPU) and
`device:NAME:edgetpu` (the compiled model with the device's libedgetpu delegate).

A round trip per sample would measure the network, so a device runner is `batched`: `infer_all` sends every sample
at once and the device's agent runs them one by one, timing each model's first inference and its timed runs there.
The two runners of one device share a `DeviceSession`, so one agent call runs both models on the same inputs.
Inputs are quantized and laid out here, outputs decoded here, by the int8 model's own tensors (a LiteRtRunner of
it, never invoked): the compiled model keeps the int8 model's I/O tensors, so the device needs no ckit code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np

from compiler_kit.device.session import AgentCall, DeviceRun, ModelJob, ModelRun
from compiler_kit.progress import NO_TASK, Tally, Task
from compiler_kit.recipe import Device, Latency
from compiler_kit.runners.base import Runner
from compiler_kit.runners.litert import LiteRtRunner
from compiler_kit.timing import LatencyStats, latency_stats


class DeviceSession:
    """One device's models, run by one agent call per distinct set of inputs."""

    def __init__(
        self, device: Device, io: LiteRtRunner, models: list[ModelJob], threads: int, latency: Latency
    ) -> None:
        self.device, self.io, self.models = device, io, models
        self.threads, self.latency = threads, latency
        self.call = AgentCall(device)
        self.last: DeviceRun | None = None
        self._inputs_digest = ""

    def prepare(self) -> None:
        if not self.io.output_names:
            self.io.prepare()

    def run(self, inputs: list[np.ndarray], task: Task = NO_TASK, model: str = "") -> dict[str, ModelRun]:
        """Every model on `inputs` (one call, reused while the inputs are the same); `task` counts `model`'s samples
        as the device reports them."""
        digest = hashlib.sha256(b"".join(array.tobytes() for array in inputs)).hexdigest()
        counted = _Counter(task, model)
        if self.last is None or digest != self._inputs_digest:
            settings = self.latency
            self.last = self.call.run(
                self.models,
                inputs,
                threads=self.threads,
                warmup=settings.warmup,
                runs=settings.runs,
                on_samples=counted.update,
            )
            self._inputs_digest = digest
        counted.finish(len(inputs[0]))
        return self.last.models


class _Counter:
    """The device reports how many samples each model has done; `model`'s count advances the task."""

    def __init__(self, task: Task, model: str) -> None:
        self.tally, self.model = Tally(task), model

    def update(self, model: str, done: int) -> None:
        if model == self.model:
            self.tally.reach(done)

    def finish(self, total: int) -> None:
        """Up to `total` (a session reused by its second runner did the work earlier, with no one counting)."""
        self.tally.reach(total)


class DeviceRunner(Runner):
    batched = True

    def __init__(self, name: str, session: DeviceSession, versions: dict[str, str]) -> None:
        super().__init__(name, session.threads)
        self.session = session
        self.versions = versions  # the probe's: known before the run, part of the verify stage's key

    def prepare_impl(self) -> list[str]:
        self.session.prepare()
        return self.session.io.output_names

    def stage_impl(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.io.encode(feed)

    def infer_impl(self, staged: list[np.ndarray], task: Task = NO_TASK) -> ModelRun:
        return self.session.run(staged, task, self.name)[self.name]

    def fetch_impl(self, raw: ModelRun) -> list[np.ndarray]:
        return self.session.io.decode([raw.outputs[name] for name in self.session.io.output_tensor_names])

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return next(self.infer_all([feed]))

    def infer_all(
        self, feeds: Iterable[dict[str, np.ndarray]], task: Task = NO_TASK
    ) -> Iterator[dict[str, np.ndarray]]:
        """Every feed in one call (`task` counts the samples as the device runs them); `last_inference_ms` is the
        device's own time of its first inference."""
        listed = list(feeds)
        batch = {name: np.concatenate([feed[name] for feed in listed]) for name in listed[0]}
        run = self.infer_impl(self.stage_impl(batch), task)
        self.last_inference_ms = run.first_ms
        outputs = dict(zip(self.output_names, self.fetch_impl(run), strict=True))
        for position in range(len(listed)):
            yield {name: y[position : position + 1] for name, y in outputs.items()}

    def latency(self) -> LatencyStats:
        """The timed runs the device made of the first sample, after its warm-up runs."""
        assert self.session.last is not None, "infer_all runs before the latency is read"
        run, settings = self.session.last.models[self.name], self.session.latency
        return latency_stats(run.latency_ms, run.first_ms, settings.warmup, self.threads)

    def describe(self) -> dict[str, object]:
        last = self.session.last
        return {
            "runtime": self.versions.get("runtime", ""),
            "version": self.versions.get("runtime_version", ""),
            "device": self.session.device.url,
            "edgetpu_device": self.session.device.edgetpu_device if self.name.endswith(":edgetpu") else None,
            "device_versions": self.versions,
            "transfer_s": None if last is None else round(last.transfer_s, 4),
            "call_s": None if last is None else round(last.wall_s, 4),
        }
