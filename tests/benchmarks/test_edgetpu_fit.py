"""benchmarks/edgetpu_fit.py: the reference rows, the residuals, the fit and the rewrite of latency.py (pure logic:
hand-made predictions, no model is built or timed)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import edgetpu_fit as fit
from benchmarks.edgetpu_zoo import ZOO
from compiler_kit.edgetpu.analysis import EdgeTpuPrediction
from compiler_kit.edgetpu.latency import FIT_ERRORS_PCT, FITTED, CostModel, estimate
from compiler_kit.edgetpu.tflite_graph import Op, Tensor

FACTS = Path("/work/shared/edgetpu/FACTS.md")
COLUMNS = {"usb": 2, "pcie": 4}  # of FACTS.md's table: model | desktop CPU | + USB Accelerator | embedded | Dev Board


def facts_rows() -> dict[tuple[str, int, str], float]:
    """(model, input size, target) -> ms from FACTS.md's 'Reference latencies' table."""
    if not FACTS.exists():
        pytest.skip(f"{FACTS} is not on this machine")
    section = FACTS.read_text().split("## Reference latencies", 1)[1]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if match := re.fullmatch(r"(.+) (\d+)", cells[0]):
            for target, column in COLUMNS.items():
                rows[(match[1], int(match[2]), target)] = float(cells[column])
    return rows


def test_the_fit_rows_are_exactly_the_eight_of_facts_md() -> None:
    published = {(r.model, r.input_size, r.target): r.published_ms for r in fit.load_reference() if r.fit}
    assert len(published) == 8
    assert published == facts_rows()


def test_held_out_rows_are_other_models_each_built_by_the_zoo_at_its_size() -> None:
    rows = fit.load_reference()
    fitted_models = {r.model for r in rows if r.fit}
    held_out = [r for r in rows if not r.fit]
    assert held_out
    assert not fitted_models & {r.model for r in held_out}
    assert all(ZOO[r.model].input_size == r.input_size and r.target in FITTED.targets for r in rows)
    assert all(r.source and r.published_ms > 0 for r in rows)


def tensor(index: int, shape: tuple[int, ...], constant: bool = False) -> Tensor:
    nbytes = math.prod(shape) if constant else 0
    return Tensor(index, index + 1 if constant else 0, f"t{index}", "int8", shape, constant, nbytes, None)


def conv_prediction(side: int, off_chip_bytes: int = 0) -> EdgeTpuPrediction:
    """One 1x1 convolution, 64 -> 64 channels on a side x side map, streaming `off_chip_bytes` of parameters."""
    weights = tensor(1, (64, 1, 1, 64), constant=True)
    op = Op(0, "CONV_2D", 1, [tensor(0, (1, side, side, 64)), weights], [tensor(2, (1, side, side, 64))], None)
    op.macs = side * side * 64 * 64
    return EdgeTpuPrediction(Path(f"conv{side}.tflite"), [op], off_chip_bytes=off_chip_bytes)


# Synthetic "models" spanning what the constants act on: compute, and parameters streamed.
PREDICTIONS = {
    "small": conv_prediction(8),
    "compute": conv_prediction(256),
    "streaming": conv_prediction(8, off_chip_bytes=20_000_000),
    "both": conv_prediction(128, off_chip_bytes=40_000_000),
}


def reference(model: str, target: str, published_ms: float, is_fit: bool = True) -> fit.Reference:
    return fit.Reference(model, 224, target, published_ms, is_fit, "test")


def test_residuals_are_the_log_ratio_of_predicted_to_published() -> None:
    predicted = estimate(PREDICTIONS["compute"], "usb").total_ms
    rows = [reference("compute", "usb", predicted), reference("compute", "usb", predicted / 2)]
    residuals = fit.residuals(fit.to_vector(FITTED), rows, PREDICTIONS, {})
    np.testing.assert_allclose(residuals, [0.0, math.log(2)], atol=1e-12)


def test_the_residuals_include_the_measured_cpu_part() -> None:
    published = estimate(PREDICTIONS["small"], "pcie").total_ms + 5.0
    rows = [reference("small", "pcie", published)]
    assert fit.residuals(fit.to_vector(FITTED), rows, PREDICTIONS, {"small": 5.0}) == pytest.approx([0.0])


