"""`ckit init MODEL`: a commented starter recipe that loads with the recipe schema, and its exit-2 paths."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from compiler_kit.recipe import Recipe, load_recipe
from tests.cli.test_build import assert_bad_input, ckit
from tests.conftest import REPO, frameworks_imported_by


def _init(model: Path, out: Path, *extra: str):
    result = ckit("init", str(model), "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    return result


def _provide_data(recipe_path: Path, digits_dir: Path | None = None) -> None:
    """Create the data files the starter recipe names (the digits splits, or tiny arrays)."""
    import numpy as np

    data = yaml.safe_load(recipe_path.read_text())
    for section, split in (("calibration", "calibration.npz"), ("verify", "eval.npz")):
        target = recipe_path.parent / data[section]["data"]["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if digits_dir is not None:
            shutil.copy(digits_dir / split, target)
        else:
            np.savez(target, x=np.zeros((4, 3, 8, 8), np.float32), y=np.zeros(4, np.int64))


def _load(recipe_path: Path) -> Recipe:
    recipe = load_recipe(recipe_path)
    assert recipe.calibration.data.path.is_file() and recipe.verify.data.path.is_file()
    return recipe


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny NCHW RGB conv net exported with a dynamic batch and the input name "pixels"."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    path = tmp_path_factory.mktemp("tiny") / "models" / "tiny net.onnx"
    path.parent.mkdir()
    torch.onnx.export(
        model,
        (torch.zeros(2, 3, 8, 8),),
        path,
        input_names=["pixels"],
        dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=8)}},
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return path


def test_onnx_recipe_has_the_input_and_loads(tiny_onnx: Path) -> None:
    out = tiny_onnx.parent.parent / "recipes" / "tiny.yaml"
    _init(tiny_onnx, out)
    text = out.read_text()
    assert "was dynamic: fixed to 1 for the Edge TPU" in text
    assert "path: ../models/tiny net.onnx" in text  # relative to the recipe's folder
    assert "# gates:" in text and "\ngates:" not in text  # default gates commented
    _provide_data(out)
    recipe = _load(out)
    assert recipe.name == "tiny_net"
    assert recipe.source.framework == "onnx" and recipe.source.path == tiny_onnx.resolve()
    (spec,) = recipe.inputs
    assert (spec.name, spec.shape, spec.layout) == ("pixels", [1, 3, 8, 8], "NCHW")
    assert recipe.calibration.data.path == (out.parent / "data" / "calibration.npz").resolve()
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_real_digits_models_give_recipes_that_load(
    torch_models: dict[str, Path], keras_model_path: Path, digits_dir: Path, tmp_path: Path
) -> None:
    expected = {
        torch_models["onnx"]: ("onnx", "image", [1, 1, 16, 16], "NCHW"),
        keras_model_path: ("keras", "image", [1, 16, 16, 1], "NHWC"),
    }
    for model, (framework, name, shape, layout) in expected.items():
        out = tmp_path / framework / "recipe.yaml"
        _init(model, out)
        _provide_data(out, digits_dir)
        recipe = _load(out)
        assert recipe.source.framework == framework and recipe.source.path == model.resolve()
        (spec,) = recipe.inputs
        assert (spec.name, spec.shape, spec.layout) == (name, shape, layout)
        assert recipe.verify.data.labels_key == "y"


@pytest.mark.slow
def test_state_dict_gets_an_entry_point_template(torch_models: dict[str, Path], tmp_path: Path) -> None:
    weights = tmp_path / "weights" / "digits_torch.pt"
    weights.parent.mkdir()
    shutil.copy(torch_models["weights"], weights)
    out = tmp_path / "recipe.yaml"
    result = _init(weights, out)
    assert "source.entry_point" in result.output  # listed among the TODOs
    text = out.read_text()
    assert "entry_point: your_package.your_module:build_model" in text and "TODO" in text
    assert "weights: weights/digits_torch.pt" in text and "state_dict" in text
    _provide_data(out)
    recipe = _load(out)
    assert recipe.source.framework == "torch" and recipe.source.weights == weights.resolve()
    assert recipe.source.path is None


def test_torchscript_and_exported_program_get_a_path(tmp_path: Path) -> None:
    import torch

    scripted = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    program = tmp_path / "program.pt2"
    program.write_bytes(b"not read by init")
    for model in (scripted, program):
        out = tmp_path / f"{model.stem}.yaml"
        _init(model, out)
        assert "entry_point" not in out.read_text()
        _provide_data(out)
        recipe = _load(out)
        assert recipe.source.framework == "torch" and recipe.source.path == model.resolve()


def test_keras_h5_config_is_read_and_an_unreadable_file_gets_a_todo(tmp_path: Path) -> None:
    import h5py

    h5 = tmp_path / "legacy.h5"
    config = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {"class_name": "InputLayer", "config": {"name": "img", "batch_input_shape": [None, 32, 32, 3]}},
                {"class_name": "Conv2D", "config": {"name": "conv"}},
            ]
        },
    }
    with h5py.File(h5, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
    junk = tmp_path / "junk.keras"
    with zipfile.ZipFile(junk, "w") as archive:
        archive.writestr("metadata.json", "{}")
    for model, name, shape in ((h5, "img", [1, 32, 32, 3]), (junk, "input", [1, 224, 224, 3])):
        out = tmp_path / f"{model.stem}.yaml"
        result = _init(model, out)
        _provide_data(out)
        (spec,) = _load(out).inputs
        assert (spec.name, spec.shape, spec.layout) == (name, shape, "NHWC")
    assert "not readable from the file" in out.read_text() and "inputs[0]" in result.output


@pytest.mark.slow
def test_init_imports_no_framework_beyond_onnx(keras_model_path: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    keras_run = ["init", str(keras_model_path), "-o", str(tmp_path / "k.yaml")]
    assert frameworks_imported_by(["init", "--help"], keras_run) == []  # Keras config read without TensorFlow
    assert frameworks_imported_by(["init", str(tiny_onnx), "-o", str(tmp_path / "o.yaml")]) == ["onnx"]


def test_missing_model_exits_2(tmp_path: Path) -> None:
    assert_bad_input(ckit("init", str(tmp_path / "absent.onnx"), "-o", str(tmp_path / "r.yaml")), "not found")
    assert not (tmp_path / "r.yaml").exists()


def test_unknown_suffix_exits_2_naming_the_supported_ones(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    result = ckit("init", str(model), "-o", str(tmp_path / "r.yaml"))
    assert_bad_input(result, "unknown model file suffix '.tflite'", ".keras", ".h5", ".onnx", ".pt2", ".pt", ".pth")


def test_existing_recipe_needs_force(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "recipe.yaml"
    out.write_text("# mine\n")
    assert_bad_input(ckit("init", str(tiny_onnx), "--out", str(out)), str(out), "already exists", "--force")
    assert out.read_text() == "# mine\n"
    _init(tiny_onnx, out, "--force")
    assert "framework: onnx" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]  # no temporary file left


def test_ci_example_workflow_runs_ckit_build() -> None:
    workflow = yaml.safe_load((REPO / "docs" / "ci" / "github-actions.yml").read_text())
    assert workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any("ckit build" in run for run in runs)
    assert any("make setup" in run for run in runs)
    assert "ckit report diff" in (REPO / "docs" / "ci" / "README.md").read_text()
