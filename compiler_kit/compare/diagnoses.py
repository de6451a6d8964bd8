"""Diagnoses: why an int8 model is worse than it should be, as findings that name the cause, the evidence and a fix
that keeps the model fully int8 (the Edge TPU maps nothing else).

Each diagnosis is a function in DIAGNOSES (by name) from the build's evidence to findings; none fires without
evidence measured on this build:
  - input_grid: the input's own quantization costs a real share of the error (the error budget's input term) and
    its values do not fill the int8 grid evenly (far outliers stretch it, or the range is mostly unused);
  - outputs_below_one_step: on most samples every value of an output is below one step of its int8 tensor, so int8
    rounds it to nothing (a softmax over many classes whose probabilities are all ~0.001);
  - clipped_activations: the verification data drives activations beyond the ranges min-max calibration measured,
    so they clip: the calibration data is too small or not like the data the model serves (the calibration curve
    tells which: an SNR still rising with more samples, or one that no longer does);
  - calibration_size: the int8 SNR still rises from n/2 to all n calibration samples (compare/calibration_curve.py),
    so the ranges have not settled and more samples would still help;
  - batchnorm_statistics: the model's first BatchNorm keeps running statistics of what it saw in training; data fed
    to it now that sits far from them was preprocessed differently (scale, mean, std) from the training data.
One more reads what the outputs MEAN, so the report stage runs it once each output's task is known:
  - constant_predictions: a classifier that gives the same class for nearly every verification sample sees data
    unlike its training data (preprocessing), or is degenerate; its agreement figures then say little.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from compiler_kit.compare.layers import LayerDrifts, TensorGraph
from compiler_kit.data import Dataset

Outputs = dict[str, np.ndarray]
# input_grid fires when the input term is within this many dB of the int8 model's SNR (a real share of its error)...
INPUT_SHARE_DB = 6.0
# ...and 99.8% of the input values span less than this share of the full range (outliers stretch the grid).
INPUT_SPREAD = 0.25
BELOW_STEP_SAMPLES = 0.5  # outputs_below_one_step: on more than this share of the samples
CLIPPED_SHARE = 0.001  # clipped_activations: a layer clipping more than this share of its values
BATCHNORM_SHIFT = 1.0  # batchnorm_statistics: channel means this many running standard deviations off, on average
# ...or variances this many times larger or smaller than the running ones. Data unlike the training domain moves them
# too (natural photographs through PaddleOCR's text detector: 0.15x with its own normalization), so only a factor
# beyond that counts: a scaling error (x against x/255) is thousands.
BATCHNORM_VARIANCE = 10.0
BATCHNORM_SAMPLES = 32  # calibration samples fed to the source model for batchnorm_statistics
# calibration_size: the int8 SNR rising by more than this from n/2 to all n calibration samples is more than another
# draw of n/2 would change (digits: six seeded draws of 100 of its 200 samples spread over 1.3 dB, std 0.55 dB), so
# the ranges are still settling. Settled sets stay well below it (digits 200: -1.0 dB, MobileNetV2 96: -0.1 dB);
# too small ones pass it by far (digits 2, 4, 8, 16 samples: +3.9, +9.4, +4.9, +6.0 dB).
CURVE_RISE_DB = 1.0


@dataclass(frozen=True)
class Evidence:
    """What a build measured, for the diagnoses; a diagnosis whose evidence is missing says nothing."""

    verify: Dataset | None = None
    calibration_samples: tuple[int, int] | None = None  # (calibration.num_samples, samples used)
    calibration_method: str = "min-max"  # percentile and mse clip on purpose: clipping is no finding then
    int8_tflite: Path | None = None
    float_outputs: Outputs = field(default_factory=dict)  # the float TFLite model's, by output name
    layers: LayerDrifts = field(default_factory=LayerDrifts)
    budget: dict[str, Any] = field(default_factory=dict)
    batchnorm: BatchNormEvidence | None = None  # the source model's first BatchNorm (compare/batchnorm.py)
    calibration_curve: dict[str, Any] = field(default_factory=dict)  # compare/calibration_curve.py's


@dataclass(frozen=True)
class BatchNormEvidence:
    layer: str  # its name in the source model
    running_mean: np.ndarray
    running_var: np.ndarray
    mean: np.ndarray  # per channel, of its input on the calibration samples
    var: np.ndarray


def input_grid(evidence: Evidence) -> list[str]:
    budget = evidence.budget.get("outputs") or {}
    costly = [entry for entry in budget.values() if entry["input_db"] - entry["int8_db"] < INPUT_SHARE_DB]
    if not costly or evidence.verify is None:
        return []
    values = np.concatenate([x.ravel() for x in evidence.verify.first(64)])
    low, high = float(values.min()), float(values.max())
    inner_low, inner_high = np.percentile(values, [0.1, 99.9])
    span = high - low
    if span <= 0 or (inner_high - inner_low) >= INPUT_SPREAD * span:
        return []
    worst = min(costly, key=lambda entry: entry["input_db"])
    return [
        f"the input's own quantization costs {worst['input_db']:.1f} dB (the int8 model: {worst['int8_db']:.1f} dB): "
        f"its values span [{low:.3g}, {high:.3g}] but 99.8% lie within [{inner_low:.3g}, {inner_high:.3g}], so far "
        "outliers stretch its int8 grid; preprocess so the values span the range evenly (calibration.preprocess: "
        "clip or normalize as the model was trained)"
    ]


def outputs_below_one_step(evidence: Evidence) -> list[str]:
    if evidence.int8_tflite is None:
        return []
    steps = output_steps(evidence.int8_tflite)
    notes = []
    for name, values in evidence.float_outputs.items():
        step = steps.get(name)
        if step is None or not len(values):
            continue
        peaks = np.abs(values.reshape(len(values), -1)).max(axis=1)
        share = float(np.mean(peaks < step))
        if share > BELOW_STEP_SAMPLES:
            notes.append(
                f"output '{name}': on {share:.0%} of the samples every value is below one int8 step ({step:.3g}), so "
                "int8 rounds it to nothing; end the model before the op that squeezes it (e.g. return logits instead "
                "of a softmax over many classes) and apply that op in float on the host (a float32 output type alone "
                "does not help: the last int8 tensor has already lost it)"
            )
    return notes


def output_steps(int8_tflite: Path) -> dict[str, float]:
    """Each output's int8 step, by signature output name: its own scale, or that of the int8 tensor a final
    DEQUANTIZE reads (a float32 output type)."""
    graph = TensorGraph(int8_tflite, 1)
    steps = {}
    for name, index in _signature_outputs(graph).items():
        tensor = graph.tensors[index]
        producer = graph.producer.get(index)
        if not tensor["quantization"][0] and producer is not None and producer["op_name"] == "DEQUANTIZE":
            tensor = graph.tensors[int(producer["inputs"][0])]
        if tensor["quantization"][0]:
            steps[name] = float(tensor["quantization"][0])
    return steps


def _signature_outputs(graph: TensorGraph) -> dict[str, int]:
    signatures = graph.interpreter.get_signature_list()
    if not signatures:
        return {}
    runner = graph.interpreter.get_signature_runner(next(iter(signatures)))
    return {name: detail["index"] for name, detail in runner.get_output_details().items()}


def clipped_activations(evidence: Evidence) -> list[str]:
    clipped = sorted((layer for layer in evidence.layers if layer.clipped > CLIPPED_SHARE), key=lambda x: -x.clipped)
    if not clipped or evidence.calibration_method != "min-max":
        return []
    requested, used = evidence.calibration_samples or (None, None)
    worst = clipped[0]
    where = worst.source_name or worst.name
    return [
        f"{len(clipped)} layers clip on the verification data beyond the ranges calibration measured (worst: "
        f"'{where}', {worst.clipped:.2%} of its values): {_clipping_cause(evidence.calibration_curve)}; calibrate on "
        f"more samples of the serving distribution (calibration.num_samples is {requested}, {used} used)"
    ]


def _clipping_cause(curve: dict[str, Any]) -> str:
    """Why calibration saw narrower ranges, as far as the calibration curve tells: too few samples while the SNR
    still rises with them, unlike data once it no longer does (more of the same would not help)."""
    rise = curve_rise(curve)
    if rise is None:
        return "the calibration data is too small or unlike the data the model serves"
    if rise.db > CURVE_RISE_DB:
        return "the calibration data is too small (the int8 SNR still rises with more of it)"
    return (
        "the calibration data is unlike the data the model serves (the int8 SNR no longer rises with more of it: "
        f"{rise.db:+.1f} dB from {rise.fewer} to {rise.samples} samples)"
    )


def calibration_size(evidence: Evidence) -> list[str]:
    curve = evidence.calibration_curve
    rise = curve_rise(curve)
    if rise is None or rise.db <= CURVE_RISE_DB:
        return []
    trail = ", ".join(f"{point['snr_db'][rise.output]:.1f} dB from {point['samples']}" for point in curve["points"])
    return [
        f"the int8 SNR still rises with the calibration samples (output '{rise.output}' against float: {trail} "
        f"samples; {rise.db:+.1f} dB from {rise.fewer} to {rise.samples}): too few samples for the ranges to settle; "
        f"{_more_samples(evidence.calibration_samples, curve.get('available'))}"
    ]


class Rise(NamedTuple):
    output: str
    db: float  # its SNR with all the samples less its SNR with fewer
    fewer: int  # the samples of the curve's last point but one (n/2)
    samples: int  # all of them (n)


def curve_rise(curve: dict[str, Any]) -> Rise | None:
    """The output whose SNR rises most from the curve's last point but one (n/2 samples) to its last (all n); None
    without two points."""
    points = curve.get("points") or []
    if len(points) < 2:
        return None
    half, full = points[-2], points[-1]
    rises = (
        Rise(name, db - half["snr_db"][name], half["samples"], full["samples"]) for name, db in full["snr_db"].items()
    )
    return max(rises, key=lambda rise: rise.db)


def _more_samples(calibration_samples: tuple[int, int] | None, available: int | None) -> str:
    """The fix, from calibration.num_samples, the samples used and the samples the data has."""
    if calibration_samples is None or available is None:
        return "calibrate on more samples (calibration.num_samples)"
    requested, used = calibration_samples
    if requested > available:
        return (
            f"calibration.num_samples is {requested} but the data has only {available} samples: add samples of the "
            "serving distribution to calibration.data"
        )
    if available > used:
        return f"raise calibration.num_samples (now {requested}; the data has {available} samples)"
    return f"add samples of the serving distribution to calibration.data (all {used} are used)"


def batchnorm_statistics(evidence: Evidence) -> list[str]:
    found = evidence.batchnorm
    if found is None:
        return []
    deviation = np.sqrt(found.running_var + 1e-5)
    shift = float(np.mean(np.abs(found.mean - found.running_mean) / deviation))
    ratio = float(np.exp(np.mean(np.log((found.var + 1e-12) / (found.running_var + 1e-12)))))
    if shift <= BATCHNORM_SHIFT and 1 / BATCHNORM_VARIANCE <= ratio <= BATCHNORM_VARIANCE:
        return []
    return [
        f"the data does not look like what the model was trained on: its first BatchNorm ('{found.layer}') sees "
        f"channel means {shift:.1f} running standard deviations from those it learned, and variances {ratio:.3g}x "
        "its running ones (geometric mean): check calibration.preprocess (scale, mean, std, channel order) against "
        "the model's own training preprocessing"
    ]


DIAGNOSES: dict[str, Callable[[Evidence], list[str]]] = {
    "input_grid": input_grid,
    "outputs_below_one_step": outputs_below_one_step,
    "clipped_activations": clipped_activations,
    "calibration_size": calibration_size,
    "batchnorm_statistics": batchnorm_statistics,
}


def diagnose(evidence: Evidence) -> list[str]:
    return [note for diagnosis in DIAGNOSES.values() for note in diagnosis(evidence)]


def statistics_of(layer: str, running_mean: Any, running_var: Any, inputs: list[np.ndarray], axis: int) -> Any:
    """BatchNormEvidence from the layer's inputs (batch first, channels on `axis`)."""
    stacked = np.concatenate([np.asarray(x, dtype=np.float64) for x in inputs])
    moved = np.moveaxis(stacked, axis, -1).reshape(-1, stacked.shape[axis])
    return BatchNormEvidence(
        layer, np.asarray(running_mean, np.float64), np.asarray(running_var, np.float64), moved.mean(0), moved.var(0)
    )


CONSTANT_SHARE = 0.95  # constant_predictions: the same class on at least this share of the samples...
CONSTANT_MIN_SAMPLES = 20  # ...of at least this many


def constant_predictions(outputs: Outputs, classification: list[str]) -> list[str]:
    """`outputs`: the source model's, by name; `classification`: the names of the outputs judged as classes."""
    notes = []
    for name in classification:
        values = outputs[name]
        if len(values) < CONSTANT_MIN_SAMPLES:
            continue
        classes, counts = np.unique(values.reshape(len(values), -1).argmax(axis=1), return_counts=True)
        share = float(counts.max() / len(values))
        if share >= CONSTANT_SHARE:
            notes.append(
                f"output '{name}': the source model gives class {int(classes[counts.argmax()])} for {share:.0%} of the "
                f"{len(values)} verification samples: data unlike what it was trained on (check calibration.preprocess "
                "against its training preprocessing) or a degenerate model; its agreement figures say little"
            )
    return notes
