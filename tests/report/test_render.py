"""The report of the session's real build: report.json's public keys, the Markdown page, the terminal summary,
and the findings about which step lost accuracy."""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import pytest

from compiler_kit.report import REPORT_JSON, REPORT_MD, SCHEMA_VERSION, terminal_summary
from compiler_kit.report.document import CONVERSION_MIN_COSINE, findings
from compiler_kit.report.render import markdown, verdict

RUNNERS = ("source", "tflite-float", "tflite-int8")
PAIRS = {("source", "tflite-float"), ("source", "tflite-int8"), ("tflite-float", "tflite-int8")}
METRIC_KEYS = {
    "accuracy_reference",
    "accuracy_candidate",
    "accuracy_drop_pp",
    "top1_agreement",
    "cosine",
    "snr_db",
    "max_abs_error",
}
LATENCY_KEYS = {"first_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "runs", "threads"}
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def on_disk(built) -> dict:
    return json.loads((built.build_dir / REPORT_JSON).read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_report_json_on_disk_is_the_report(built, on_disk):
    assert on_disk == json.loads(json.dumps(built.report))
    assert set(on_disk["stage_seconds"]) == {"data", "convert", "quantize", "edgetpu", "verify", "latency", "report"}


@pytest.mark.slow
def test_schema_version_and_verdict(on_disk):
    assert type(on_disk["schema_version"]) is int
    assert on_disk["schema_version"] == SCHEMA_VERSION == 2
    assert type(on_disk["passed"]) is bool
    assert on_disk["passed"] is True
    assert on_disk["passed"] == all(gate["passed"] for gate in on_disk["gates"])


@pytest.mark.slow
def test_artifacts_describe_the_files(built, on_disk):
    artifacts = on_disk["artifacts"]
    assert set(artifacts) == {"float_tflite", "int8_tflite"}
    for key, name in (("float_tflite", "model_float.tflite"), ("int8_tflite", "model_int8.tflite")):
        path = built.build_dir / name
        assert artifacts[key] == {"path": str(path), "sha256": sha256(path), "bytes": path.stat().st_size}
    # Weights at a quarter of the size: the int8 model really is quantized.
    assert artifacts["int8_tflite"]["bytes"] < artifacts["float_tflite"]["bytes"] / 2


@pytest.mark.slow
def test_comparisons_cover_the_three_pairs(on_disk):
    comparisons = on_disk["comparisons"]
    assert len(comparisons) == 3
    assert {(c["reference"], c["candidate"]) for c in comparisons} == PAIRS
    for comparison in comparisons:
        m = comparison["metrics"]
        assert set(m) >= METRIC_KEYS
        assert 0 <= m["accuracy_reference"] <= 1
        assert 0 <= m["accuracy_candidate"] <= 1
        assert 0 <= m["top1_agreement"] <= 1
        assert m["accuracy_drop_pp"] == pytest.approx(100 * (m["accuracy_reference"] - m["accuracy_candidate"]))
        assert m["max_abs_error"] >= 0


@pytest.mark.slow
def test_comparison_numbers_are_plausible(on_disk):
    by_pair = {(c["reference"], c["candidate"]): c["metrics"] for c in on_disk["comparisons"]}
    conversion, quantization = by_pair["source", "tflite-float"], by_pair["source", "tflite-int8"]
    assert conversion["cosine"] >= CONVERSION_MIN_COSINE  # conversion alone is lossless
    assert conversion["snr_db"] > quantization["snr_db"] > 15  # quantization is where the noise comes from
    assert conversion["max_abs_error"] < quantization["max_abs_error"]
    assert quantization["accuracy_reference"] > 0.9  # a trained model, on held-out data
    # Every pair saw the same labels: the source and tflite-float accuracies are consistent across pairs.
    assert conversion["accuracy_reference"] == quantization["accuracy_reference"]
    assert by_pair["tflite-float", "tflite-int8"]["accuracy_reference"] == conversion["accuracy_candidate"]


@pytest.mark.slow
def test_latency_per_runner(on_disk):
    latency = on_disk["latency"]
    assert set(latency) == set(RUNNERS)
    for stats in latency.values():
        assert set(stats) >= LATENCY_KEYS
        assert stats["runs"] == 20  # the test recipe's setting
        assert stats["threads"] == 1
        assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
        assert stats["mean_ms"] > 0
        assert stats["std_ms"] >= 0
        assert stats["first_ms"] > 0


@pytest.mark.slow
def test_gates_entries(on_disk):
    gates = {gate["name"]: gate for gate in on_disk["gates"]}
    assert all(set(gate) == {"name", "threshold", "value", "passed"} for gate in on_disk["gates"])
    assert {name: gate["threshold"] for name, gate in gates.items()} == {
        "max_accuracy_drop_pp": 1.0,
        "min_top1_agreement": 0.97,
        "min_snr_db": 15.0,
        "max_latency_p50_ms[tflite-int8]": 5.0,
    }
    drift = next(
        c["metrics"] for c in on_disk["comparisons"] if c["candidate"] == "tflite-int8" and c["reference"] == "source"
    )
    assert gates["min_snr_db"]["value"] == drift["snr_db"]
    assert gates["min_top1_agreement"]["value"] == drift["top1_agreement"]
    assert gates["max_accuracy_drop_pp"]["value"] == drift["accuracy_drop_pp"]
    assert gates["max_latency_p50_ms[tflite-int8]"]["value"] == on_disk["latency"]["tflite-int8"]["p50_ms"]


@pytest.mark.slow
def test_tools(on_disk):
    tools = on_disk["tools"]
    assert tools["tensorflow"] == importlib.metadata.version("tensorflow")
    assert tools["numpy"] == np.__version__


@pytest.mark.slow
def test_inputs_hash_the_model_recipe_and_data(on_disk, keras_model_path: Path, digits_dir: Path):
    inputs = on_disk["inputs"]
    assert inputs["model_sha256"] == sha256(keras_model_path)
    assert SHA256.match(inputs["recipe_sha256"])
    calibration, verify = inputs["datasets"]["calibration"], inputs["datasets"]["verify"]
    assert SHA256.match(calibration["sha256"])
    assert SHA256.match(verify["sha256"])
    assert calibration["sha256"] != verify["sha256"]
    assert calibration["samples"] == 200
    with np.load(digits_dir / "eval.npz") as data:
        assert verify["samples"] == len(data["y"])
    assert verify["labels"] is True


@pytest.mark.slow
def test_markdown(built):
    page = markdown(built.report)
    assert len(page) < 65_000
    assert page.startswith("# ckit build `digits_keras`: PASSED\n")
    for runner in RUNNERS:
        assert f"| {runner} |" in page
    assert "| source -> tflite-int8 |" in page
    assert "| max_latency_p50_ms[tflite-int8] | 5.000 |" in page
    assert (built.build_dir / REPORT_MD).read_text(encoding="utf-8") == page


@pytest.mark.slow
def test_markdown_of_a_failed_build_says_so(built):
    report = copy.deepcopy(built.report)
    report["gates"][0]["passed"] = False
    report["passed"] = False
    report["findings"] = ["source -> tflite-int8 loses 2.50 accuracy points"]
    page = markdown(report)
    assert verdict(report) == "FAILED"
    assert page.startswith("# ckit build `digits_keras`: FAILED\n")
    assert "| FAIL |" in page
    assert "- source -> tflite-int8 loses 2.50 accuracy points" in page
    assert "FAILED: digits_keras" in terminal_summary(report)


@pytest.mark.slow
def test_terminal_summary(built):
    summary = terminal_summary(built.report)
    assert summary.rstrip().endswith("PASSED: digits_keras")
    assert "FAILED" not in summary
    for runner in RUNNERS:
        assert runner in summary


def comparison(candidate: str, cosine: float, drop: float | None = 0.0, snr_db: float = 30.0) -> dict:
    signal = {"cosine": cosine, "snr_db": snr_db}
    return {
        "reference": "source",
        "candidate": candidate,
        "metrics": {**signal, "accuracy_drop_pp": drop},
        "outputs": {"logits": {"metrics": signal}},
    }


def test_findings_flag_a_lossy_conversion():
    [note] = findings([comparison("tflite-float", 0.99)])
    assert "source -> tflite-float" in note
    assert "NOT lossless" in note
    assert "0.990000" in note


def test_findings_call_a_float_model_moved_by_bias_correction_intended_not_a_converter_fault():
    """The float TFLite model is the bias-corrected graph; the `onnx` runner runs the export as it came."""
    applied = {"name": "bias_correction", "status": "applied", "exact": False}
    moved = [comparison("onnx", 0.99), comparison("tflite-float", 0.99)]
    exported, converted = findings(moved, {"rewrites": [applied]})
    assert "NOT lossless" in exported and "the converter changed the model" in exported
    assert "as intended" in converted and "bias_correction" in converted and "converter" not in converted
    reverted = {**applied, "status": "reverted: changed the outputs"}
    assert "the converter changed the model" in findings(moved, {"rewrites": [reverted]})[1]


def test_a_remedy_a_keras_build_cannot_apply_is_a_finding():
    from compiler_kit.frontends.keras import not_legalized
    from compiler_kit.recipe import Legalize
    from compiler_kit.report.document import legalization_findings

    assert "ignored" not in not_legalized(Legalize())
    section = not_legalized(Legalize(bias_correction=True))
    assert section["enabled"] is False and section["ignored"] == ["legalize.bias_correction"]
    [note] = legalization_findings(section)
    assert note.startswith("legalize.bias_correction does not apply to this model (Keras models convert without")


def test_findings_say_nothing_for_a_lossless_conversion():
    assert findings([comparison("tflite-float", 1.0)]) == []
    assert findings([comparison("tflite-float", CONVERSION_MIN_COSINE)]) == []


def test_findings_do_not_blame_conversion_when_the_error_is_far_below_the_signal():
    """A near-blank map: cosine between two round-off noise vectors is low, but SNR says the error is nothing."""
    assert findings([comparison("tflite-float", 0.83, snr_db=105.0)]) == []


def test_findings_name_the_output_that_changed_in_a_multi_output_model():
    step = comparison("tflite-float", 1.0, snr_db=150.0)
    step["outputs"]["boxes"] = {"metrics": {"cosine": -0.155, "snr_db": -3.0}}
    [note] = findings([step])
    assert "output 'boxes'" in note and "-0.155000" in note and "logits" not in note


def test_degenerate_sample_count_and_speed_findings() -> None:
    from compiler_kit.report.document import degenerate_findings, sample_count_findings, speed_findings

    [note] = degenerate_findings(["heat"], 8)
    assert "'heat'" in note and "all 8" in note
    assert sample_count_findings({"calibration": None, "verify": 500}, {"calibration": 10, "verify": 360}) == [
        "verify.num_samples is 500 but the data has 360 samples: all 360 are used"
    ]
    assert sample_count_findings({"calibration": 100, "verify": 360}, {"calibration": 1000, "verify": 360}) == []
    latency = {"tflite-float": {"p50_ms": 1.0}, "tflite-int8": {"p50_ms": 3.5}}
    [slow] = speed_findings(latency, {"tflite-int8": {"HARD_SWISH": 19, "SOFTMAX": 1}, "tflite-float": {}})
    assert "3.5x slower" in slow and "19 x HARD_SWISH, 1 x SOFTMAX (float model: none)" in slow
    [unexplained] = speed_findings(latency, {"tflite-int8": {}})
    assert "XNNPACK runs every int8 op" in unexplained
    assert speed_findings({**latency, "tflite-int8": {"p50_ms": 1.1}}, {}) == []  # within timing noise
    tiny = {"tflite-float": {"p50_ms": 0.004}, "tflite-int8": {"p50_ms": 0.006}}
    assert speed_findings(tiny, {}) == []  # 1.5x, but 2 microseconds


def test_findings_do_not_blame_conversion_for_quantization_drift():
    assert findings([comparison("tflite-int8", 0.99)]) == []


def test_findings_report_lost_accuracy_only():
    assert findings([comparison("tflite-int8", 0.999, drop=1.5)]) == [
        "source -> tflite-int8 loses 1.50 accuracy points"
    ]
    assert findings([comparison("tflite-int8", 0.999, drop=-1.0)]) == []
    assert findings([comparison("tflite-int8", 0.999, drop=None)]) == []


def test_the_budget_table_caption_and_finding() -> None:
    from compiler_kit.report.document import explanation_findings
    from compiler_kit.report.tables import budget_caption, budget_table

    entry = {"input_db": 200.0, "weights_db": 46.0, "activations_db": 40.8, "combined_db": 39.6, "int8_db": 39.58}
    budget = {
        "reference": "tflite-float",
        "outputs": {"scores": {**entry, "dominant": "activations"}},
        "worst_output": "scores",
        "dominant": "activations",
        "remedy": "calibrate on more samples",
    }
    headers, rows = budget_table({"quantization_budget": budget})
    assert headers[-1] == "dominant" and rows == [["scores", "200.0", "46.0", "40.8", "39.6", "39.6", "activations"]]
    caption = budget_caption({"quantization_budget": budget})
    assert "Dominant: activations (output 'scores'): calibrate on more samples." in caption
    assert explanation_findings(budget, {}) == [] and budget_table({})[1] == []
    broken = {"error": "ValueError: not editable"}
    assert budget_caption({"quantization_budget": broken}) == "No error budget: ValueError: not editable."
    assert explanation_findings(broken, {}) == [
        "the quantization error budget could not be made (ValueError: not editable): please report the model"
    ]


CURVE = {
    "reference": "tflite-float",
    "verify_samples": 32,
    "available": 359,
    "points": [
        {"samples": 4, "snr_db": {"boxes": 20.04, "scores": 30.0}},
        {"samples": 8, "snr_db": {"boxes": 25.0, "scores": 30.5}},
        {"samples": 16, "snr_db": {"boxes": 31.96, "scores": 30.1}},
    ],
    "seconds": {"quantize": 0.7, "run": 0.1},
}


def test_the_calibration_curve_is_one_line_of_the_budget_section_with_or_without_a_budget() -> None:
    from compiler_kit.report.document import explanation_findings
    from compiler_kit.report.tables import budget_section, curve_line

    line = curve_line({"calibration_curve": CURVE})
    assert line == (
        "Calibration size: the int8 model calibrated on 4 / 8 / 16 of the 16 calibration samples (the data has 359), "
        "SNR against tflite-float on 32 verification samples: 20.0 / 25.0 / 32.0 dB ('boxes'); 30.0 / 30.5 / 30.1 "
        "dB ('scores')."
    )
    every = curve_line({"calibration_curve": {**CURVE, "available": 16}})
    assert "of the 16 calibration samples, SNR against" in every  # the data has no more: not said again
    section = budget_section({"calibration_curve": CURVE})  # a curve without a budget still has its section
    assert section is not None and section[0] == [line] and section[1][1] == []
    assert budget_section({}) is None  # neither: no section
    one_point = {"calibration_curve": {**CURVE, "points": CURVE["points"][-1:]}}  # one calibration sample: no curve
    assert curve_line(one_point) == "" and budget_section(one_point) is None
    broken, skipped = {"error": "ValueError: no ranges"}, {"skipped": "too many samples"}
    assert curve_line({"calibration_curve": broken}) == "No calibration curve: ValueError: no ranges."
    assert curve_line({"calibration_curve": skipped}) == "No calibration curve: too many samples."
    assert explanation_findings({}, broken) == [
        "the calibration curve could not be made (ValueError: no ranges): please report the model"
    ]
    assert explanation_findings({}, skipped) == []  # skipped on purpose: said in the section, no finding


@pytest.mark.slow
def test_the_built_report_has_no_findings(built):
    assert built.report["findings"] == []


def test_stages_line_names_the_time_per_stage_and_what_the_cache_supplied() -> None:
    from compiler_kit.report.render import stages_line

    report = {
        "stage_seconds": {"data": 0.04, "convert": 0.01, "quantize": 2.5},
        "cache": {"stages": {"convert": {"status": "hit"}, "quantize": {"status": "corrupt"}}},
    }
    assert stages_line(report) == "Stages: data 0.0 s, convert 0.0 s, quantize 2.5 s (reused from the cache: convert)"
    assert stages_line({}) == ""


def test_edgetpu_latency_is_labelled_a_prediction_and_sits_beside_a_device_measurement() -> None:
    from compiler_kit.report.tables import edgetpu_latency_caption, edgetpu_latency_table

    parts = {"overhead_ms": 0.75, "tpu_compute_ms": 1.6, "parameter_stream_ms": 0.0, "io_ms": 0.29, "cpu_ms": 0.0}
    latency = {
        "ideal_floor_ms": 0.15,
        "targets": {"usb": {**parts, "predicted_ms": 2.64}},
        "loo_errors_pct": {"usb": {"rows": 14, "median": 8.4, "worst": 31.2}},
        "held_out_errors_pct": {"usb": {"rows": 15, "median": 25.7, "worst": 50.1}},
        "cpu_part_here": {"ms": 0.42, "threads": 1, "unmeasured_ops": [], "error": None},
        "measured_p50_ms": 2.9,
    }
    caption = edgetpu_latency_caption(latency)
    assert "PREDICTED" in caption and "leave-one-model-out |error| on Coral's published figures" in caption
    assert "usb median 8%, worst 31% (14 rows); on published figures of models no fit saw: usb median 26%" in caption
    assert "models no fit saw" not in edgetpu_latency_caption({**latency, "held_out_errors_pct": {}})
    assert "ideal floor, every MAC at 4 TOPS: 0.15 ms" in caption
    assert "timed on this machine with LiteRT (not in the prediction): 0.42 ms" in caption
    assert "Measured on an Edge TPU: p50 2.9 ms" in caption
    headers, rows = edgetpu_latency_table(latency)
    assert headers[:2] == ["target (PREDICTED)", "total ms"]
    assert rows == [["usb", "2.640", "0.750", "1.600", "0.000", "0.290", "0.000"]]
    assert "Measured" not in edgetpu_latency_caption({**latency, "measured_p50_ms": None})


@pytest.mark.slow
def test_a_keras_build_reports_that_no_legalization_applies_and_shows_no_section(on_disk: dict) -> None:
    assert on_disk["legalization"]["enabled"] is False and "Keras" in on_disk["legalization"]["reason"]
    assert "## Edge TPU legalization" not in markdown(on_disk)


@pytest.mark.slow
def test_legalization_rewrites_are_a_section_of_the_page(on_disk: dict) -> None:
    report = copy.deepcopy(on_disk)
    row = {"name": "maxpool_padding", "summary": "", "status": "applied", "count": 2, "max_relative_error": 3e-8}
    report["legalization"] = {"enabled": True, "rewrites": [{**row, "nodes": ["/maxpool/MaxPool", "/pool2"]}]}
    page = markdown(report)
    assert "## Edge TPU legalization" in page
    assert "| maxpool_padding | 2 | applied | 3.0e-08 | /maxpool/MaxPool, /pool2 |" in page
