"""Fit the Edge TPU latency model (compiler_kit/edgetpu/latency.py) on Coral's published figures, and judge it.

Usage: python -m benchmarks.edgetpu_fit [--write] [--measured BUILD/report.json ...]
       (after python -m benchmarks.edgetpu_zoo; `make edgetpu-fit`)

The constants are fitted on the rows of benchmarks/edgetpu_reference.json marked "fit" (FACTS.md's four models on
the USB Accelerator and the Dev Board) and on nothing else: least squares on log(predicted / published), so every
row weighs the same whatever its size. The other rows are held out: predicted with the fitted constants, never fitted.
It prints a table of every row and the fitted values, and writes benchmarks/results/edgetpu_fit.json; with
--write it also writes the values and the fitted rows' errors into latency.py's FITTED and FIT_ERRORS_PCT.

Real runs refine it: `--measured` takes reports of `ckit build` runs made where an Edge TPU was present (their
`edgetpu.latency.measured_p50_ms`, on the device their `edgetpu` runner or remote `device:NAME:edgetpu` runner
names: usb... or pci...) and fits on them too, each as one more row, with the report's int8 model as the model.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from benchmarks.edgetpu_zoo import ZOO
from compiler_kit.edgetpu import latency
from compiler_kit.edgetpu.analysis import EdgeTpuPrediction, analyze
from compiler_kit.edgetpu.latency import FITTED, CostModel, cpu_part_ms, estimate

REFERENCE = Path(__file__).resolve().parent / "edgetpu_reference.json"
RESULT = Path(__file__).resolve().parent / "results" / "edgetpu_fit.json"
LATENCY_PY = Path(latency.__file__)
TARGET_ERROR_PCT = 25.0  # every fitted row must come within this of its published figure

# Bounds of each fitted constant: what the hardware makes physical, not what the data would like.
USB3_BYTES_PER_SECOND = 5e9 / 8  # USB 3.0's 5 Gbit/s signalling rate; the Dev Board's PCIe Gen2 x1 has the same
MODEL_BOUNDS = {
    "conv_utilisation": (1e-3, 1.0),  # a share of the array's peak
    "depthwise_utilisation": (1e-3, 1.0),
    "elementwise_per_second": (1e6, 2e12),  # at most one element per MAC cell per cycle: the array's peak
}
TARGET_BOUNDS = {
    "overhead_ms": (1e-3, 10.0),  # a driver call and a transfer set-up: generous (all of MobileNet v1 is 2.4 ms)
    "bytes_per_second": (1e6, USB3_BYTES_PER_SECOND),
}
# Where the fit starts: the values latency.py held before any fit, round guesses. Four models cannot pin seven
# constants (the fit rows leave one combination of them free and two barely constrained), so the fit ends at a
# solution near this start; a fixed start keeps the result independent of what latency.py holds now.
START = CostModel(
    conv_utilisation=0.5,
    depthwise_utilisation=0.05,
    elementwise_per_second=2e9,
    targets={
        target: replace(interface, overhead_ms=1.0, bytes_per_second=400e6)
        for target, interface in FITTED.targets.items()
    },
)
LOOSE = 0.01  # a direction whose singular value is below 1% of the largest is not determined by the fit rows


@dataclass(frozen=True)
class Reference:
    model: str
    input_size: int
    target: str
    published_ms: float
    fit: bool
    source: str


def load_reference(path: Path = REFERENCE) -> list[Reference]:
    return [Reference(**row) for row in json.loads(path.read_text())["rows"]]


# --- the constants as one vector of logarithms (every constant is positive and they span 12 decades) ---


def parameter_names(targets: tuple[str, ...]) -> list[str]:
    return [*MODEL_BOUNDS, *(f"{target}.{field}" for target in targets for field in TARGET_BOUNDS)]


def to_vector(model: CostModel) -> np.ndarray:
    values = [getattr(model, field) for field in MODEL_BOUNDS]
    values += [getattr(model.targets[t], field) for t in model.targets for field in TARGET_BOUNDS]
    return np.log(values)


def to_model(vector: np.ndarray, template: CostModel = FITTED) -> CostModel:
    """The cost model whose fitted constants are exp(vector), in parameter_names' order; names from `template`."""
    values = iter(np.exp(vector).tolist())
    scalars = {field: next(values) for field in MODEL_BOUNDS}
    targets = {
        target: replace(interface, **{field: next(values) for field in TARGET_BOUNDS})
        for target, interface in template.targets.items()
    }
    return replace(template, **scalars, targets=targets)


