"""Shared fixtures, built once per session: the digits splits, the trained Keras CNN and one real build.

The fixtures that train or convert (keras_model_path, built, torch_models, digits_onnx_float, and base_recipe,
write_recipe, torch_recipe, onnx_recipe on top of them) cost seconds to tens of seconds for the first test that
asks for one: tests that use them are marked `slow`, so the fast tier (`pytest -m "not slow"`) never pays for them.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from calibration import digits
from recipes.models import digits_keras

# the `ssh_device` fixture: a real sshd on a loopback port playing an edge device (tests/ssh_device.py)
pytest_plugins = ["tests.ssh_device"]

REPO = Path(__file__).resolve().parent.parent
SHIPPED_RECIPE = REPO / "recipes" / "digits_keras.yaml"


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Builds in session fixtures never touch the user's ~/.cache/ckit."""
    os.environ["CKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("ckit-cache"))


@pytest.fixture(autouse=True)
def test_cache(session_cache: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test builds with an empty stage cache of its own, so what it checks really ran (tests of the cache
    itself build twice into it)."""
    root = tmp_path / "ckit-cache"
    monkeypatch.setenv("CKIT_CACHE_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    digits.write_splits(out)
    return out


@pytest.fixture(scope="session")
def keras_model_path(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_keras.train(tmp_path_factory.mktemp("models") / "digits_cnn.keras", digits_dir)


def _shipped_recipe(name: str, digits_dir: Path, runs: int = 10) -> dict[str, Any]:
    """A shipped digits recipe pointed at the session's data, with short latency runs and no output section."""
    recipe = yaml.safe_load((REPO / "recipes" / name).read_text())
    recipe["calibration"]["data"]["path"] = str(digits_dir / "calibration.npz")
    recipe["verify"]["data"]["path"] = str(digits_dir / "eval.npz")
    recipe["verify"]["latency"] = {"warmup": 2, "runs": runs}
    recipe.pop("output", None)
    return recipe


def build_recipe(recipe: dict[str, Any], folder: Path):
    """Write `recipe` into `folder` and build it there (into `folder/build`): a real `ckit build`."""
    from compiler_kit.pipeline import build
    from compiler_kit.recipe import load_recipe

    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({**recipe, "output": {"dir": str(folder / "build")}}, sort_keys=False))
    return build(load_recipe(path), path, progress=lambda _: None)


@pytest.fixture(scope="session")
def base_recipe(digits_dir: Path, keras_model_path: Path) -> dict[str, Any]:
    """The shipped Keras recipe pointed at the session's data and model."""
    recipe = _shipped_recipe(SHIPPED_RECIPE.name, digits_dir, runs=20)
    recipe["source"]["path"] = str(keras_model_path)
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
    return build_recipe(base_recipe, tmp_path_factory.mktemp("built"))


# --- PyTorch and ONNX sources: the digits CNN trained once per session (recipes/models/digits_torch.py) ---

TORCH_ENTRY_POINT = "recipes.models.digits_torch:build_model"  # importable from the repo root, pytest's cwd


@pytest.fixture(scope="session")
def torch_models(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"weights": the trained state_dict (.pt), "onnx": the same model exported with a dynamic batch}."""
    from recipes.models import digits_torch

    return digits_torch.train(tmp_path_factory.mktemp("torch_models"), digits_dir)


@pytest.fixture(scope="session")
def torch_recipe(digits_dir: Path, torch_models: dict[str, Path]) -> dict[str, Any]:
    """recipes/digits_torch.yaml pointed at the session's data and weights (no output section)."""
    recipe = _shipped_recipe("digits_torch.yaml", digits_dir)
    recipe["source"]["entry_point"] = TORCH_ENTRY_POINT
    recipe["source"]["weights"] = str(torch_models["weights"])
    return recipe


@pytest.fixture(scope="session")
def onnx_recipe(digits_dir: Path, torch_models: dict[str, Path]) -> dict[str, Any]:
    """recipes/digits_onnx.yaml pointed at the session's data and ONNX file (no output section)."""
    recipe = _shipped_recipe("digits_onnx.yaml", digits_dir)
    recipe["source"]["path"] = str(torch_models["onnx"])
    return recipe


@pytest.fixture(scope="session")
def digits_onnx_float(torch_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The session's digits.onnx converted once by the ONNX frontend (NCHW [1, 1, 16, 16] -> NHWC SavedModel)."""
    from compiler_kit.frontends.onnx import convert_onnx
    from compiler_kit.recipe import InputSpec

    image = InputSpec(name="image", shape=[1, 1, 16, 16], layout="NCHW")
    return convert_onnx(torch_models["onnx"], [image], tmp_path_factory.mktemp("digits_onnx_float"))


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """calibration/photos.py's photographs (scikit-image's bundled images), split as the example ships them."""
    from calibration import photos

    out = tmp_path_factory.mktemp("photos")
    photos.write_photos(out)
    return out


@pytest.fixture
def fake_compiler(tmp_path: Path) -> Path:
    """An executable named edgetpu_compiler that runs the TEST DOUBLE tests/edgetpu/fake_edgetpu_compiler.py
    (the real compiler cannot be installed here); FAKE_EDGETPU_MODE picks its behaviour."""
    executable = tmp_path / "bin" / "edgetpu_compiler"
    executable.parent.mkdir()
    fake = REPO / "tests" / "edgetpu" / "fake_edgetpu_compiler.py"
    executable.write_text(f'#!/bin/sh\nexec {sys.executable} {fake} "$@"\n')
    executable.chmod(0o755)
    return executable


HEAVY_FRAMEWORKS = ("tensorflow", "keras", "torch", "onnx", "onnxruntime", "onnx2tf")


def frameworks_imported_by(*commands: list[str]) -> list[str]:
    """Run ckit `commands` through CliRunner in a fresh interpreter (each must exit 0) and list the heavy
    frameworks that got imported: commands that only inform must start fast."""
    import subprocess

    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from compiler_kit.cli import app\n"
        f"for args in {[list(c) for c in commands]!r}:\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        f"print(json.dumps(sorted(set({list(HEAVY_FRAMEWORKS)!r}) & set(sys.modules))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_mount_namespace(setup: str, command: list[str]) -> list[str]:
    """`command` run after the shell `setup` (mounts) in a user and mount namespace of its own: real file systems
    (a read-only bind mount gives EROFS even for root, a small tmpfs fills up) without privileges. Skips the test
    where this system allows no unprivileged namespaces."""
    wrapped = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f'{setup} && exec "$@"', "sh"]
    if shutil.which("unshare") is None or subprocess.run([*wrapped, "true"], capture_output=True).returncode != 0:
        pytest.skip("no unprivileged user and mount namespaces here (unshare -rm) to mount a file system")
    return [*wrapped, *command]


def quoted(path: Path) -> str:
    return shlex.quote(str(path))


def random_splits(folder: Path, shape: tuple[int, ...], counts: dict[str, int], seed: int) -> dict[str, Path]:
    """Normal-noise samples of one input `shape` (batch 1 included), an .npz per split: data for models that need
    no meaning in their inputs, only values that reach every op."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, count in counts.items():
        paths[split] = folder / f"{split}.npz"
        np.savez(paths[split], x=rng.standard_normal((count, *shape[1:])).astype(np.float32))
    return paths
