"""The verify stage: every runner of the chain on the same verification samples, and the int8 model's drift from
the float one layer by layer, by part of its quantization (the error budget) and by calibration samples (the
calibration curve, from the int8 models the quantize stage made of fewer samples).

The chain, in order: the source model in its own framework, any intermediate model (torch's exported ONNX), the
float and int8 TFLite models, and the compiled model on an Edge TPU when one is here. Outputs are kept by runner
and by output name; the first runner's are the reference every other runner's must match by name and shape.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.cache import Entry
from compiler_kit.compare.batchnorm import first_batchnorm
from compiler_kit.compare.budget import Probe, error_budget
from compiler_kit.compare.calibration_curve import calibration_curve
from compiler_kit.compare.diagnoses import BATCHNORM_SAMPLES, BatchNormEvidence, Evidence, diagnose
from compiler_kit.compare.layers import LayerDrift, LayerDrifts, layer_drift
from compiler_kit.compare.source_names import SAMPLES as SOURCE_SAMPLES
from compiler_kit.compare.source_names import source_names
from compiler_kit.data import Dataset
from compiler_kit.device.session import AgentCall, ModelJob
from compiler_kit.errors import BadInputError, ToolMissingError, describe_exception
from compiler_kit.progress import QUIET, Counting, Reporter
from compiler_kit.recipe import Device
from compiler_kit.runners import SOURCE_RUNNERS, EdgeTpuRunner, LiteRtRunner, OnnxRuntimeRunner, Runner
from compiler_kit.runners.device import DeviceRunner, DeviceSession
from compiler_kit.stage_keys import data_inputs, tool_versions
from compiler_kit.stages.base import CachedStage, Job
from compiler_kit.stages.convert import CONVERT
from compiler_kit.stages.data import DATA
from compiler_kit.stages.edgetpu import EDGETPU
from compiler_kit.stages.quantize import QUANTIZE
from compiler_kit.timing import LatencyStats

OUTPUTS = "outputs.npz"
ENTRY_FORMAT = 3  # what an entry holds (2: device_latency, 3: calibration_curve); never read from an older one
TOOLS = ("ai-edge-litert", "tensorflow", "keras", "torch", "onnxruntime", "numpy")
Outputs = dict[str, dict[str, np.ndarray]]  # runner name -> output name -> one array over the samples


@dataclass(frozen=True)
class Verified:
    outputs: Outputs
    first_ms: dict[str, float]  # each runner's first inference
    runners: dict[str, dict[str, object]]  # each runner's description
    layers: LayerDrifts
    budget: dict[str, Any]  # compiler_kit.compare.budget's error budget
    diagnoses: list[str]  # compiler_kit.compare.diagnoses' findings
    curve: dict[str, Any]  # compiler_kit.compare.calibration_curve's
    device_latency: dict[str, LatencyStats]  # a device runner's timed runs, made by its agent with its outputs

    def save(self, files: Path, output_names: list[str]) -> dict[str, Any]:
        """The outputs into the entry's files, the rest returned as its metadata."""
        np.savez(files / OUTPUTS, **_flat(self.outputs, output_names))
        return {
            "first_ms": self.first_ms,
            "runners": self.runners,
            "layers": [layer.as_dict() for layer in self.layers],
            "unmatched": self.layers.unmatched,
            "budget": self.budget,
            "diagnoses": self.diagnoses,
            "calibration_curve": self.curve,
            "device_latency": {name: stats.as_dict() for name, stats in self.device_latency.items()},
        }

    @classmethod
    def read(cls, entry: Entry, output_names: list[str]) -> Verified:
        meta = entry.meta
        with np.load(entry.files / OUTPUTS) as stored:
            outputs = {
                runner: {name: stored[f"{runner}#{k}"] for k, name in enumerate(output_names)}
                for runner in meta["runners"]
            }
        layers = LayerDrifts([LayerDrift(**layer) for layer in meta["layers"]], meta["unmatched"])
        device_latency = {name: LatencyStats(**stats) for name, stats in meta["device_latency"].items()}
        parts = (meta["budget"], meta["diagnoses"], meta["calibration_curve"], device_latency)
        return cls(outputs, meta["first_ms"], meta["runners"], layers, *parts)


