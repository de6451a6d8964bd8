"""A data set as every runner sees it: a seeded selection of samples, preprocessed into the model input's shape.

Samples stream one at a time from their source (nothing holds the whole set in memory), each shaped exactly
like the recipe's input, batch axis included. The data set's files are hashed for the report, so a reviewer can
tell whether two builds saw the same data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Literal, overload

import numpy as np

from compiler_kit.data.sources import RawSource, open_source
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import DataSpec, InputSpec, Preprocess

_CHANNEL_AXIS = {"NHWC": -1, "NCHW": 0}  # of one sample, batch axis removed
_CHANNEL_SHAPE = {"NHWC": (1, 1, -1), "NCHW": (-1, 1, 1)}
_TO_LAYOUT = {("NHWC", "NCHW"): (2, 0, 1), ("NCHW", "NHWC"): (1, 2, 0)}
# Iteration preprocesses samples in blocks of at most this many float32 bytes (and _BLOCK_SAMPLES samples): one numpy
# call per step for a block instead of one per sample, while memory stays bounded however large the set is.
_BLOCK_BYTES = 1 << 20
_BLOCK_SAMPLES = 256
Preprocessor = Callable[[np.ndarray], np.ndarray]  # raw sample(s) -> model input(s)


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
        """The selected samples in order, each exactly what `sample(index)` returns (arrays of batch one)."""
        size = self._block_size()
        if size <= 1:
            for index in self.indices:
                yield self.sample(int(index))
            return
        for start in range(0, len(self.indices), size):
            yield from self._block(self.indices[start : start + size])

    def _block_size(self) -> int:
        """How many samples to preprocess at once: 1 (one by one) unless the source reads several samples as one
        array and the preprocessing has a whole-block form."""
        if self.source.read_many is None or self._preprocess_block is None or len(self.indices) < 2:
            return 1
        sample_size = max(int(np.prod(self._shape)), self.source.read(int(self.indices[0])).size)
        return max(1, min(_BLOCK_SAMPLES, _BLOCK_BYTES // (4 * sample_size)))

    def _block(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        """Samples `indices` prepared and checked together (the same float32 arithmetic as `sample`). Any problem
        (a shape, a NaN) sends the block through `sample` one by one, which names the sample at fault."""
        assert self.source.read_many is not None and self._preprocess_block is not None
        x = self._preprocess_block(self.source.read_many(indices))
        if self._shape[0] != 1 or x.shape != (len(indices), *self._shape[1:]) or not _all_finite(x):
            for index in indices:
                yield self.sample(int(index))
            return
        for k in range(len(indices)):
            yield x[k : k + 1]

    def first(self, count: int) -> list[np.ndarray]:
        """The first `count` selected samples (what a probe on a few samples takes)."""
        return [self.sample(int(index)) for index in self.indices[:count]]

    def subset(self, positions: np.ndarray) -> Dataset:
        """The selected samples at `positions` (into this selection), streamed and preprocessed as this set is."""
        labels = self.labels[positions] if self.labels is not None else None
        return replace(self, indices=self.indices[positions], labels=labels)

    def sample(self, index: int) -> np.ndarray:
        """Sample `index` of the source, preprocessed; checked for shape and for NaN or Inf."""
        raw = self.source.read(index)
        x = self._preprocess(raw)
        if x.shape != self._shape:
            raise BadInputError(
                f"sample {index} has shape {list(x.shape[1:])} after preprocessing, but input "
                f"'{self.input_spec.name}' takes {self.input_spec.shape[1:]} (shape {self.input_spec.shape})",
                path=self.spec.path,
                fix="fix inputs[0].shape, the data's layout, or preprocess.resize / color",
            )
        if not _all_finite(x):
            raise _non_finite(index, raw, self.spec.path)
        return x

    @cached_property
    def _shape(self) -> tuple[int, ...]:
        return tuple(self.input_spec.shape)

    @cached_property
    def _preprocess(self) -> Preprocessor:
        """`preprocess_sample` for this data set, with what does not change from sample to sample worked out once."""
        return _preprocessor(self.source.layout, self.input_spec, self.preprocess)

    @cached_property
    def _preprocess_block(self) -> Preprocessor | None:
        """The same for a block of raw samples (count, ...) -> (count, ...input shape[1:]); None when the
        preprocessing has no block form (per-channel mean/std)."""
        return _preprocessor(self.source.layout, self.input_spec, self.preprocess, block=True)

    def digests(self) -> set[str]:
        """Read every selected sample once, so bad data stops the build before any conversion; return the
        samples' digests (to spot verification samples that leaked into calibration)."""
        return {hashlib.sha1(x.tobytes()).hexdigest() for x in self}

    def sample_names(self) -> list[str]:
        """What a reader can find each selected sample by: its image file, or `archive[index]` in an array file."""
        files, root = self.source.files, self.spec.path
        if root.is_dir():  # a folder of images: one file per sample
            return [str(files[i].relative_to(root)) for i in self.indices]
        return [f"{root.name}[{i}]" for i in self.indices]

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
    spec: DataSpec,
    preprocess: Preprocess,
    input_spec: InputSpec,
    num_samples: int | None,
    seed: int,
    field: str = "data",
) -> Dataset:
    """`field`: the recipe section the data set comes from (e.g. verify.data), for messages."""
    source = open_source(spec, preprocess, field)
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


