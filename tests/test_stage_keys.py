"""Stage keys: files count by content, not location; each key holds everything its stage depends on."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from compiler_kit.cache import stage_key
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import Source, load_recipe
from compiler_kit.stage_keys import entry_point_file, model_sha256
from compiler_kit.stages.convert import key_inputs as convert_inputs


def _load(recipe: dict[str, Any], path: Path):
    path.write_text(yaml.safe_dump(recipe))
    return load_recipe(path)


def _convert_key(recipe) -> str:
    return stage_key("convert", convert_inputs(recipe, model_sha256(recipe.source)))


@pytest.mark.slow
def test_a_model_moved_elsewhere_keeps_its_key_and_a_changed_one_does_not(base_recipe, tmp_path: Path) -> None:
    moved = tmp_path / "moved.keras"
    shutil.copy(base_recipe["source"]["path"], moved)
    original = _load(base_recipe, tmp_path / "a.yaml")
    relocated = _load({**base_recipe, "source": {"framework": "keras", "path": str(moved)}}, tmp_path / "b.yaml")
    assert _convert_key(original) == _convert_key(relocated)
    with moved.open("ab") as handle:
        handle.write(b"\0")
    assert _convert_key(original) != _convert_key(relocated)


def test_an_entry_point_is_keyed_by_its_module_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "nets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "small.py").write_text("def build():\n    return None\n")
    source = Source.model_validate(
        {"framework": "torch", "entry_point": "nets.small:build"}, context={"base_dir": tmp_path}
    )
    monkeypatch.chdir(tmp_path.parent)  # found through the recipe's folder, not the working directory
    assert entry_point_file("nets.small:build", tmp_path) == package / "small.py"
    before = model_sha256(source)
    (package / "small.py").write_text("def build():\n    return 1\n")
    assert model_sha256(source) != before  # editing the model's code is a new model


def test_an_entry_point_without_a_source_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=re.escape("entry point 'nowhere.to_be:found' failed: ModuleNotFound")):
        entry_point_file("nowhere.to_be:found", tmp_path)


def test_a_missing_model_file_is_bad_input_naming_the_field(tmp_path: Path) -> None:
    source = Source(framework="onnx", path=tmp_path / "absent.onnx")
    with pytest.raises(BadInputError, match="model file not found") as caught:
        model_sha256(source)
    assert "check source.path" in str(caught.value)


def test_bias_correction_keys_the_conversion_by_the_calibration_samples_and_the_weight_granularity(
    tmp_path: Path,
) -> None:
    """Bias correction reads the calibration samples and mimics the weight quantization: a change to either
    converts again; how activation ranges are chosen does not, and without bias correction neither counts."""
    from compiler_kit.stages.data import calibration_set

    rng = np.random.default_rng(0)
    for name in ("a.npz", "b.npz"):
        np.savez(tmp_path / name, x=rng.random((6, 4, 4, 1), dtype=np.float32))
    recipe = {
        "name": "keys",
        "source": {"framework": "onnx", "path": "model.onnx"},
        "inputs": [{"name": "x", "shape": [1, 4, 4, 1]}],
        "calibration": {"data": {"path": "a.npz"}},
        "verify": {"data": {"path": "a.npz"}},
        "legalize": {"bias_correction": True},
    }

    def key(**sections: dict[str, Any]) -> str:
        loaded = _load({**recipe, **sections}, tmp_path / "recipe.yaml")
        return stage_key("convert", convert_inputs(loaded, "model-sha256", calibration_set(loaded)))

    corrected = key()
    assert key(calibration={"data": {"path": "b.npz"}}) != corrected
    assert key(calibration={"data": {"path": "a.npz"}, "num_samples": 3}) != corrected
    assert key(quantization={"granularity": "per-tensor"}) != corrected
    assert key(calibration={"data": {"path": "a.npz"}, "method": "mse"}) == corrected
    assert key(calibration={"data": {"path": "a.npz"}, "bias_correction": "empirical"}) == corrected  # int8's own
    plain = {"legalize": {"bias_correction": False}}
    assert key(**plain) != corrected
    assert key(**plain, calibration={"data": {"path": "b.npz"}}) == key(**plain)