class VerifyStage(CachedStage[Verified]):
    name = "verify"

    def plan(self, job: Job) -> str:
        samples = len(job[DATA].verify)
        return f"{len(job.runners)} runners on {samples} samples, then float vs int8 layer by layer and by part"

    def key_inputs(self, job: Job) -> dict[str, Any]:
        recipe = job.recipe
        return {
            "entry_format": ENTRY_FORMAT,
            # The quantize key holds the calibration data and settings, which the calibration curve quantizes from.
            "models": [job.keys[stage.name] for stage in (QUANTIZE, EDGETPU) if stage.name in job.keys],
            "runners": [runner.name for runner in job.runners],
            "verify": data_inputs(job[DATA].verify, recipe.verify),
            "preprocess": recipe.calibration.preprocess.model_dump(mode="json"),
            "threads": recipe.verify.threads,
            "device": recipe.edgetpu.device,
            "devices": [_device_key(runner) for runner in job.runners if isinstance(runner, DeviceRunner)],
            "tools": tool_versions(TOOLS),
        }

    def produce(self, job: Job, files: Path) -> dict[str, Any]:
        job.prepare_runners()
        verify, float_model, tflite = job[DATA].verify, job[CONVERT], job[QUANTIZE]
        outputs, first_ms = run_all(job.runners, verify, job.recipe.inputs[0].name, job.reporter)
        threads = job.recipe.verify.threads
        with job.reporter.task("samples, float vs int8 layer by layer", len(verify)) as task:
            samples = Counting(verify, task)
            layers = layer_drift(tflite.float_tflite, tflite.int8_tflite, samples, float_model.input_perms[0], threads)
        layers = with_source_names(job, layers)
        described = {runner.name: runner.describe() for runner in job.runners}
        budget = quantization_budget(job, outputs)
        curve = quantization_curve(job, outputs)
        settings = job.recipe.calibration
        calibration = (settings.num_samples, len(job[DATA].calibration))
        evidence = Evidence(
            verify,
            calibration,
            settings.method,
            tflite.int8_tflite,
            outputs["tflite-float"],
            layers,
            budget,
            source_batchnorm(job),
            curve,
        )
        device_latency = {runner.name: runner.latency() for runner in job.runners if isinstance(runner, DeviceRunner)}
        verified = Verified(outputs, first_ms, described, layers, budget, diagnose(evidence), curve, device_latency)
        return verified.save(files, float_model.output_names)

    def load(self, job: Job, entry: Entry) -> Verified:
        return Verified.read(entry, job[CONVERT].output_names)

    def run(self, job: Job) -> Verified:
        job.runners = make_runners(job)  # before the key, which names them
        return super().run(job)


VERIFY = VerifyStage()


def with_source_names(job: Job, layers: LayerDrifts) -> LayerDrifts:
    """Each layer with the name of the source model's layer it is; without names when the source model cannot be
    probed (the reason goes to the build log: names help, they never stop a build)."""
    verify = job[DATA].verify
    samples = verify.first(SOURCE_SAMPLES)
    try:
        names = source_names(job.recipe.source, job[CONVERT], job[QUANTIZE].float_tflite, samples)
    except Exception as exc:  # a source graph onnxruntime or Keras cannot expose layer by layer
        print(f"source layer names unavailable: {describe_exception(exc)}", file=sys.stderr)
        return layers
    named = [dataclasses.replace(layer, source_name=names.get(layer.float_name)) for layer in layers]
    return LayerDrifts(named, layers.unmatched)


