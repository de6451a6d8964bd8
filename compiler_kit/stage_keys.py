"""The pieces the cached stages' keys are made of (each stage's `key_inputs`, in its module, puts them together;
compiler_kit.cache hashes them).

Files count by content, never by location: a model or a data set moved elsewhere keeps its keys. Each key takes
the key of the stage before it, so a change re-runs that stage and everything downstream, nothing upstream.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from compiler_kit import lazy
from compiler_kit.artifacts import sha256_file
from compiler_kit.data import Dataset
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import Source

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
