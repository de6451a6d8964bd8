"""Gates: max_/min_ limits on the source -> tflite-int8 drift and on each runner's median latency."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from compiler_kit.edgetpu.latency import TARGETS
from compiler_kit.gates import GateResult, drift_comparison, evaluate, needs_labels
from compiler_kit.recipe import Gates

DRIFT = {"accuracy_drop_pp": 0.5, "top1_agreement": 0.98, "snr_db": 20.0, "cosine": 0.999}


def judge(gates: Gates, drift=None, latency=None) -> dict[str, GateResult]:
    results = evaluate(gates, DRIFT if drift is None else drift, latency or {})
    by_name = {result.name: result for result in results}
    assert len(by_name) == len(results)
    return by_name


@pytest.mark.parametrize(
    ("value", "passed"), [(0.0, True), (-3.0, True), (0.99, True), (1.0, True), (1.01, False), (25.0, False)]
)
def test_max_gate_passes_at_and_below_the_threshold(value, passed):
    result = judge(Gates(max_accuracy_drop_pp=1.0), {"accuracy_drop_pp": value})["max_accuracy_drop_pp"]
    assert result == GateResult("max_accuracy_drop_pp", 1.0, value, passed)


@pytest.mark.parametrize(("value", "passed"), [(15.0, True), (14.999, False), (15.001, True), (-200.0, False)])
def test_min_gate_passes_at_and_above_the_threshold(value, passed):
    result = judge(Gates(min_snr_db=15), {"snr_db": value})["min_snr_db"]
    assert (result.threshold, result.value, result.passed) == (15.0, value, passed)


@pytest.mark.parametrize(("value", "passed"), [(0.97, True), (0.969, False), (1.0, True)])
def test_min_top1_agreement(value, passed):
    assert judge(Gates(min_top1_agreement=0.97), {"top1_agreement": value})["min_top1_agreement"].passed is passed


@pytest.mark.parametrize(("value", "passed"), [(0.9999, True), (0.9998, False)])
def test_min_cosine(value, passed):
    assert judge(Gates(min_cosine=0.9999), {"cosine": value})["min_cosine"].passed is passed


def test_a_none_value_fails():
    # Accuracy without labels is None: an unmeasured number never passes a gate.
    result = judge(Gates(max_accuracy_drop_pp=1.0), {"accuracy_drop_pp": None})["max_accuracy_drop_pp"]
    assert result.value is None
    assert result.passed is False


def test_a_missing_metric_fails():
    result = judge(Gates(min_snr_db=15), {})["min_snr_db"]
    assert (result.value, result.passed) == (None, False)


def test_only_the_gates_set_in_the_recipe_are_judged():
    assert evaluate(Gates(), DRIFT, {"tflite-int8": 1.0}) == []
    results = judge(Gates(min_cosine=0.99, max_accuracy_drop_pp=1.0), DRIFT)
    assert set(results) == {"min_cosine", "max_accuracy_drop_pp"}
    assert results["min_cosine"].value == 0.999
    assert results["max_accuracy_drop_pp"].value == 0.5


def test_every_drift_gate_together():
    gates = Gates(max_accuracy_drop_pp=1.0, min_top1_agreement=0.99, min_snr_db=15, min_cosine=0.99)
    results = judge(gates, DRIFT)
    assert {name: result.passed for name, result in results.items()} == {
        "max_accuracy_drop_pp": True,
        "min_top1_agreement": False,  # 0.98 < 0.99
        "min_snr_db": True,
        "min_cosine": True,
    }


def test_latency_gates_judge_each_named_runner():
    gates = Gates(max_latency_p50_ms={"tflite-int8": 5.0, "source": 2.0})
    latency = {"source": 2.5, "tflite-float": 100.0, "tflite-int8": 5.0}
    results = judge(gates, DRIFT, latency)
    assert set(results) == {"max_latency_p50_ms[tflite-int8]", "max_latency_p50_ms[source]"}
    assert results["max_latency_p50_ms[tflite-int8]"] == GateResult("max_latency_p50_ms[tflite-int8]", 5.0, 5.0, True)
    assert results["max_latency_p50_ms[source]"] == GateResult("max_latency_p50_ms[source]", 2.0, 2.5, False)


def test_latency_gate_slightly_over_fails():
    results = judge(Gates(max_latency_p50_ms={"tflite-int8": 5.0}), DRIFT, {"tflite-int8": 5.0001})
    assert results["max_latency_p50_ms[tflite-int8]"].passed is False


def test_latency_gate_on_an_unmeasured_runner_fails():
    results = judge(Gates(max_latency_p50_ms={"tflite-float": 5.0}), DRIFT, {"tflite-int8": 1.0})
    assert results["max_latency_p50_ms[tflite-float]"].value is None
    assert results["max_latency_p50_ms[tflite-float]"].passed is False


def test_gate_result_as_dict():
    result = GateResult("min_snr_db", 15.0, 20.0, True)
    assert result.as_dict() == {"name": "min_snr_db", "threshold": 15.0, "value": 20.0, "passed": True}


def test_needs_labels_lists_only_accuracy_gates_that_are_set():
    assert needs_labels(Gates()) == []
    assert needs_labels(Gates(min_cosine=0.99, min_snr_db=10, max_latency_p50_ms={"source": 1.0})) == []
    assert needs_labels(Gates(max_accuracy_drop_pp=1.0, min_cosine=0.99)) == ["max_accuracy_drop_pp"]
    assert needs_labels(Gates(max_accuracy_drop_pp=0.0)) == ["max_accuracy_drop_pp"]


def test_predicted_edgetpu_latency_is_gated_per_target_and_missing_predictions_fail():
    gates = Gates(max_predicted_edgetpu_ms={"usb": 3.0, "pcie": 3.0})
    results = evaluate(gates, DRIFT, {}, None, {"usb": 2.5, "pcie": 3.5})
    assert [(r.name, r.passed) for r in results] == [
        ("max_predicted_edgetpu_ms[usb]", True),
        ("max_predicted_edgetpu_ms[pcie]", False),
    ]
    # The Edge TPU stage off: no prediction, and a gate on it cannot pass.
    assert not evaluate(gates, DRIFT, {})[0].passed


def test_drift_gates_judge_each_device_runner_too():
    gates = Gates(min_snr_db=15, max_off_chip_bytes=0)
    devices = {"device:pi": {"snr_db": 40.0}, "device:mendel": {"snr_db": 0.0}}
    results = {r.name: r for r in evaluate(gates, {**DRIFT, "off_chip_bytes": 0}, {}, devices=devices)}
    assert results["min_snr_db[device:pi]"].passed and not results["min_snr_db[device:mendel]"].passed
    assert not any(name.startswith("max_off_chip_bytes[") for name in results)  # a device has no Edge TPU figures


def test_the_dev_board_is_a_target_of_its_own_in_the_recipe_and_the_gates():
    gates = Gates(max_predicted_edgetpu_ms={"devboard": 10.0})
    results = evaluate(gates, DRIFT, {}, None, {"usb": 2.5, "devboard": 12.0, "pcie": 2.6})
    assert [(r.name, r.passed) for r in results] == [("max_predicted_edgetpu_ms[devboard]", False)]
    assert set(TARGETS) == {"usb", "devboard", "pcie"}  # what the recipe accepts is what the cost model predicts
    with pytest.raises(ValidationError):
        Gates(max_predicted_edgetpu_ms={"coral-mini": 1.0})


def test_the_drift_comparison_is_source_to_int8_and_empty_when_a_report_has_none() -> None:
    comparisons = [
        {"reference": "source", "candidate": "tflite-float", "metrics": {"snr_db": 60.0}},
        {"reference": "tflite-float", "candidate": "tflite-int8", "metrics": {"snr_db": 30.0}},
        {"reference": "source", "candidate": "tflite-int8", "metrics": {"snr_db": 29.0}},
    ]
    assert drift_comparison(comparisons)["metrics"] == {"snr_db": 29.0}
    assert drift_comparison(comparisons[:2]) == {}