def preprocess_sample(
    raw: np.ndarray, stored_layout: str | None, input_spec: InputSpec, preprocess: Preprocess
) -> np.ndarray:
    """Raw sample -> model input of batch one: x * scale, to the input's layout, then (x - mean) / std."""
    return _preprocessor(stored_layout, input_spec, preprocess)(raw)


@overload
def _preprocessor(
    stored_layout: str | None, input_spec: InputSpec, preprocess: Preprocess, block: Literal[False] = False
) -> Preprocessor: ...
@overload
def _preprocessor(
    stored_layout: str | None, input_spec: InputSpec, preprocess: Preprocess, block: Literal[True]
) -> Preprocessor | None: ...
def _preprocessor(
    stored_layout: str | None, input_spec: InputSpec, preprocess: Preprocess, block: bool = False
) -> Preprocessor | None:
    """`preprocess_sample` bound to one data set's settings, for one raw sample or (`block`) for several stacked on
    a first axis: what does not change from sample to sample is worked out once, and the arithmetic runs in place on one
    float32 copy (per-sample lookups and temporaries cost more than a small model's inference). Per-channel
    normalization checks each sample's shape, so it has no block form (None)."""
    mean = np.asarray(preprocess.mean, dtype=np.float32)
    std = np.asarray(preprocess.std, dtype=np.float32)
    per_channel = mean.size != 1 or std.size != 1
    if per_channel and block:
        return None
    scale, center, spread = np.float32(preprocess.scale), mean[0], std[0]
    identity = center == 0 and spread == 1  # x - 0 and x / 1 change no float32 value
    target = input_spec.layout
    transpose = _TO_LAYOUT[(stored_layout, target)] if stored_layout and target and stored_layout != target else None
    lead = 1 if block else 0  # the block's own first axis stays first
    image_ndim = 3 + lead  # only 3-D samples (images) are transposed
    axes = None if transpose is None else (*range(lead), *(axis + lead for axis in transpose))

    def run(raw: np.ndarray) -> np.ndarray:
        x = np.array(raw, dtype=np.float32)  # always a copy: the source's array is never written to
        x *= scale
        if axes is not None and x.ndim == image_ndim:
            x = np.ascontiguousarray(x.transpose(axes))
        if per_channel:
            x = _per_channel_normalized(x, mean, std, target)
        elif not identity:
            x = (x - center) / spread
        return x if block else x[None]

    return run


def _non_finite(index: int, raw: np.ndarray, path: Path) -> BadInputError:
    """Why sample `index` holds NaN or Inf: as stored, or only after preprocessing in float32."""
    if not _all_finite(raw):
        return BadInputError(f"sample {index} contains NaN or Inf", path=path, fix="clean or drop that sample")
    return BadInputError(
        f"sample {index} overflows to Inf in float32 after preprocessing (x * scale, then (x - mean) / std)",
        path=path,
        fix="check preprocess.scale, mean and std against the data's range (float32 ends near 3.4e38)",
    )


def _all_finite(x: np.ndarray) -> bool:
    """No NaN or Inf in `x`. A finite sum proves it at the cost of one reduction; only a non-finite sum (a NaN,
    an Inf, or finite values that overflow when added) needs the element-wise test."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is an answer here, not a problem
        total = x.sum()
    return math.isfinite(total) or bool(np.isfinite(x).all())


def _per_channel_normalized(x: np.ndarray, mean: np.ndarray, std: np.ndarray, layout: str | None) -> np.ndarray:
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