def source_batchnorm(job: Job) -> BatchNormEvidence | None:
    """The source model's first BatchNorm and its input on calibration samples; None without one or when the source
    model cannot be probed (the reason goes to the build log)."""
    calibration = job[DATA].calibration
    samples = calibration.first(BATCHNORM_SAMPLES)
    try:
        return first_batchnorm(job.recipe.source, samples)
    except Exception as exc:  # a source model that cannot be run layer by layer: no evidence, not a failed build
        print(f"BatchNorm statistics unavailable: {describe_exception(exc)}", file=sys.stderr)
        return None


def probe(job: Job, outputs: Outputs) -> Probe:
    """The verification samples and the float and int8 TFLite models' outputs on them, for the budget and the
    calibration curve."""
    verify, recipe = job[DATA].verify, job.recipe
    return Probe(
        job[CONVERT],
        lambda: iter(verify),
        len(verify),
        recipe.inputs[0].name,
        outputs["tflite-float"],
        outputs["tflite-int8"],
        recipe.verify.threads,
    )


def quantization_budget(job: Job, outputs: Outputs) -> dict[str, Any]:
    """The error budget of the int8 model; a model whose variants cannot be made gets the reason instead (the budget
    explains a result, it never stops a build)."""
    tflite = job[QUANTIZE]
    try:
        return error_budget(tflite.float_tflite, tflite.int8_tflite, probe(job, outputs))
    except Exception as exc:  # a graph the flatbuffer edits do not handle: say so in the report
        return {"error": describe_exception(exc)}


def quantization_curve(job: Job, outputs: Outputs) -> dict[str, Any]:
    """The calibration curve from the quantize stage's models; models that cannot be run give the reason instead
    (the curve explains a result, it never stops a build)."""
    data, tflite = job[DATA], job[QUANTIZE]
    try:
        return calibration_curve(tflite.curve_draws, tflite.curve_models, data.calibration, probe(job, outputs))
    except Exception as exc:  # a model LiteRT refuses: say so in the report
        return {"error": describe_exception(exc)}


def make_runners(job: Job) -> list[Runner]:
    recipe, float_model, tflite, edgetpu = job.recipe, job[CONVERT], job[QUANTIZE], job[EDGETPU]
    threads, model_io = recipe.verify.threads, (float_model.input_perms, float_model.outputs)
    intermediates = [
        OnnxRuntimeRunner(name, float_model.root / file, threads) for name, file in float_model.intermediates.items()
    ]
    return [
        SOURCE_RUNNERS[recipe.source.framework](recipe.source, threads, float_model.output_names),
        *intermediates,
        LiteRtRunner("tflite-float", tflite.float_tflite, threads, *model_io),
        LiteRtRunner("tflite-int8", tflite.int8_tflite, threads, *model_io),
        *(
            [EdgeTpuRunner(edgetpu.compiled_model, threads, recipe.edgetpu.device, *model_io)]
            if edgetpu.runnable and edgetpu.compiled_model
            else []
        ),
        *(runner for device in recipe.verify.devices for runner in device_runners(job, device)),
    ]


def _device_key(runner: DeviceRunner) -> dict[str, Any]:
    """What a device's results depend on: where it is, its Python and runtime, and what it times."""
    session = runner.session
    return {
        "url": session.device.url,
        "python": session.device.python,
        "edgetpu_device": session.device.edgetpu_device,
        "versions": runner.versions,
        "latency": session.latency.model_dump(mode="json"),
    }


