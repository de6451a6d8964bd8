"""`ckit run`'s work: an image classifier's top-k per image and its speed, here or on a device.

What Coral's classify_image example does, on ckit's parts: images are decoded and resized to the model's input
(NHWC, as TFLite takes them), scaled and normalized as the model's recipe says (or as the options say), and fed to
the int8 model on this machine's LiteRT (`tflite-int8`) or on a device's agent (`device:NAME`, and
`device:NAME:edgetpu` for a compiled model where the device has an Edge TPU). Speed is the median of timed runs
of the first image after warm-up, as frames per second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler_kit import lazy
from compiler_kit.device.session import ModelJob
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import Device, InputSpec, Latency, Preprocess, load_recipe
from compiler_kit.runners.device import DeviceRunner, DeviceSession
from compiler_kit.runners.litert import LiteRtRunner
from compiler_kit.timing import LatencyStats, measure_latency

INT8_MODEL, REPORT, COMPILED = "model_int8.tflite", "report.json", "_edgetpu.tflite"
INPUT = "input"


@dataclass(frozen=True)
class Classifier:
    model: Path  # the int8 model: its tensors say how to quantize inputs and read outputs
    compiled: Path | None  # its *_edgetpu.tflite, for a device's Edge TPU
    preprocess: Preprocess | None  # the recipe's, when the model comes from a build folder


@dataclass(frozen=True)
class Ranked:
    runner: str
    runtime: str
    top: list[list[tuple[str, float]]]  # per image: (label, score) best first
    latency: LatencyStats


def open_classifier(path: Path) -> Classifier:
    """A build folder (its int8 model, compiled model and preprocessing) or an int8 .tflite file."""
    if path.is_dir():
        model = path / INT8_MODEL
        if not model.is_file():
            raise BadInputError("not a build folder: no model_int8.tflite", path=path, fix="give `ckit build`'s --out")
        compiled = next(iter(sorted(path.glob(f"edgetpu/*{COMPILED}"))), None)
        return Classifier(model, compiled, _build_preprocess(path / REPORT))
    if path.name.endswith(COMPILED):
        raise BadInputError(
            "a compiled model cannot be read here (its Edge TPU part runs only on an Edge TPU)",
            path=path,
            fix="give the build folder, or the int8 model it was compiled from",
        )
    if path.suffix != ".tflite" or not path.is_file():
        raise BadInputError("not a .tflite file or a build folder", path=path, fix="give model_int8.tflite")
    return Classifier(path, None, None)


def _build_preprocess(report: Path) -> Preprocess | None:
    """The build's calibration preprocessing (what the model was quantized for); None when the recipe is gone."""
    try:
        recipe = Path(json.loads(report.read_text())["recipe"])
        return load_recipe(recipe).calibration.preprocess
    except (OSError, ValueError, KeyError, BadInputError):
        return None


def read_labels(path: Path | None) -> list[str] | None:
    """One label per line; Coral's `N label` lines keep only the label."""
    if path is None:
        return None
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read the labels: {exc}", path=path, fix="one label per line") from None
    labels = []
    for line in lines:
        index, _, label = line.strip().partition(" ")
        labels.append(label.strip() if index.isdigit() and label.strip() else line.strip())
    return labels


def load_images(paths: list[Path], input_shape: list[int], preprocess: Preprocess) -> np.ndarray:
    """The images as one float32 batch in the model's NHWC input shape, preprocessed."""
    from compiler_kit.data.dataset import preprocess_sample
    from compiler_kit.data.sources import decode_image

    _, height, width, channels = input_shape
    color = "grayscale" if channels == 1 else "rgb"
    sized = preprocess.model_copy(update={"resize": (height, width), "color": color})
    spec = InputSpec(name=INPUT, shape=list(input_shape), layout="NHWC")
    return np.concatenate([preprocess_sample(decode_image(p, sized), "NHWC", spec, sized) for p in paths])


def top_k(scores: np.ndarray, k: int, labels: list[str] | None) -> list[list[tuple[str, float]]]:
    flat = scores.reshape(len(scores), -1)
    best = np.argsort(-flat, axis=1, kind="stable")[:, :k]

    def label(index: int) -> str:
        return labels[index] if labels and index < len(labels) else str(index)

    return [[(label(int(i)), float(row[i])) for i in order] for row, order in zip(flat, best, strict=True)]


def run_here(runner: LiteRtRunner, images: np.ndarray, k: int, labels: list[str] | None, latency: Latency) -> Ranked:
    outputs = [runner.infer({INPUT: images[i : i + 1]}) for i in range(len(images))]
    first_ms = runner.last_inference_ms
    scores = np.concatenate([next(iter(out.values())) for out in outputs])
    stats = measure_latency(runner, {INPUT: images[:1]}, first_ms=first_ms, warmup=latency.warmup, runs=latency.runs)
    runtime = f"{runner.runtime} {lazy.version(runner.runtime)}"
    return Ranked(runner.name, runtime, top_k(scores, k, labels), stats)


def run_on_device(
    device: Device,
    classifier: Classifier,
    io: LiteRtRunner,
    images: np.ndarray,
    k: int,
    labels: list[str] | None,
    latency: Latency,
) -> list[Ranked]:
    """Every image through the device's CPU (and its Edge TPU when the model is compiled and the device has one), in
    one agent call."""
    from compiler_kit.device.session import AgentCall

    probe = AgentCall(device).probe()
    name = device.runner_name
    models = [ModelJob(name, classifier.model, edgetpu=False)]
    if classifier.compiled is not None and device.edgetpu != "off" and probe["edgetpu"]["available"]:
        models.append(ModelJob(f"{name}:edgetpu", classifier.compiled, edgetpu=True))
    session = DeviceSession(device, io, models, io.threads, latency)
    ranked = []
    for model in models:
        runner = DeviceRunner(model.name, session, probe["versions"])
        runner.prepare()
        outputs = list(runner.infer_all({INPUT: images[i : i + 1]} for i in range(len(images))))
        scores = np.concatenate([next(iter(out.values())) for out in outputs])
        runtime = f"{probe['versions']['runtime']} {probe['versions']['runtime_version']}"
        ranked.append(Ranked(model.name, runtime, top_k(scores, k, labels), runner.latency()))
    return ranked
