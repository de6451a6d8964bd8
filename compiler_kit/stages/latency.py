"""The latency stage: each runner timed on this machine, the Edge TPU latency predicted (its CPU part is timed here
too, which is why it belongs to this stage), and the ops of each TFLite model XNNPACK leaves to slower kernels
(which explain an int8 model slower than its float one on this CPU)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.cache import Entry
from compiler_kit.edgetpu.analysis import analyze
from compiler_kit.edgetpu.latency import latency_section
from compiler_kit.runners import Runner
from compiler_kit.runners.xnnpack import ops_outside_xnnpack
from compiler_kit.stages.base import CachedStage, Job
from compiler_kit.stages.data import DATA
from compiler_kit.stages.edgetpu import EDGETPU
from compiler_kit.stages.quantize import QUANTIZE
from compiler_kit.stages.verify import VERIFY
from compiler_kit.timing import LatencyStats, measure_latency


@dataclass(frozen=True)
class Timings:
    runners: dict[str, LatencyStats]
    edgetpu: dict[str, Any] | None  # the predicted Edge TPU latency; None with nothing on the Edge TPU
    outside_xnnpack: dict[str, dict[str, int]]  # TFLite runner -> op -> count

    def to_meta(self) -> dict[str, Any]:
        runs = {name: stats.as_dict() for name, stats in self.runners.items()}
        return {"runners": runs, "edgetpu": self.edgetpu, "outside_xnnpack": self.outside_xnnpack}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Timings:
        runners = {name: LatencyStats(**stats) for name, stats in meta["runners"].items()}
        return cls(runners, meta["edgetpu"], meta["outside_xnnpack"])

    def p50_ms(self, runner: str) -> float | None:
        return self.runners[runner].p50_ms if runner in self.runners else None


class LatencyStage(CachedStage[Timings]):
    name = "latency"

    def plan(self, job: Job) -> str:
        settings = job.recipe.verify.latency
        return f"{settings.warmup} warm-up + {settings.runs} timed runs"

    def key_inputs(self, job: Job) -> dict[str, Any]:
        """Timings belong to the machine that took them: another host or CPU measures again."""
        return {
            "verify": job.keys[VERIFY.name],
            "latency": job.recipe.verify.latency.model_dump(mode="json"),
            "machine": {"host": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count()},
        }

    def produce(self, job: Job, files: Path) -> dict[str, Any]:
        recipe, verify, first_ms, tflite = job.recipe, job[DATA].verify, job[VERIFY].first_ms, job[QUANTIZE]
        threads = recipe.verify.threads
        feed = {recipe.inputs[0].name: verify.sample(int(verify.indices[0]))}
        job.prepare_runners()
        timed_on_devices = job[VERIFY].device_latency  # a device's agent timed its runs with its outputs
        runs = {
            runner.name: timed_on_devices.get(runner.name) or self._timed(job, runner, feed, first_ms[runner.name])
            for runner in job.runners
        }
        models = {"tflite-float": tflite.float_tflite, "tflite-int8": tflite.int8_tflite}
        outside = {name: ops_outside_xnnpack(path, threads) for name, path in models.items()}
        return Timings(runs, _predicted_edgetpu(job), outside).to_meta()

    def _timed(self, job: Job, runner: Runner, feed: dict[str, np.ndarray], first_ms: float) -> LatencyStats:
        settings = job.recipe.verify.latency
        with job.reporter.task(f"{runner.name} runs", settings.warmup + settings.runs) as task:
            return measure_latency(
                runner, feed, first_ms=first_ms, warmup=settings.warmup, runs=settings.runs, task=task
            )

    def load(self, job: Job, entry: Entry) -> Timings:
        return Timings.from_meta(entry.meta)


LATENCY = LatencyStage()


def _predicted_edgetpu(job: Job) -> dict[str, Any] | None:
    """The cost model's Edge TPU latency, from the compiler's off-chip bytes when it ran; None with the stage off
    or nothing on the Edge TPU."""
    if job.recipe.edgetpu.compile == "off":
        return None
    prediction = analyze(job[QUANTIZE].int8_tflite)
    if not prediction.ops_on_edgetpu:
        return None
    section = job[EDGETPU].section
    off_chip = None if section["predicted"] else section.get("off_chip_bytes")
    return latency_section(prediction, job.recipe.verify.threads, off_chip)


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
