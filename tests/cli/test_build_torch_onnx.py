"""`ckit build` of the PyTorch and ONNX digits recipes end to end, and their bad inputs: exit 2, one message."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.cli.test_build import assert_bad_input, ckit

pytestmark = pytest.mark.slow  # every test needs the session's trained PyTorch model (conftest `torch_models`)

CONVERSION_STEPS = [("source", "onnx"), ("onnx", "tflite-float"), ("source", "tflite-float")]


def _write(recipe: dict[str, Any], folder: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    recipe = copy.deepcopy(recipe)
    recipe["output"] = {"dir": str(folder / "build")}
    if edit:
        edit(recipe)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "build" / "report.json").read_text())


def _no_artifacts_left(folder: Path) -> None:
    build = folder / "build"
    left = [p.name for p in build.iterdir()] if build.exists() else []
    assert not [name for name in left if name.endswith((".tflite", ".tmp")) or "saved_model" in name], left


def test_the_torch_recipe_builds_and_reports_every_step(torch_recipe: dict[str, Any], tmp_path: Path) -> None:
    result = ckit("build", str(_write(torch_recipe, tmp_path)))
    assert result.exit_code == 0, result.output
    report = _report(tmp_path)

    pairs = [(c["reference"], c["candidate"]) for c in report["comparisons"]]
    assert pairs == [
        ("source", "onnx"),
        ("onnx", "tflite-float"),
        ("source", "tflite-float"),
        ("tflite-float", "tflite-int8"),
        ("source", "tflite-int8"),
    ]
    metrics = {(c["reference"], c["candidate"]): c["metrics"] for c in report["comparisons"]}
    for step in CONVERSION_STEPS:
        assert metrics[step]["cosine"] >= 0.9999, (step, metrics[step])
    int8 = metrics[("source", "tflite-int8")]
    assert abs(int8["accuracy_candidate"] - int8["accuracy_reference"]) * 100 <= 1.0, int8
    assert int8["accuracy_reference"] > 0.8  # the session's torch model really is trained

    assert list(report["runners"]) == ["source", "onnx", "tflite-float", "tflite-int8"]
    assert report["runners"]["source"]["runtime"] == "torch"
    assert report["runners"]["onnx"]["runtime"] == "onnxruntime"
    assert "onnx" in report["artifacts"]
    assert report["layout"]["inputs"]["image"] == [0, 2, 3, 1]
    assert report["source"]["entry_point"] == torch_recipe["source"]["entry_point"]
    assert (tmp_path / "build" / "float_model" / "model.onnx").is_file()
    # layers named after the torch modules they come from (recipes/models/digits_torch.py's Sequentials)
    named = {layer["op"]: layer["source_name"] for layer in report["layers"]}
    assert [layer["source_name"] for layer in report["layers"] if layer["op"] == "CONV_2D"] == [
        "features.1 (Relu)",
        "features.4 (Relu)",
    ]
    assert named["FULLY_CONNECTED"] == "classifier.3 (Gemm)"


def test_the_onnx_recipe_builds(onnx_recipe: dict[str, Any], tmp_path: Path) -> None:
    result = ckit("build", str(_write(onnx_recipe, tmp_path)))
    assert result.exit_code == 0, result.output
    report = _report(tmp_path)
    assert list(report["runners"]) == ["source", "tflite-float", "tflite-int8"]
    assert report["runners"]["source"]["runtime"] == "onnxruntime"
    assert "onnx" not in report["artifacts"]
    assert report["layout"]["inputs"]["image"] == [0, 2, 3, 1]
    metrics = {(c["reference"], c["candidate"]): c["metrics"] for c in report["comparisons"]}
    assert metrics[("source", "tflite-float")]["cosine"] >= 0.9999
    named = {layer["op"]: layer["source_name"] for layer in report["layers"]}
    assert named["INPUT"] is None and all(named[op] for op in named if op != "INPUT")
    assert named["TRANSPOSE"] == "features.5 (MaxPool)"  # onnx2tf's layout change holds the pool's values


# --- bad input: every case stops before onnx2tf runs ---


def test_a_truncated_onnx_file(onnx_recipe: dict[str, Any], torch_models: dict[str, Path], tmp_path: Path) -> None:
    real = torch_models["onnx"].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(real[: len(real) // 2])

    def truncated(recipe: dict[str, Any]) -> None:
        recipe["source"]["path"] = str(cut)

    assert_bad_input(ckit("build", str(_write(onnx_recipe, tmp_path, truncated))), str(cut), "not a valid ONNX model")
    _no_artifacts_left(tmp_path)


def test_an_entry_point_that_does_not_import(torch_recipe: dict[str, Any], tmp_path: Path) -> None:
    def missing(recipe: dict[str, Any]) -> None:
        recipe["source"]["entry_point"] = "no_such_package.models:build_model"

    result = ckit("build", str(_write(torch_recipe, tmp_path, missing)))
    assert_bad_input(result, "entry point 'no_such_package.models:build_model' failed", "ModuleNotFoundError")
    _no_artifacts_left(tmp_path)


def _with_weights(path: Path) -> Callable[[dict[str, Any]], None]:
    def edit(recipe: dict[str, Any]) -> None:
        recipe["source"]["weights"] = str(path)

    return edit


def test_weights_that_do_not_match(torch_recipe: dict[str, Any], tmp_path: Path) -> None:
    import torch

    from recipes.models.digits_torch import DigitsNet

    state = DigitsNet().state_dict()
    del state["features.3.weight"]
    weights = tmp_path / "partial.pt"
    torch.save(state, weights)
    result = ckit("build", str(_write(torch_recipe, tmp_path, _with_weights(weights))))
    assert_bad_input(result, str(weights), "the weights do not match the module: key 'features.3.weight' is missing")
    _no_artifacts_left(tmp_path)


def test_a_pickled_module(torch_recipe: dict[str, Any], tmp_path: Path) -> None:
    import torch

    from recipes.models.digits_torch import DigitsNet

    pickled = tmp_path / "whole_model.pt"
    torch.save(DigitsNet(), pickled)
    result = ckit("build", str(_write(torch_recipe, tmp_path, _with_weights(pickled))))
    assert_bad_input(result, str(pickled), "unsafe unpickling")
    _no_artifacts_left(tmp_path)


def test_an_input_rank_the_onnx_model_does_not_have(
    onnx_recipe: dict[str, Any], digits_dir: Path, tmp_path: Path
) -> None:
    """3-D data and a 3-D recipe shape pass the data checks; the 4-D ONNX model then refuses the rank."""
    paths = {}
    for split in ("calibration", "eval"):
        with np.load(digits_dir / f"{split}.npz") as data:
            paths[split] = tmp_path / f"{split}_3d.npz"
            np.savez(paths[split], x=data["x"][..., 0], y=data["y"])

    def three_d(recipe: dict[str, Any]) -> None:
        recipe["inputs"][0] = {"name": "image", "shape": [1, 16, 16]}
        for role, split in (("calibration", "calibration"), ("verify", "eval")):
            recipe[role]["data"]["path"] = str(paths[split])
            recipe[role]["data"].pop("layout", None)

    result = ckit("build", str(_write(onnx_recipe, tmp_path, three_d)))
    assert_bad_input(result, "input 'image' has rank 4", "gives rank 3 [1, 16, 16]", onnx_recipe["source"]["path"])
    _no_artifacts_left(tmp_path)


@pytest.mark.parametrize("framework", ["torch", "onnx"])
def test_a_missing_model_file(torch_recipe, onnx_recipe, tmp_path: Path, framework: str) -> None:
    absent = tmp_path / ("absent.pt" if framework == "torch" else "absent.onnx")

    def edit(recipe: dict[str, Any]) -> None:
        recipe["source"]["weights" if framework == "torch" else "path"] = str(absent)

    result = ckit("build", str(_write(torch_recipe if framework == "torch" else onnx_recipe, tmp_path, edit)))
    assert_bad_input(result, str(absent), "file not found")


@pytest.mark.slow
def test_cross_layer_equalization_recovers_a_channel_that_sets_the_int8_step(
    torch_recipe: dict[str, Any], torch_models: dict[str, Path], digits_dir: Path, tmp_path: Path
) -> None:
    """The trained digits CNN with its first convolution's busiest channel fifty times wider, undone in the second
    convolution (the float model computes the same function): that one channel sets the int8 step of the whole
    activation between them. legalize.equalize balances the channels back (exactly) and the int8 SNR returns."""
    import torch

    state = torch.load(torch_models["weights"])
    with np.load(digits_dir / "calibration.npz") as data:
        images = torch.from_numpy(data["x"][:64].astype(np.float32).transpose(0, 3, 1, 2) / 255.0)  # NHWC -> NCHW
    first = torch.nn.functional.conv2d(images, state["features.0.weight"], state["features.0.bias"], padding=1)
    activations = torch.relu(first)
    busiest = int(activations.mean(dim=(0, 2, 3)).argmax())  # a live channel: scaling a dead one changes nothing
    state["features.0.weight"][busiest] *= 50
    state["features.0.bias"][busiest] *= 50
    state["features.3.weight"][:, busiest] /= 50
    torch.save(state, tmp_path / "wide.pt")

    def snr(equalize: bool) -> tuple[float, dict[str, Any]]:
        folder = tmp_path / f"equalize-{equalize}"
        folder.mkdir()

        def edit(recipe: dict[str, Any]) -> None:
            recipe["source"]["weights"] = str(tmp_path / "wide.pt")
            recipe["legalize"] = {"equalize": equalize}

        result = ckit("build", str(_write(torch_recipe, folder, edit)))
        assert result.exit_code == 0, result.output
        report = _report(folder)
        drift = next(c for c in report["comparisons"] if (c["reference"], c["candidate"]) == ("source", "tflite-int8"))
        return drift["metrics"]["snr_db"], report["legalization"]

    wide, _ = snr(False)
    balanced, legalization = snr(True)
    [row] = [row for row in legalization["rewrites"] if row["name"] == "cross_layer_equalization"]
    assert row["status"] == "applied" and row["max_relative_error"] < 1e-4
    assert balanced > wide + 6, (wide, balanced)


@pytest.mark.slow
def test_bias_correction_cancels_the_mean_error_of_coarse_int8_weights(
    torch_recipe: dict[str, Any], torch_models: dict[str, Path], tmp_path: Path
) -> None:
    """The trained digits CNN with one tap of every filter of its second convolution twenty times the filter's range:
    the other weights of each filter keep a few int8 steps, and their rounding error has a mean that the ReLU
    inputs (all >= 0) turn into a bias of every channel. legalize.bias_correction takes it out of the biases, and the
    int8 model comes closer to the (same) source model; the report calls the float model's change intended."""
    import torch

    state = torch.load(torch_models["weights"])
    weights = state["features.3.weight"]
    weights[:, 0, 0, 0] = 20 * weights.abs().flatten(1).max(dim=1).values
    torch.save(state, tmp_path / "coarse.pt")

    def build(bias_correction: bool) -> dict[str, Any]:
        folder = tmp_path / f"bias_correction-{bias_correction}"
        folder.mkdir()

        def edit(recipe: dict[str, Any]) -> None:
            recipe["source"]["weights"] = str(tmp_path / "coarse.pt")
            recipe["legalize"] = {"bias_correction": bias_correction}

        result = ckit("build", str(_write(torch_recipe, folder, edit)))
        assert result.exit_code == 0, result.output
        return _report(folder)

    def int8_snr(report: dict[str, Any]) -> float:
        drift = next(c for c in report["comparisons"] if (c["reference"], c["candidate"]) == ("source", "tflite-int8"))
        return drift["metrics"]["snr_db"]

    plain, corrected = build(False), build(True)
    [row] = [row for row in corrected["legalization"]["rewrites"] if row["name"] == "bias_correction"]
    assert row["status"] == "applied" and row["exact"] is False and row["count"] == 4  # two Conv, two Gemm
    assert corrected["cache"]["stages"]["convert"]["status"] == "miss"  # the switch is in the convert stage's key
    assert int8_snr(corrected) > int8_snr(plain) + 1, (int8_snr(plain), int8_snr(corrected))
    assert not any("the converter changed the model" in note for note in corrected["findings"])
    _int8_conv_weights_are_what_bias_correction_assumed(tmp_path / "bias_correction-True" / "build")


def _int8_conv_weights_are_what_bias_correction_assumed(build: Path) -> None:
    """Each convolution's weights in the int8 model, dequantized, are the ONNX weights plus int8_weight_error."""
    import onnx
    from onnx import numpy_helper

    from compiler_kit.compare.budget import _dequantized_constant
    from compiler_kit.compare.layers import TensorGraph
    from compiler_kit.legalize.bias_correction import int8_weight_error

    graph = onnx.load(str(build / "float_model" / "model_static.onnx")).graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    expected = [constants[node.input[1]] for node in graph.node if node.op_type == "Conv"]
    int8 = TensorGraph(build / "model_int8.tflite", 1)
    held = {}
    for index in int8.tensors:
        values = _dequantized_constant(int8, index)
        if values is not None and values.ndim == 4:  # CONV_2D: [out, kh, kw, in] -> ONNX's [out, in, kh, kw]
            transposed = values.transpose(0, 3, 1, 2)
            held[transposed.shape] = transposed
    assert len(expected) == 2
    for weights in expected:
        np.testing.assert_allclose(held[weights.shape], weights + int8_weight_error(weights, 0), atol=1e-6)
