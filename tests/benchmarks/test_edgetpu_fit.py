"""benchmarks/edgetpu_fit.py: the reference rows, the residuals, the two-step fit, leave-one-model-out and the rewrite
of latency.py (pure logic: hand-made predictions, no model is built or timed)."""

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
from benchmarks.measure import Refused
from compiler_kit.edgetpu.analysis import EdgeTpuPrediction
from compiler_kit.edgetpu.latency import (
    FITTED,
    HELD_OUT_ERRORS_PCT,
    LOO_ERRORS_PCT,
    TARGETS,
    CostModel,
    estimate,
    features,
    whole_model_on_cpu,
)
from compiler_kit.edgetpu.tflite_graph import Op, Tensor

FACTS = Path("/work/shared/edgetpu/FACTS.md")
COLUMNS = {"cpu:desktop": 1, "usb": 2, "cpu:cortex-a53": 3, "devboard": 4}  # of FACTS.md's table


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


def test_facts_md_rows_are_among_the_page_rows() -> None:
    page = {(r.model, r.input_size, r.target): r.published_ms for r in fit.load_reference() if "coral.ai" in r.source}
    assert facts_rows().items() <= page.items()


def test_every_row_is_on_a_known_target_with_a_zoo_model_at_its_size_and_held_out_models_have_no_fit_row() -> None:
    rows = fit.load_reference()
    assert all(r.source and r.published_ms > 0 for r in rows)
    held_out = {r.model for r in rows if not r.fit}
    before_v3 = {"EfficientNet-EdgeTpu-S", "EfficientNet-EdgeTpu-M"}  # chosen before v3 of the form was designed
    after_v3 = {
        "MobileNet v1 0.25",
        "Inception v3",
        "DeepLab V3 0.5",
        "EdgeTPU-DeepLab-slim",
        "BodyPix 512x512",
        "PoseNet 353x481",
        "PoseNet 481x641",
        "PoseNet 721x1281",
        "MoveNet Lightning",
        "SSD MobileNet v1",
        "SSD MobileNet v2",
    }  # added after v3 was fitted
    assert held_out == before_v3 | after_v3
    assert not any(r.fit for r in rows if r.model in held_out)
    assert all("HELD OUT" in r.source for r in rows if not r.fit)
    assert {r.target for r in rows} == {"usb", "devboard", "cpu:desktop", "cpu:cortex-a53"}
    assert all(ZOO[r.model].input_size == r.input_size for r in rows)
    excluded = json.loads(fit.REFERENCE.read_text())["excluded"]
    assert all(reason for reason in excluded.values())


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


FOUND = {
    name: fit.ModelFeatures(features(prediction), whole_model_on_cpu(prediction))
    for name, prediction in PREDICTIONS.items()
}


def test_residuals_are_the_log_ratio_of_predicted_to_published() -> None:
    predicted = estimate(PREDICTIONS["compute"], "usb").total_ms
    rows = [reference("compute", "usb", predicted), reference("compute", "usb", predicted / 2)]
    np.testing.assert_allclose(fit.residuals(FITTED, rows, FOUND), [0.0, math.log(2)], atol=1e-12)


def test_a_cpu_only_row_is_the_whole_model_on_that_host() -> None:
    host = FITTED.hosts["cortex-a53"]
    expected = PREDICTIONS["compute"].macs / host.macs_per_second * 1e3
    assert fit.predicted_ms(FITTED, reference("compute", "cpu:cortex-a53", 1.0), FOUND) > expected > 0


def test_constants_by_name_round_trip_and_start_within_their_bounds() -> None:
    names = [*fit.host_rate_names("desktop"), *fit.edgetpu_names(fit.START)]
    values = {name: fit.get_constant(fit.START, name) * 1.5 for name in names}
    model = fit.set_constants(fit.START, values)
    assert all(fit.get_constant(model, name) == pytest.approx(value) for name, value in values.items())
    for name in [*fit.host_rate_names("cortex-a53"), *names]:
        low, high = fit.bounds_of(name)
        assert low < fit.get_constant(fit.START, name) < high
    assert fit.bounds_of("interfaces.usb.bytes_per_second")[1] <= 500e6  # USB 3.0's payload after 8b/10b


def synthetic_rows(truth: CostModel) -> list[fit.Reference]:
    rows = [
        reference(model, target, estimate(prediction, target, model=truth).total_ms)
        for model, prediction in PREDICTIONS.items()
        for target in ("usb", "devboard")
    ]
    return rows + [
        reference(model, f"cpu:{host}", fit.predicted_ms(truth, reference(model, f"cpu:{host}", 1.0), FOUND))
        for model in PREDICTIONS
        for host in truth.hosts
    ]


