"""A data set as every runner sees it: a seeded selection of samples, preprocessed into the model input's shape.

Samples stream one at a time from their source (nothing holds the whole set in memory), each shaped exactly
like the recipe's input, batch axis included. The data set's files are hashed for the report, so a reviewer can
tell whether two builds saw the same data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler_kit.data.sources import RawSource, open_source
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import DataSpec, InputSpec, Preprocess

_CHANNEL_AXIS = {"NHWC": -1, "NCHW": 0}  # of one sample, batch axis removed
_CHANNEL_SHAPE = {"NHWC": (1, 1, -1), "NCHW": (-1, 1, 1)}
_TO_LAYOUT = {("NHWC", "NCHW"): (2, 0, 1), ("NCHW", "NHWC"): (1, 2, 0)}


@dataclass
class Dataset:
    """Preprocessed samples (float32, shaped like `input_spec.shape`) and labels for the selected indices."""

    spec: DataSpec
    indices: np.ndarray
    labels: np.ndarray | None
    sha256: str
    source: RawSource
    input_spec: InputSpec
    preprocess: Preprocess

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in self.indices:
            yield self.sample(int(index))

    def sample(self, index: int) -> np.ndarray:
        """Sample `index` of the source, preprocessed; checked for shape and for NaN or Inf."""
        x = prepare(self.source.read(index), self.source.layout, self.input_spec, self.preprocess)
        if x.shape != tuple(self.input_spec.shape):
            raise BadInputError(
                f"sample {index} has shape {list(x.shape[1:])} after preprocessing, but input "
                f"'{self.input_spec.name}' takes {self.input_spec.shape[1:]} (shape {self.input_spec.shape})",
                path=self.spec.path,
                fix="fix inputs[0].shape, the data's layout, or preprocess.resize / color",
            )
        if not np.isfinite(x).all():
            raise BadInputError(
                f"sample {index} contains NaN or Inf", path=self.spec.path, fix="clean or drop that sample"
            )
        return x

    def digests(self) -> set[str]:
        """Read every selected sample once, so bad data stops the build before any conversion; return the
        samples' digests (to spot verification samples that leaked into calibration)."""
        return {hashlib.sha1(x.tobytes()).hexdigest() for x in self}

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.spec.path),
            "sha256": self.sha256,
            "samples": len(self),
            "source_samples": self.source.length,
            "labels": self.labels is not None,
            "class_names": self.source.class_names,
        }


def open_dataset(
    spec: DataSpec, preprocess: Preprocess, input_spec: InputSpec, num_samples: int | None, seed: int
) -> Dataset:
    source = open_source(spec, preprocess)
    if source.length == 0:
        raise BadInputError("the data set is empty", path=spec.path, fix="point the recipe at samples")
    indices = select(source.length, num_samples, seed)
    labels = source.labels[indices] if source.labels is not None else None
    return Dataset(
        spec,
        indices,
        labels,
        hash_files(source.files, spec.path if spec.path.is_dir() else spec.path.parent),
        source,
        input_spec,
        preprocess,
    )


def select(length: int, num_samples: int | None, seed: int) -> np.ndarray:
    """A seeded, sorted subset of `num_samples` indices; all of them when `num_samples` is None or too big."""
    if num_samples is None or num_samples >= length:
        return np.arange(length)
    return np.sort(np.random.default_rng(seed).choice(length, size=num_samples, replace=False))


def prepare(raw: np.ndarray, stored_layout: str | None, input_spec: InputSpec, preprocess: Preprocess) -> np.ndarray:
    """Raw sample -> model input of batch one: x * scale, to the input's layout, then (x - mean) / std."""
    x = np.asarray(raw, dtype=np.float32) * np.float32(preprocess.scale)
    target = input_spec.layout
    if stored_layout and target and stored_layout != target and x.ndim == 3:
        x = x.transpose(_TO_LAYOUT[(stored_layout, target)])
    return _normalize(x, preprocess, target)[None]


def _normalize(x: np.ndarray, preprocess: Preprocess, layout: str | None) -> np.ndarray:
    mean = np.asarray(preprocess.mean, dtype=np.float32)
    std = np.asarray(preprocess.std, dtype=np.float32)
    if mean.size == 1 and std.size == 1:
        return (x - mean[0]) / std[0]
    if layout is None or x.ndim != 3:
        raise BadInputError(
            "per-channel preprocess.mean/std need a 3-D image sample and inputs[0].layout",
            fix="give one mean and one std, or set inputs[0].layout: NHWC | NCHW",
        )
    channels = x.shape[_CHANNEL_AXIS[layout]]
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise BadInputError(
            f"preprocess.mean/std have {mean.size}/{std.size} values for {channels} channels",
            fix=f"give 1 or {channels} values",
        )
    shape = _CHANNEL_SHAPE[layout]
    return (x - mean.reshape(shape)) / std.reshape(shape)


def hash_files(files: list[Path], root: Path) -> str:
    """sha256 over the files' paths relative to `root` and their contents, in order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root) if path.is_relative_to(root) else path.name).encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
