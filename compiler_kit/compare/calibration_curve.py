"""The calibration curve: the int8 model's SNR against the number of calibration samples its ranges came from.

The quantize stage has the build's quantizer, with the build's settings, quantize the model again from a seeded
random n/4 and n/2 of the build's n calibration samples, the smaller draw inside the larger (each point only adds
samples): `quantize_draws`. The verify stage runs each of these models on the error budget's verification samples
(the first BUDGET_SAMPLES), and sets its SNR against the float TFLite model there beside that of the build's own
int8 model (all n samples; the verify stage has its outputs, so it is never quantized again): `calibration_curve`.
An SNR that still rises from n/2 to n says more samples would still help: compiler_kit.compare.diagnoses'
calibration_size.

Drawn at random, not the first n/4: the selected samples stream in file order, and files are often grouped (by
class, by picture: the shipped photos hold 8 crops of each), so a prefix would be less like the whole set than a
draw of the same size, and the curve would blame the sample count for what is the grouping.

The whole quantizer runs again, not only its last step on ranges measured here from the float model: the TFLite
calibrator records some ranges differently from the tensors' values (on MobileNetV2 the convolutions that feed a
residual ADD get the ADD's wider range), so ranges of our own would move the n/4 and n/2 points off the build's n
point by more than the samples do. Its models belong to the quantize stage, whose key holds everything they depend
on (the calibration data and settings), so a build that only verifies again reuses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.compare.budget import Outputs, Probe
from compiler_kit.compare.metrics import snr_db
from compiler_kit.data import Dataset

CURVE_DIVISORS = (4, 2)  # the points quantized again: n/4 and n/2 of the build's n calibration samples
# The curve's cost is two more conversions and calibration on n/4 + n/2 samples: MobileNetV2 (313 M multiply-
# accumulates per sample) with its 96 samples adds 6.2-6.6 s to a 38-40 s cold build (16-17%; ~19% of its CPU time)
# on the 2-core machine it was measured on, and each sample more costs about 0.04 s (8 G multiply-accumulates a
# second), so from ~330 samples (7.7e10 multiply-accumulates of calibration) it would add more than a quarter. Above
# this much calibration work the curve is skipped: what counts is the model's size times the samples, so the small
# models have a curve on thousands (the CO2 forecaster's 1811: 2.4e6) and a ResNet-50 (4 G each) up to some 24.
# (The percentile and mse methods run the calibrated model once more on the samples: their curve costs up to twice
# as much.)
CURVE_MAX_MACS = 7.5e10
Requantize = Callable[[Dataset], bytes]  # calibration samples -> the int8 model the build's quantizer makes of them


def curve_sizes(samples: int) -> list[int]:
    """How many calibration samples each point quantized again takes: n/4 and n/2, at least one, below n."""
    return sorted({max(1, samples // divisor) for divisor in CURVE_DIVISORS} - {samples})


def nested_draws(samples: int, sizes: list[int], seed: int) -> list[np.ndarray]:
    """Seeded random positions among `samples`, one draw per size, each smaller draw inside the larger ones."""
    order = np.random.default_rng(seed).permutation(samples)
    return [np.sort(order[:size]) for size in sizes]


def model_name(samples: int) -> str:
    return f"int8_{samples}.tflite"


def quantize_draws(requantize: Requantize, calibration: Dataset, seed: int, folder: Path, macs: int) -> dict[str, Any]:
    """The curve's int8 models, quantized again from nested draws of `calibration`, written into `folder` (one
    `model_name(samples)` per draw); returns what the verify stage needs: the draws' sizes and the seconds it took,
    or why there are none (a model of `macs` multiply-accumulates per sample too large to calibrate that often)."""
    sizes = curve_sizes(len(calibration))
    if (work := sum(sizes) * macs) > CURVE_MAX_MACS:
        return {
            "skipped": f"calibrating again on {' and '.join(map(str, sizes))} samples of {macs:.3g} multiply-"
            f"accumulates each ({work:.2g} in all) would cost more than the curve is allowed ({CURVE_MAX_MACS:.2g}, "
            "where a MobileNetV2 build takes a quarter longer)"
        }
    started = time.perf_counter()
    for positions in nested_draws(len(calibration), sizes, seed):
        (folder / model_name(len(positions))).write_bytes(requantize(calibration.subset(positions)))
    return {"samples": sizes, "seconds": round(time.perf_counter() - started, 3)}


def calibration_curve(draws: dict[str, Any], folder: Path, calibration: Dataset, probe: Probe) -> dict[str, Any]:
    """The curve for the report: per point its calibration sample count and each output's SNR against the probe's
    reference (the float TFLite model's outputs): one point per model `quantize_draws` wrote into `folder` (`draws`
    is what it returned; when it made none, the reason is the curve), then the build's own int8 model (calibrated on
    all of `calibration`). Like the error budget, on the probe's first BUDGET_SAMPLES samples."""
    if "samples" not in draws:
        return draws
    started, probe = time.perf_counter(), probe.first()
    points = [
        _point(size, probe.reference, probe.outputs(f"curve-{size}", folder / model_name(size)))
        for size in draws["samples"]
    ]
    points.append(_point(len(calibration), probe.reference, probe.int8))
    return {
        "reference": "tflite-float",
        "verify_samples": probe.count,
        "available": calibration.source.length,
        "points": points,
        "seconds": {"quantize": draws["seconds"], "run": round(time.perf_counter() - started, 3)},  # what it cost
    }


def _point(samples: int, reference: Outputs, candidate: Outputs) -> dict[str, Any]:
    """One point: each output's SNR."""
    return {
        "samples": samples,
        "snr_db": {name: snr_db(expected, candidate[name]) for name, expected in reference.items()},
    }