def device_runners(job: Job, device: Device) -> list[DeviceRunner]:
    """A device's runners: its CPU on the int8 model, and its Edge TPU on the compiled model when there is one
    and the device has libedgetpu (`edgetpu: required` makes either missing an error). The device is probed
    first: its runtime versions belong to the stage's key."""
    float_model, tflite, compiled = job[CONVERT], job[QUANTIZE], job[EDGETPU].compiled_model
    call = AgentCall(device)
    probe = call.probe()
    name = device.runner_name
    models = [ModelJob(name, tflite.int8_tflite, edgetpu=False)]
    on_edgetpu = device.edgetpu != "off" and compiled is not None and probe["edgetpu"]["available"]
    if device.edgetpu == "required" and not on_edgetpu:
        why = "the build has no compiled model" if compiled is None else probe["edgetpu"]["reason"]
        raise ToolMissingError(f"{name} cannot run the Edge TPU model: {why} (the device's edgetpu is required)")
    if on_edgetpu:
        assert compiled is not None
        models.append(ModelJob(f"{name}:edgetpu", compiled, edgetpu=True))
    io = LiteRtRunner(f"{name} (I/O)", tflite.int8_tflite, 1, float_model.input_perms, float_model.outputs)
    session = DeviceSession(device, io, models, job.recipe.verify.threads, job.recipe.verify.latency)
    return [DeviceRunner(model.name, session, probe["versions"]) for model in models]


def _flat(outputs: Outputs, names: list[str]) -> dict[str, np.ndarray]:
    """One archive member per runner and output: `runner#k`, k the output's position in the source model (output
    names may hold any character; the position is the stable key)."""
    return {f"{runner}#{k}": by_name[name] for runner, by_name in outputs.items() for k, name in enumerate(names)}


def run_all(
    runners: list[Runner], verify: Dataset, input_name: str, reporter: Reporter = QUIET
) -> tuple[Outputs, dict[str, float]]:
    """Feed the prepared runners the same samples; keep each one's outputs (by output name) and first inference
    time. Local runners take each sample in turn (it is read and preprocessed once for all of them); a `batched`
    runner (a device) takes them all in one call afterwards."""
    outputs: Outputs = {}
    first_ms: dict[str, float] = {}
    local = [runner for runner in runners if not runner.batched]
    with reporter.task(f"samples through {len(local)} runners", len(verify)) as task:
        for position, sample in enumerate(verify):
            for runner in local:
                _keep(runner, position, runner.infer({input_name: sample}), outputs, first_ms, len(verify))
            task.advance()
    for runner in (runner for runner in runners if runner.batched):
        feeds = ({input_name: sample} for sample in verify)
        with reporter.task(f"samples on {runner.name}", len(verify)) as task:
            for position, produced in enumerate(runner.infer_all(feeds, task)):
                _keep(runner, position, produced, outputs, first_ms, len(verify))
    return {runner.name: outputs[runner.name] for runner in runners}, first_ms


def _keep(
    runner: Runner,
    position: int,
    produced: dict[str, np.ndarray],
    outputs: Outputs,
    first_ms: dict[str, float],
    samples: int,
) -> None:
    """One sample's outputs into the runner's arrays, allocated once on its first sample (a list of per-sample
    arrays fragments the heap as the set grows)."""
    if position == 0:
        check_outputs(runner.name, produced, next(iter(outputs.values()), None))
        outputs[runner.name] = {name: np.empty((samples, *y.shape[1:]), dtype=y.dtype) for name, y in produced.items()}
        first_ms[runner.name] = runner.last_inference_ms
    for name, y in produced.items():
        outputs[runner.name][name][position] = y[0]


def check_outputs(runner: str, produced: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None) -> None:
    """A converted model must return the source model's outputs: the same names, each of the same shape."""
    if reference is None:
        return
    if set(produced) != set(reference):
        raise BadInputError(
            f"the {runner} model's outputs ({', '.join(produced)}) are not the source model's ({', '.join(reference)})",
            fix="report the model: the converter lost or renamed an output",
        )
    for name, y in produced.items():
        if y.shape[1:] != reference[name].shape[1:]:
            raise BadInputError(
                f"the {runner} model's output '{name}' has shape {list(y.shape)}, the source model's "
                f"{[1, *reference[name].shape[1:]]}",
                fix="report the model: the converter changed the output's shape",
            )