def test_the_fit_recovers_figures_a_cost_model_made_and_ignores_rows_not_marked_fit() -> None:
    truth = fit.set_constants(fit.START, {"conv_utilisation": 0.3, "interfaces.usb.bytes_per_second": 300e6})
    rows = synthetic_rows(truth)
    absurd = [replace(row, published_ms=row.published_ms * 100, fit=False) for row in rows]
    model = fit.fit(rows + absurd, FOUND)
    assert np.abs(fit.residuals(model, rows, FOUND)).max() < 1e-3
    assert model.conv_utilisation == pytest.approx(0.3, rel=1e-2)


def test_a_row_below_its_stream_floor_is_predicted_but_never_fitted() -> None:
    # 20 MB of parameters over USB 3.0's 500 MB/s ceiling take at least 40 ms, whatever the constants
    assert fit.stream_floor_ms(reference("streaming", "usb", 1.0), FOUND) == pytest.approx(40.0)
    below, above = reference("streaming", "usb", 39.0), reference("streaming", "usb", 41.0)
    assert not fit.reachable(below, FOUND) and fit.reachable(above, FOUND)
    assert fit.reachable(reference("streaming", "cpu:desktop", 1.0), FOUND)  # no link on a CPU-only row
    truth = fit.set_constants(fit.START, {"conv_utilisation": 0.3, "interfaces.usb.bytes_per_second": 300e6})
    rows = synthetic_rows(truth)
    model = fit.fit([*rows, replace(below, published_ms=1.0)], FOUND)  # 1 ms: no constants can reach it
    assert np.abs(fit.residuals(model, rows, FOUND)).max() < 1e-3


def test_leave_one_model_out_never_fits_on_the_rows_it_predicts() -> None:
    seen: list[set[str]] = []

    def fitter(rows: list[fit.Reference], found: dict) -> CostModel:
        seen.append({row.model for row in rows})
        return FITTED

    rows = synthetic_rows(fit.START)
    predicted = fit.leave_one_model_out(rows, FOUND, fitter)
    assert seen == [set(PREDICTIONS) - {name} for name in PREDICTIONS]
    assert set(predicted) == {(row.model, row.target, row.source) for row in rows}


def test_a_held_out_model_is_predicted_by_one_fit_on_the_fit_rows() -> None:
    seen: list[list[fit.Reference]] = []

    def fitter(rows: list[fit.Reference], found: dict) -> CostModel:
        seen.append(rows)
        return FITTED

    rows = synthetic_rows(fit.START)
    held = [replace(row, model=name, fit=False) for row in rows[:2] for name in ("held a", "held b")]
    found = {**FOUND, "held a": FOUND[rows[0].model], "held b": FOUND[rows[0].model]}
    predicted = fit.leave_one_model_out(rows + held, found, fitter)
    assert len(seen) == len(PREDICTIONS) + 1  # one fit per fit model, one for every held-out model
    assert {(row.model, row.target, row.source) for row in held} <= set(predicted)


def test_the_summary_is_median_and_worst_absolute_error_per_target() -> None:
    table = [{"target": "usb", "loo_error_pct": e} for e in (-30.0, 5.0, 10.0)] + [
        {"target": "devboard", "loo_error_pct": 2.0}
    ]
    assert fit.summary(table) == {
        "usb": {"rows": 3, "median": 10.0, "worst": 30.0},
        "devboard": {"rows": 1, "median": 2.0, "worst": 2.0},
    }


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
    names = [*fit.host_rate_names("desktop"), *fit.host_rate_names("cortex-a53"), *fit.edgetpu_names(FITTED)]
    model = fit.set_constants(FITTED, {name: fit.get_constant(FITTED, name) * 1.5 for name in names})
    loo = {"usb": {"rows": 20, "median": 8.5, "worst": 31.0}, "devboard": {"rows": 20, "median": 9.0, "worst": 12.0}}
    held = {"usb": {"rows": 15, "median": 25.7, "worst": 50.1}}
    rewritten = load_module(fit.rewrite_constants(source, model, loo, held), tmp_path / "latency.py")
    assert loo == rewritten.LOO_ERRORS_PCT and held == rewritten.HELD_OUT_ERRORS_PCT
    for name in names:
        assert fit.get_constant(rewritten.FITTED, name) == pytest.approx(fit.get_constant(model, name), rel=1e-3)
    assert rewritten.FITTED.hosts["desktop"].name == FITTED.hosts["desktop"].name
    assert rewritten.TARGETS == TARGETS


def test_rewriting_latency_py_with_its_own_values_changes_nothing() -> None:
    source = fit.LATENCY_PY.read_text()
    assert fit.rewrite_constants(source, FITTED, LOO_ERRORS_PCT, HELD_OUT_ERRORS_PCT) == source


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
    _, found = fit.analyze_models(paths)
    assert found["digits_keras (measured)"].edgetpu.cpu_elements == 0  # every op maps
    assert fit.residuals(FITTED, rows, found).shape == (1,)


@pytest.mark.slow
def test_a_report_without_a_device_measurement_is_refused(built) -> None:
    with pytest.raises(Refused, match="no Edge TPU measurement"):
        fit.measured_rows([built.build_dir / "report.json"])
