"""Shared fixtures, built once per session: the digits splits, the trained Keras CNN and one real build."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from calibration import digits
from recipes.models import digits_keras

REPO = Path(__file__).resolve().parent.parent
SHIPPED_RECIPE = REPO / "recipes" / "digits_keras.yaml"


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    digits.write_splits(out)
    return out


@pytest.fixture(scope="session")
def keras_model_path(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_keras.train(tmp_path_factory.mktemp("models") / "digits_cnn.keras", digits_dir)


@pytest.fixture(scope="session")
def base_recipe(digits_dir: Path, keras_model_path: Path) -> dict[str, Any]:
    """The shipped recipe pointed at the session's data and model, with short latency runs."""
    recipe = yaml.safe_load(SHIPPED_RECIPE.read_text())
    recipe["source"]["path"] = str(keras_model_path)
    recipe["calibration"]["data"]["path"] = str(digits_dir / "calibration.npz")
    recipe["verify"]["data"]["path"] = str(digits_dir / "eval.npz")
    recipe["verify"]["latency"] = {"warmup": 2, "runs": 20}
    del recipe["output"]
    return recipe


WriteRecipe = Callable[..., Path]


@pytest.fixture
def write_recipe(base_recipe: dict[str, Any], tmp_path: Path) -> WriteRecipe:
    """Write a variant of the base recipe: `edit(recipe_dict)` changes it in place; the build goes to tmp."""

    def write(edit: Callable[[dict[str, Any]], None] | None = None, name: str = "recipe.yaml") -> Path:
        recipe = copy.deepcopy(base_recipe)
        recipe["output"] = {"dir": str(tmp_path / "build")}
        if edit:
            edit(recipe)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def built(base_recipe: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):
    """One real build of the digits recipe, shared by every test that only reads its results."""
    from compiler_kit.pipeline import build
    from compiler_kit.recipe import load_recipe

    folder = tmp_path_factory.mktemp("built")
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({**base_recipe, "output": {"dir": str(folder / "build")}}, sort_keys=False))
    return build(load_recipe(path), path, progress=lambda _: None)
