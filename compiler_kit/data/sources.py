"""Raw sample sources, keyed by format: they read samples as stored, before any preprocessing.

Each source knows its length, reads one sample at a time (so large sets stream), and carries labels when the
data set has them. Formats: `npz` (an archive with a samples array and optional labels array), `npy` (one
array, memory-mapped, with labels in a separate .npy) and `images` (a folder; one subfolder per class gives
labels). Every problem is a `BadInputError` naming the file.

Files are checked before they are read: no sample may exceed the recipe's MAX_SAMPLE_ELEMENTS, and an .npz
member's header is read before its data, since NumPy allocates whatever a header declares.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from compiler_kit.errors import BadInputError, broken_symlink
from compiler_kit.recipe import MAX_SAMPLE_ELEMENTS, DataSpec, Preprocess

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_NUMPY_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)
# An .npz member is read whole into memory (only an .npy file is memory-mapped): 2 GiB holds a few thousand
# calibration images of 224x224x3 float32 several times over.
MAX_NPZ_ARRAY_BYTES = 2 << 30
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
    (3, 0): np.lib.format.read_array_header_2_0,  # 3.0 only allows UTF-8 field names in the same header
}


@dataclass
class RawSource:
    """Samples as stored (`read(i)`), in `layout` when they are images, with optional integer labels.
    `read_many(indices)`, when the format has it, reads several samples as one array (count, ...)."""

    length: int
    read: Callable[[int], np.ndarray]
    labels: np.ndarray | None = None
    layout: str | None = None
    class_names: list[str] | None = field(default=None)
    files: list[Path] = field(default_factory=list)
    read_many: Callable[[np.ndarray], np.ndarray] | None = None


def open_source(spec: DataSpec, preprocess: Preprocess, field: str = "data") -> RawSource:
    path = spec.path
    if not path.exists():
        raise _missing(path, field)
    fmt = spec.format if spec.format != "auto" else _detect_format(path)
    return _READERS[fmt](spec, preprocess)


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "images"
    if path.suffix.lower() in (".npz", ".npy"):
        return path.suffix.lower()[1:]
    raise BadInputError(
        f"cannot tell the data format from the suffix '{path.suffix}'",
        path=path,
        fix="use an .npz or .npy file or a folder of images, or set format: npz | npy | images",
    )


_REWRITE = "write the data again with numpy.save / numpy.savez"


def _missing(path: Path, field: str) -> BadInputError:
    """Not there, or a symbolic link that cannot be followed (to nothing, or round in a loop)."""
    not_found = BadInputError(
        f"data set not found ({field}.path)", path=path, fix=f"check {field}.path in the recipe (relative to it)"
    )
    return broken_symlink(path, "point the link at the data") or not_found


def _load_array(
    path: Path, what: str, mmap_mode: Literal["r", "r+", "w+", "c"] | None = None
) -> np.ndarray | np.lib.npyio.NpzFile:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except ValueError as exc:
        if "pickled" not in str(exc):
            raise BadInputError(f"cannot read {what} as a NumPy file: {exc}", path=path, fix=_REWRITE) from None
        # numpy takes whatever is neither an .npy header nor a zip for a pickle, which is never loaded here
        raise BadInputError(
            f"cannot read {what}: the file is neither an .npy array nor an .npz archive (truncated, another format, "
            "or a pickle)",
            path=path,
            fix="write the data with numpy.save (.npy) or numpy.savez (.npz)",
        ) from None
    except _NUMPY_READ_ERRORS as exc:
        raise BadInputError(f"cannot read {what} as a NumPy file: {exc}", path=path, fix=_REWRITE) from None


def _checked_labels(labels: np.ndarray, count: int, path: Path) -> np.ndarray:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BadInputError(
            f"labels must be a 1-D integer array, got shape {labels.shape} of {labels.dtype}",
            path=path,
            fix="store one integer class index per sample (e.g. y.argmax(axis=1) for one-hot labels)",
        )
    if len(labels) != count:
        raise BadInputError(
            f"{len(labels)} labels for {count} samples",
            path=path,
            fix="give exactly one integer label per sample",
        )
    return np.asarray(labels)


def _read_npz(spec: DataSpec, _: Preprocess) -> RawSource:
    archive = _load_array(spec.path, "the archive")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BadInputError("is not an .npz archive", path=spec.path, fix="set format: npy for a single array")
    with archive:
        keys = list(archive.keys())
        for key in (spec.samples_key, spec.labels_key):
            if key is not None and key not in keys:
                raise BadInputError(
                    f"has no array '{key}' (arrays: {', '.join(keys)})",
                    path=spec.path,
                    fix="set samples_key / labels_key to one of those names",
                )
            if key is not None:
                _check_member(archive, key, spec.path)
        try:
            samples = archive[spec.samples_key]
            labels = archive[spec.labels_key] if spec.labels_key else None
        except _NUMPY_READ_ERRORS as exc:
            raise BadInputError(f"cannot read the archive: {exc}", path=spec.path, fix=_REWRITE) from None
    return _array_source(samples, labels, spec)


def _check_member(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> None:
    """The member must be an array whose declared size the archive holds and memory can take."""
    name = key if key in archive.zip.namelist() else f"{key}.npy"
    try:
        with archive.zip.open(name) as member:
            version = np.lib.format.read_magic(member)
            if version not in _NPY_HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = _NPY_HEADER_READERS[version](member)
            stored = archive.zip.getinfo(name).file_size - member.tell()  # the data after the header
    except _NUMPY_READ_ERRORS as exc:
        raise BadInputError(f"array '{key}' is not a readable .npy member: {exc}", path=path, fix=_REWRITE) from None
    declared = math.prod(shape) * dtype.itemsize
    if declared > stored:
        raise BadInputError(
            f"array '{key}' declares shape {shape} of {dtype} ({declared} bytes) but holds {stored} bytes: "
            "the archive is truncated or corrupt",
            path=path,
            fix="write the archive again with numpy.savez",
        )
    if declared > MAX_NPZ_ARRAY_BYTES:
        raise BadInputError(
            f"array '{key}' has {declared} bytes; .npz arrays are read whole into memory, at most "
            f"{MAX_NPZ_ARRAY_BYTES}",
            path=path,
            fix="save the samples with numpy.save as an .npy file, which is read sample by sample",
        )


def _read_npy(spec: DataSpec, _: Preprocess) -> RawSource:
    samples = _single_array(spec.path, "the samples", mmap_mode="r")
    # memory-mapped too: a header declaring more than the file holds fails at once instead of allocating it
    labels = _single_array(spec.labels_path, "the labels", mmap_mode="r") if spec.labels_path else None
    return _array_source(samples, labels, spec)


def _single_array(path: Path, what: str, mmap_mode: Literal["r", "r+", "w+", "c"] | None = None) -> np.ndarray:
    array = _load_array(path, what, mmap_mode)
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise BadInputError(
            f"{what} file is an .npz archive, not an .npy array",
            path=path,
            fix="set format: npz (with samples_key / labels_key), or save a single array with numpy.save",
        )
    return array


def _array_source(samples: np.ndarray, labels: np.ndarray | None, spec: DataSpec) -> RawSource:
    if samples.ndim < 2:
        raise BadInputError(
            f"samples must be an array of shape (count, ...), got shape {samples.shape}",
            path=spec.path,
            fix="stack the samples along a first axis: (count, *one sample's shape)",
        )
    if not (np.issubdtype(samples.dtype, np.number) or samples.dtype == np.bool_):
        raise BadInputError(
            f"samples must be numeric, got {samples.dtype}", path=spec.path, fix="store the samples as numbers"
        )
    if (elements := math.prod(samples.shape[1:])) > MAX_SAMPLE_ELEMENTS:
        raise BadInputError(
            f"each sample has shape {list(samples.shape[1:])}: {elements} elements, more than the "
            f"{MAX_SAMPLE_ELEMENTS} a model input may have",
            path=spec.path,
            fix="check samples_key (the array of samples, not of something else) and the array's first axis",
        )
    if labels is not None:
        labels = _checked_labels(labels, len(samples), spec.labels_path or spec.path)
    return RawSource(
        len(samples),
        lambda i: np.asarray(samples[i]),
        labels,
        spec.layout,
        files=_files(spec),
        read_many=lambda indices: np.asarray(samples[indices]),  # a memory-mapped .npy reads only those rows
    )


def _files(spec: DataSpec) -> list[Path]:
    return [spec.path] + ([spec.labels_path] if spec.labels_path else [])


def _read_images(spec: DataSpec, preprocess: Preprocess) -> RawSource:
    root = spec.path
    if not root.is_dir():
        raise BadInputError("format images needs a folder", path=root, fix="point path at a folder of images")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if class_dirs:
        per_class = [sorted(_images_in(d)) for d in class_dirs]
        files = [f for group in per_class for f in group]
        labels = np.concatenate([np.full(len(g), k, dtype=np.int64) for k, g in enumerate(per_class)])
        names: list[str] | None = [d.name for d in class_dirs]
    else:
        files, labels, names = sorted(_images_in(root)), None, None
    return RawSource(len(files), lambda i: decode_image(files[i], preprocess), labels, "NHWC", names, files)


def _images_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def decode_image(path: Path, preprocess: Preprocess) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    channels = 1 if preprocess.color == "grayscale" else 3
    try:
        with Image.open(path) as opened:
            width, height = opened.size  # from the header: check it before decoding allocates the pixels
            if width * height * channels > MAX_SAMPLE_ELEMENTS:
                raise BadInputError(
                    f"the image is {width}x{height}x{channels}: more than the {MAX_SAMPLE_ELEMENTS} elements a "
                    "model input may have",
                    path=path,
                    fix="shrink or remove the image",
                )
            image = opened.convert("L" if channels == 1 else "RGB")
            if preprocess.resize is not None:
                height, width = preprocess.resize
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise BadInputError(
            f"cannot decode the image: {exc}", path=path, fix="replace or remove the file (PNG, JPEG, BMP, ...)"
        ) from None
    return pixels[..., None] if pixels.ndim == 2 else pixels


_READERS: dict[str, Callable[[DataSpec, Preprocess], RawSource]] = {
    "npz": _read_npz,
    "npy": _read_npy,
    "images": _read_images,
}