def log_bounds(targets: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [*MODEL_BOUNDS.values(), *(TARGET_BOUNDS[field] for _ in targets for field in TARGET_BOUNDS)]
    low, high = np.log(np.array(pairs)).T
    return low, high


# --- the fit ---


def predicted_ms(
    model: CostModel, row: Reference, predictions: dict[str, EdgeTpuPrediction], cpu_ms: dict[str, float]
) -> float:
    return estimate(predictions[row.model], row.target, cpu_ms.get(row.model, 0.0), model=model).total_ms


def residuals(
    vector: np.ndarray,
    rows: list[Reference],
    predictions: dict[str, EdgeTpuPrediction],
    cpu_ms: dict[str, float],
) -> np.ndarray:
    """log(predicted / published) of each row: 0 is exact, +-0.22 is about +-25%."""
    model = to_model(vector)
    return np.array([math.log(predicted_ms(model, row, predictions, cpu_ms) / row.published_ms) for row in rows])


def fit(rows: list[Reference], predictions: dict[str, EdgeTpuPrediction], cpu_ms: dict[str, float]) -> Any:
    """scipy's least-squares result over the fit rows, from START."""
    fit_rows = [row for row in rows if row.fit]
    return least_squares(
        residuals, to_vector(START), bounds=log_bounds(tuple(START.targets)), args=(fit_rows, predictions, cpu_ms)
    )


def loose_directions(result: Any) -> int:
    """How many combinations of the constants the fit rows leave (nearly) undetermined."""
    singular = np.linalg.svd(result.jac, compute_uv=False)
    return int(np.sum(singular < LOOSE * singular[0])) + max(result.jac.shape[1] - result.jac.shape[0], 0)


def error_pct(predicted: float, published: float) -> float:
    return (predicted / published - 1) * 100


# --- the models ---


def zoo_paths(rows: list[Reference]) -> dict[str, Path]:
    """The zoo's int8 model of every referenced model, checked to be built at the rows' input size."""
    paths = {}
    for name in dict.fromkeys(row.model for row in rows):
        entry = ZOO[name]
        if {row.input_size for row in rows if row.model == name} != {entry.input_size}:
            raise SystemExit(f"{name}: the reference rows' input size is not the zoo model's {entry.input_size}")
        if not entry.path.exists():
            raise SystemExit(f"{entry.path} is missing: run `python -m benchmarks.edgetpu_zoo` first")
        paths[name] = entry.path
    return paths


def measured_rows(reports: list[Path]) -> tuple[list[Reference], dict[str, Path]]:
    """A fit row per report of a build that ran on an Edge TPU, and the int8 model each one measured."""
    from compiler_kit.report.diff import load_report

    rows, paths = [], {}
    for path in reports:
        report = load_report(path)
        latency = (report.get("edgetpu") or {}).get("latency") or {}
        measured, runner = latency.get("measured_p50_ms"), latency.get("measured_by") or "edgetpu"
        described = (report.get("runners") or {}).get(runner, {})
        device = described.get("edgetpu_device") or described.get("device") or ""  # a remote device's, or here
        target = "usb" if device.startswith("usb") else "pcie" if device.startswith("pci") else None
        if measured is None or target is None:
            raise SystemExit(f"{path}: no Edge TPU measurement on a named usb or pci device in this report")
        name = f"{report['name']} (measured)"
        rows.append(Reference(name, 0, target, measured, True, f"measured by ckit build: {path}"))
        paths[name] = Path(report["artifacts"]["int8_tflite"]["path"])
    return rows, paths


def analyze_models(paths: dict[str, Path]) -> tuple[dict[str, EdgeTpuPrediction], dict[str, float]]:
    """Each model's static analysis, and its CPU part measured on this machine when it has one."""
    predictions, cpu_ms = {}, {}
    for name, path in paths.items():
        predictions[name] = analyze(path)
        if predictions[name].ops_on_cpu:
            cpu_ms[name] = cpu_part_ms(path, predictions[name])
    return predictions, cpu_ms


def table_rows(
    model: CostModel, rows: list[Reference], predictions: dict[str, EdgeTpuPrediction], cpu_ms: dict[str, float]
) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        prediction = predictions[row.model]
        parts = estimate(prediction, row.target, cpu_ms.get(row.model, 0.0), model=model)
        out.append({
            **asdict(row),
            "macs": prediction.macs,
            "parameter_bytes": prediction.parameter_bytes,
            "on_chip_bytes": prediction.on_chip_bytes,
            "off_chip_bytes": prediction.off_chip_bytes,
            "ops_on_cpu": prediction.ops_on_cpu,
            **parts.as_dict(),
            "error_pct": error_pct(parts.total_ms, row.published_ms),
        })  # fmt: skip
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'model':20} {'target':6} {'GMACs':>6} {'params MB':>9} {'on-chip':>7} {'off-chip':>8} "
    header += f"{'CPU ms':>6} {'predicted':>9} {'published':>9} {'error':>7}  rows"
    print(header)
    for r in rows:
        print(
            f"{r['model']:20} {r['target']:6} {r['macs'] / 1e9:6.2f} {r['parameter_bytes'] / 1e6:9.1f} "
            f"{r['on_chip_bytes'] / 1e6:7.1f} {r['off_chip_bytes'] / 1e6:8.1f} {r['cpu_ms']:6.1f} "
            f"{r['predicted_ms']:9.2f} {r['published_ms']:9.1f} {r['error_pct']:+6.1f}%  "
            f"{'fit' if r['fit'] else 'held-out'}"
        )


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Worst and median absolute error of the fit rows and of the held-out rows."""
    out = {}
    for kind, fit_flag in (("fit", True), ("held_out", False)):
        errors = [abs(r["error_pct"]) for r in rows if r["fit"] is fit_flag]
        if errors:
            out[kind] = {
                "rows": len(errors),
                "max_abs_error_pct": max(errors),
                "median_abs_error_pct": np.median(errors),
            }
    return out


# --- writing the constants into latency.py ---


def literal(value: float) -> str:
    """4 significant digits, as a Python literal a reader can scan: 0.3125, 1.25, 514.3e6, 2.907e9."""
    if abs(value) < 1e4:
        return f"{value:.4g}"
    exponent = 3 * math.floor(math.log10(abs(value)) / 3)
    return f"{value / 10**exponent:.4g}e{exponent}"


def rewrite_constants(source: str, model: CostModel, errors: dict[str, dict[str, float]]) -> str:
    """latency.py's text with FITTED's values and FIT_ERRORS_PCT replaced; its comments are kept."""
    head, found, tail = source.partition("FITTED = CostModel(")
    block, end, rest = tail.partition("\n)\n")
    if not found or not end:
        raise SystemExit(f"{LATENCY_PY}: no `FITTED = CostModel(...)` block to write into")
    for field in MODEL_BOUNDS:
        block = _set(block, rf"\b{field}=", getattr(model, field))
    for target, interface in model.targets.items():
        for field in TARGET_BOUNDS:
            block = _set(block, rf'"{target}": Interface\(.*?\b{field}=', getattr(interface, field))
    lines = [f"    {json.dumps(t)}: {{\n" + "".join(f"        {json.dumps(m)}: {e:.1f},\n" for m, e in by.items())
             + "    },\n" for t, by in errors.items()]  # fmt: skip
    rest, count = re.subn(
        r"^(FIT_ERRORS_PCT: dict\[str, dict\[str, float\]\] = )(\{\}|\{\n.*?\n\})$",
        lambda m: m.group(1) + "{\n" + "".join(lines) + "}",
        rest,
        count=1,
        flags=re.MULTILINE | re.DOTALL,
    )
    if not count:
        raise SystemExit(f"{LATENCY_PY}: no `FIT_ERRORS_PCT: dict[str, dict[str, float]] = ...` to write into")
    return head + found + block + end + rest


def _set(block: str, prefix: str, value: float) -> str:
    block, count = re.subn(rf"({prefix})[^,\s]+", lambda m: m.group(1) + literal(value), block, count=1, flags=re.S)
    if not count:
        raise SystemExit(f"{LATENCY_PY}: FITTED has no {prefix!r} to write into")
    return block


def fitted_errors(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    errors: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["fit"]:
            errors.setdefault(r["target"], {})[r["model"]] = round(r["error_pct"], 1) + 0.0  # no "-0.0"
    return errors


def print_fitted(fitted: dict[str, float], at_bound: list[str], result: Any, loose: int) -> None:
    print("\nfitted on the fit rows only:")
    for name, value in fitted.items():
        print(f"  {name:28} {literal(value)}{'   (at its bound)' if name in at_bound else ''}")
    print(f"  least squares: {result.message} cost {result.cost:.4g}; {loose} of {len(fitted)} directions loose")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the fitted constants into latency.py")
    parser.add_argument("--measured", nargs="*", type=Path, default=[], help="reports of builds on an Edge TPU")
    arguments = parser.parse_args()
    start = time.perf_counter()
    published = load_reference()
    measured, measured_paths = measured_rows(arguments.measured)
    reference = published + measured
    predictions, cpu_ms = analyze_models({**zoo_paths(published), **measured_paths})
    result = fit(reference, predictions, cpu_ms)
    model = to_model(result.x)
    rows = table_rows(model, reference, predictions, cpu_ms)
    print_table(rows)
    names = parameter_names(tuple(model.targets))
    fitted = dict(zip(names, np.exp(result.x).tolist(), strict=True))
    at_bound = [name for name, active in zip(names, result.active_mask, strict=True) if active]
    loose = loose_directions(result)
    print_fitted(fitted, at_bound, result, loose)
    report = summary(rows)
    for kind, s in report.items():
        worst, median = s["max_abs_error_pct"], s["median_abs_error_pct"]
        print(f"{kind}: {s['rows']} rows, |error| max {worst:.1f}%, median {median:.1f}%")
    document = {"command": "python -m benchmarks.edgetpu_fit", "fitted": fitted, "at_bound": at_bound,
                "loose_directions": loose, "summary": report, "rows": rows}  # fmt: skip
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(document, indent=2, default=float) + "\n")
    if arguments.write:
        LATENCY_PY.write_text(rewrite_constants(LATENCY_PY.read_text(), model, fitted_errors(rows)))
        print(f"wrote FITTED and FIT_ERRORS_PCT into {LATENCY_PY}")
    print(f"wrote {RESULT} in {time.perf_counter() - start:.1f} s")
    if report["fit"]["max_abs_error_pct"] > TARGET_ERROR_PCT:
        print(f"MISSED: a fitted row is more than {TARGET_ERROR_PCT:.0f}% off its published figure")


if __name__ == "__main__":
    main()
