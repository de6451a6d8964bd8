"""What each cached stage depends on, as the inputs of its cache key (see compiler_kit.cache).

Files count by content, never by location: a model or a data set moved elsewhere keeps its keys. Each key takes
the key of the stage before it, so a change re-runs that stage and everything downstream, nothing upstream.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path
from typing import Any

from compiler_kit import lazy
from compiler_kit.artifacts import sha256_file
from compiler_kit.data import Dataset
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import Recipe, Source

# The distributions whose behaviour each stage's output depends on.
CONVERT_TOOLS = (
    "tensorflow", "tf-keras", "keras", "onnx", "onnx2tf", "onnxsim", "onnxscript", "onnxruntime", "torch", "numpy"
)  # fmt: skip
QUANTIZE_TOOLS = ("tensorflow", "ai-edge-litert")
VERIFY_TOOLS = ("ai-edge-litert", "tensorflow", "keras", "torch", "onnxruntime", "numpy")
_LOCATION = {"path", "labels_path"}  # data set fields that say where, not what


def tool_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    return {name: lazy.version(name) for name in names}


def model_sha256(source: Source) -> str:
    """Hash of what defines the source model: its file, or its entry point's name, module source and weights."""
    if source.path is not None:
        return _sha256(source.path, "model", "source.path")
    assert source.entry_point is not None
    digest = hashlib.sha256(source.entry_point.encode())
    digest.update(sha256_file(entry_point_file(source.entry_point, source.recipe_dir)).encode())
    if source.weights is not None:
        digest.update(_sha256(source.weights, "weights", "source.weights").encode())
    return digest.hexdigest()


def _sha256(path: Path, what: str, field: str) -> str:
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise BadInputError(f"{what} file not found", path=path, fix=f"check {field} in the recipe") from None
    except OSError as exc:
        raise BadInputError(
            f"cannot read the {what} file: {exc.strerror or exc}", path=path, fix=f"check {field} and its permissions"
        ) from None


def entry_point_file(entry_point: str, recipe_dir: Path | None) -> Path:
    """The source file of the entry point's module, found where the torch frontend imports it from (the
    recipe's folder, the working directory, then sys.path) without importing anything."""
    module = entry_point.partition(":")[0]
    parts = module.split(".")
    roots = [root for root in (recipe_dir, Path.cwd(), *map(Path, sys.path)) if root is not None]
    for root in roots:
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    raise BadInputError(
        f"entry point '{entry_point}' failed: ModuleNotFoundError: no source file of module '{module}' in the "
        "recipe's folder, the working directory or sys.path",
        fix="source.entry_point must be 'package.module:factory', importable from the recipe's folder or the "
        "working directory",
    )


def data_inputs(dataset: Dataset, section: Any) -> dict[str, Any]:
    """A data set by content: its files' hash and the recipe fields that select and shape its samples."""
    # How outputs are judged (task) changes no runner's outputs: the verify stage is reused when only it changes.
    fields = section.model_dump(
        mode="json", exclude={"data": _LOCATION, "latency": True, "threads": True, "task": True}
    )
    return {"sha256": dataset.sha256, **fields}


def convert_inputs(recipe: Recipe, source_sha256: str) -> dict[str, Any]:
    """`source_sha256`: model_sha256(recipe.source), which the report names the model by too."""
    source = recipe.source.model_dump(mode="json", exclude={"path", "weights"})
    return {
        "source": {**source, "sha256": source_sha256},
        "inputs": [spec.model_dump(mode="json") for spec in recipe.inputs],
        "legalize": recipe.legalize.model_dump(mode="json"),
        "tools": tool_versions(CONVERT_TOOLS),
    }


def quantize_inputs(recipe: Recipe, convert_key: str, calibration: Dataset) -> dict[str, Any]:
    return {
        "convert": convert_key,
        "quantization": recipe.quantization.model_dump(mode="json"),
        "calibration": data_inputs(calibration, recipe.calibration),
        "tools": tool_versions(QUANTIZE_TOOLS),
    }


def edgetpu_inputs(recipe: Recipe, int8_model: Path, compiler: Path | None, compiler_version: str | None) -> dict:
    settings = recipe.edgetpu.model_dump(mode="json", exclude={"compiler", "device"})
    tool = {"sha256": sha256_file(compiler), "version": compiler_version} if compiler else "static analysis"
    return {"int8_sha256": sha256_file(int8_model), "settings": settings, "compiler": tool}


def verify_inputs(recipe: Recipe, model_keys: list[str], runner_names: list[str], verify: Dataset) -> dict:
    return {
        "models": model_keys,
        "runners": runner_names,
        "verify": data_inputs(verify, recipe.verify),
        "preprocess": recipe.calibration.preprocess.model_dump(mode="json"),
        "threads": recipe.verify.threads,
        "device": recipe.edgetpu.device,
        "tools": tool_versions(VERIFY_TOOLS),
    }


def latency_inputs(recipe: Recipe, verify_key: str) -> dict[str, Any]:
    """Timings belong to the machine that took them: another host or CPU measures again."""
    return {
        "verify": verify_key,
        "latency": recipe.verify.latency.model_dump(mode="json"),
        "machine": {"host": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count()},
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
