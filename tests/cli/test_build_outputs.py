"""Verification by output name, end to end: a two-head ONNX model whose heads onnx2tf reorders verifies lossless per
output at every step, each head judged by its task; a model whose output ignores its input is flagged as degenerate;
a clamped num_samples is a warning; recipe names that match no output or metric are bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.cli.test_build import assert_bad_input, ckit
from tests.conftest import random_splits

pytestmark = pytest.mark.slow
SHAPE = (1, 3, 8, 8)


def two_heads(path: Path, blind: bool = False) -> Path:
    """`logits` (1, 4) first and `heat` (1, 2, 8, 8) second in the graph's outputs; onnx2tf's SavedModel serves heat
    first. `blind`: every input is multiplied by zero first, so both heads are constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w_logits"),
        numpy_helper.from_array(rng.normal(size=(2, 3, 1, 1)).astype(np.float32), "w_heat"),
        numpy_helper.from_array(rng.normal(size=(2,)).astype(np.float32), "b_heat"),
        numpy_helper.from_array(np.array(0.0 if blind else 1.0, np.float32), "gain"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "gain"], ["xg"]),
        helper.make_node("Conv", ["xg", "w_heat", "b_heat"], ["heat_raw"]),
        helper.make_node("Sigmoid", ["heat_raw"], ["heat"]),
        helper.make_node("Conv", ["xg", "w_logits"], ["features"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4]),
        helper.make_tensor_value_info("heat", TensorProto.FLOAT, [1, 2, 8, 8]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))
    graph = helper.make_graph(nodes, "two_heads", [x], outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 10  # onnxruntime 1.23 reads IR <= 10
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return random_splits(tmp_path_factory.mktemp("two-heads-data"), SHAPE, {"calibration": 32, "eval": 12}, seed=1)


def write_recipe(folder: Path, model: Path, data: dict[str, Path], **sections: Any) -> Path:
    recipe = {
        "name": "two_heads",
        "source": {"framework": "onnx", "path": str(model)},
        "inputs": [{"name": "x", "shape": list(SHAPE), "layout": "NCHW"}],
        "calibration": {"data": {"path": str(data["calibration"])}},
        "verify": {
            "data": {"path": str(data["eval"])},
            "latency": {"warmup": 1, "runs": 3},
            **sections.pop("verify", {}),
        },
        "output": {"dir": str(folder / "build")},
        **sections,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def built(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("two-heads")
    recipe = write_recipe(
        folder,
        two_heads(folder / "two.onnx"),
        data,
        verify={"task": {"heat": {"kind": "map", "threshold": 0.5}}},
        gates={"outputs": {"heat": {"min_iou": 0.5}, "logits": {"min_top1_agreement": 0.5}}},
    )
    result = ckit("build", str(recipe))
    return result, json.loads((folder / "build" / "report.json").read_text())


def test_the_reordered_heads_verify_lossless_per_output_at_every_conversion_step(built) -> None:
    result, report = built
    assert result.exit_code == 0, result.output
    assert report["schema_version"] == 2
    steps = {(c["reference"], c["candidate"]): c for c in report["comparisons"]}
    for step in (("source", "tflite-float"),):
        outputs = steps[step]["outputs"]
        assert list(outputs) == ["logits", "heat"]  # the source model's order and names
        for name, entry in outputs.items():
            assert entry["metrics"]["cosine"] > 0.9999, (step, name, entry["metrics"])
            assert entry["metrics"]["snr_db"] > 60, (step, name)
    assert not [note for note in report["findings"] if "NOT lossless" in note]
    assert report["layout"]["outputs"] == {"logits": None, "heat": [0, 2, 3, 1]}


def test_each_head_is_judged_by_its_task_and_gated_by_name(built) -> None:
    _, report = built
    assert report["tasks"]["logits"] == {"task": "classification", "inferred": True, "labels": False}
    assert report["tasks"]["heat"] == {"task": "map", "inferred": False, "labels": False}
    drift = next(c for c in report["comparisons"] if c["candidate"] == "tflite-int8" and c["reference"] == "source")
    heat = drift["outputs"]["heat"]
    assert heat["task"] == "map" and 0.5 <= heat["metrics"]["iou"] <= 1.0
    assert heat["per_sample"]["metric"] == "iou" and len(heat["per_sample"]["worst"]) == 5
    assert heat["per_sample"]["worst"][0]["sample"].startswith("eval.npz[")
    # The aggregate keeps schema 1's keys: the worst SNR over the heads, the classifier's agreement.
    outputs = drift["outputs"]
    assert drift["metrics"]["snr_db"] == min(entry["metrics"]["snr_db"] for entry in outputs.values())
    assert drift["metrics"]["top1_agreement"] == outputs["logits"]["metrics"]["top1_agreement"]
    gates = {gate["name"]: gate for gate in report["gates"]}
    assert gates["outputs[heat].min_iou"]["value"] == heat["metrics"]["iou"]
    assert gates["outputs[logits].min_top1_agreement"]["passed"]


def test_the_markdown_shows_each_output_and_its_worst_samples(built) -> None:
    _, report = built
    markdown = (Path(report["artifacts"]["int8_tflite"]["path"]).parent / "report.md").read_text()
    assert "### Outputs by task" in markdown
    assert "| heat | map |" in markdown and "| logits | classification (inferred) |" in markdown
    assert "eval.npz[" in markdown


def test_a_blind_model_is_flagged_degenerate_and_a_clamped_sample_count_warned(data, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, two_heads(tmp_path / "blind.onnx", blind=True), data, verify={"num_samples": 50})
    result = ckit("build", str(recipe))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    degenerate = [note for note in report["warnings"] if "same for all 12 verification samples" in note]
    assert len(degenerate) == 2  # both heads
    assert "verify.num_samples is 50 but the data has 12 samples: all 12 are used" in report["warnings"]
    assert "warning: verify.num_samples is 50" in result.output  # stderr, mixed into the runner's output


def test_names_that_match_no_output_are_bad_input(data, tmp_path: Path) -> None:
    model = two_heads(tmp_path / "two.onnx")
    wrong_task = write_recipe(tmp_path, model, data, verify={"task": {"hea": {"kind": "map"}}})
    assert_bad_input(ckit("build", str(wrong_task)), "verify.task names output 'hea'", "logits, heat")
    wrong_gate = write_recipe(tmp_path, model, data, gates={"outputs": {"boxes": {"min_iou": 0.5}}})
    assert_bad_input(ckit("build", str(wrong_gate)), "gates.outputs names output 'boxes'")


def test_a_gate_on_an_unknown_metric_is_refused_with_a_suggestion(data, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, two_heads(tmp_path / "two.onnx"), data, gates={"outputs": {"heat": {"min_iuo": 1}}})
    assert_bad_input(ckit("build", str(recipe)), "gates.outputs.heat", "did you mean 'min_iou'?")


def test_a_torch_module_returning_a_dict_verifies_each_output_by_name(data, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, tmp_path / "unused.onnx", data)
    text = yaml.safe_load(recipe.read_text())
    text["source"] = {"framework": "torch", "entry_point": "tests.cli.torch_two_heads:build_model"}
    recipe.write_text(yaml.safe_dump(text, sort_keys=False))
    result = ckit("build", str(recipe))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    chain = [c for c in report["comparisons"] if c["reference"] == "source"]
    assert [c["candidate"] for c in chain] == ["onnx", "tflite-float", "tflite-int8"]
    for comparison in chain[:2]:  # export and conversion: lossless for each head
        for name, entry in comparison["outputs"].items():
            assert entry["metrics"]["snr_db"] > 60, (comparison["candidate"], name)
    assert report["tasks"]["mask"]["task"] == "map" and report["tasks"]["scores"]["task"] == "classification"


def test_a_task_that_does_not_fit_its_output_is_bad_input(data, tmp_path: Path) -> None:
    model = two_heads(tmp_path / "two.onnx")
    decoder = {"heat": {"kind": "detection", "decoder": "no_such_package.boxes:decode"}}
    recipe = write_recipe(tmp_path, model, data, verify={"task": decoder})
    assert_bad_input(ckit("build", str(recipe)), "verify.task.heat (detection)", "no_such_package.boxes:decode")