def test_vector_and_cost_model_round_trip() -> None:
    model = fit.to_model(fit.to_vector(FITTED))
    np.testing.assert_allclose(fit.to_vector(model), fit.to_vector(FITTED))
    assert model.targets.keys() == FITTED.targets.keys()
    assert len(fit.parameter_names(tuple(FITTED.targets))) == len(fit.to_vector(FITTED))


def test_bounds_are_physical_and_hold_the_start() -> None:
    low, high = np.exp(fit.log_bounds(tuple(fit.START.targets)))
    names = fit.parameter_names(tuple(fit.START.targets))
    start = np.exp(fit.to_vector(fit.START))
    assert np.all((low < start) & (start < high))
    assert all(high[i] <= 1.0 for i, name in enumerate(names) if name.endswith("utilisation"))
    assert all(high[i] <= 5e9 / 8 for i, name in enumerate(names) if name.endswith("bytes_per_second"))


def synthetic_rows(truth: CostModel) -> list[fit.Reference]:
    return [
        reference(model, target, estimate(prediction, target, model=truth).total_ms)
        for model, prediction in PREDICTIONS.items()
        for target in truth.targets
    ]


def test_the_fit_recovers_figures_a_cost_model_made_and_ignores_held_out_rows() -> None:
    truth = replace(fit.START, conv_utilisation=0.3)
    truth = replace(truth, targets={t: replace(i, bytes_per_second=300e6) for t, i in truth.targets.items()})
    rows = synthetic_rows(truth)
    absurd = [replace(row, published_ms=row.published_ms * 100, fit=False) for row in rows]
    result = fit.fit(rows + absurd, PREDICTIONS, {})
    assert np.abs(fit.residuals(result.x, rows, PREDICTIONS, {})).max() < 1e-3
    assert fit.to_model(result.x).conv_utilisation == pytest.approx(0.3, rel=1e-2)


def test_literal_keeps_four_significant_digits_in_readable_python() -> None:
    assert [fit.literal(v) for v in (0.57894, 0.02239, 1.0, 514_312_345.0, 2_906_700_000.0)] == [
        "0.5789",
        "0.02239",
        "1",
        "514.3e6",
        "2.907e9",
    ]


def load_module(source: str, path: Path) -> Any:
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("rewritten_latency", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_rewriting_latency_py_sets_the_constants_and_keeps_the_rest(tmp_path: Path) -> None:
    source = fit.LATENCY_PY.read_text()
    model = fit.to_model(fit.to_vector(FITTED) + np.log(1.5))
    errors = {"usb": {"MobileNet v1": 1.5, "Inception v4": -20.0}, "pcie": {"MobileNet v1": -0.5}}
    rewritten = load_module(fit.rewrite_constants(source, model, errors), tmp_path / "latency.py")
    written_errors = rewritten.FIT_ERRORS_PCT
    assert written_errors == errors
    np.testing.assert_allclose(fit.to_vector(rewritten.FITTED), fit.to_vector(model), atol=1e-3)
    assert rewritten.FITTED.targets["usb"].name == FITTED.targets["usb"].name


def test_rewriting_latency_py_with_its_own_values_changes_nothing() -> None:
    source = fit.LATENCY_PY.read_text()
    assert fit.rewrite_constants(source, FITTED, FIT_ERRORS_PCT) == source


@pytest.mark.slow
def test_a_report_measured_on_an_edge_tpu_becomes_a_fit_row_with_its_own_model(built, tmp_path: Path) -> None:
    report = json.loads((built.build_dir / "report.json").read_text())
    report["edgetpu"]["latency"]["measured_p50_ms"] = 1.9  # as a build with a USB Accelerator attached writes it
    report["runners"]["edgetpu"] = {"device": "usb:0"}
    measured = tmp_path / "report.json"
    measured.write_text(json.dumps(report))
    rows, paths = fit.measured_rows([measured])
    assert [(r.model, r.target, r.published_ms, r.fit) for r in rows] == [("digits_keras (measured)", "usb", 1.9, True)]
    assert paths == {"digits_keras (measured)": built.build_dir / "model_int8.tflite"}
    predictions, cpu_ms = fit.analyze_models(paths)
    assert cpu_ms == {}  # every op maps
    assert fit.residuals(fit.to_vector(FITTED), rows, predictions, cpu_ms).shape == (1,)


@pytest.mark.slow
def test_a_report_without_a_device_measurement_is_refused(built) -> None:
    with pytest.raises(SystemExit, match="no Edge TPU measurement"):
        fit.measured_rows([built.build_dir / "report.json"])
