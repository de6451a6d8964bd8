"""Hostile data files: NaN and Inf (stored, or made by preprocessing), headers that declare more than a file holds,
members that are no arrays, image bombs. Each is a BadInputError (exit 2) naming the file, never an allocation of
what a header claims."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from compiler_kit.data import open_dataset, sources
from compiler_kit.data.sources import open_source
from compiler_kit.errors import EXIT_BAD_INPUT, BadInputError
from compiler_kit.recipe import MAX_SAMPLE_ELEMENTS, DataSpec, InputSpec, Preprocess

IMAGE = InputSpec(name="image", shape=[1, 4, 4, 1], layout="NHWC")
BAD_INDEX = 3


def refused(call, path: Path, *fragments: str) -> str:
    with pytest.raises(BadInputError) as raised:
        call()
    message = str(raised.value)
    assert raised.value.exit_code == EXIT_BAD_INPUT and message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def write_samples(path: Path, x: np.ndarray) -> DataSpec:
    if path.suffix == ".npz":
        np.savez(path, x=x)
    else:
        np.save(path, x)
    return DataSpec(path=path)


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# --- NaN and Inf: as stored, and made by preprocessing ---


def _stored(value: float, dtype: type = np.float32) -> np.ndarray:
    x = np.ones((6, 4, 4, 1), dtype)
    x[BAD_INDEX, 1, 2, 0] = value
    return x


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the overflow is what is tested
@pytest.mark.parametrize("suffix", [".npz", ".npy"])
@pytest.mark.parametrize(
    ("samples", "preprocess", "fragment"),
    [
        (_stored(np.nan), Preprocess(), "contains NaN or Inf"),
        (_stored(np.inf), Preprocess(), "contains NaN or Inf"),
        (_stored(-np.inf), Preprocess(), "contains NaN or Inf"),
        (_stored(1e300, np.float64), Preprocess(), "overflows to Inf in float32 after preprocessing"),
        (_stored(255.0), Preprocess(scale=1e37), "overflows to Inf in float32 after preprocessing"),
        (_stored(255.0), Preprocess(std=[1e-37]), "overflows to Inf in float32 after preprocessing"),
    ],
    ids=["nan", "inf", "-inf", "float64-beyond-float32", "scale-overflows", "tiny-std-overflows"],
)
def test_non_finite_samples_name_the_file_and_the_sample(
    tmp_path: Path, suffix: str, samples: np.ndarray, preprocess: Preprocess, fragment: str
) -> None:
    spec = write_samples(tmp_path / f"data{suffix}", samples)
    dataset = open_dataset(spec, preprocess, IMAGE, num_samples=None, seed=0)
    # digests() reads every sample as the build does before converting anything (in blocks where it can)
    refused(dataset.digests, spec.path, f"sample {BAD_INDEX} {fragment}")


# --- headers and members that lie ---


def _npz_with_member(path: Path, member: str, data: bytes) -> DataSpec:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
    return DataSpec(path=path)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (npy_header((10**7, 100_000, 3)) + bytes(64), "declares shape (10000000, 100000, 3)"),
        (npy_header((4, 2)) + bytes(8), "the archive is truncated or corrupt"),
        (b"plain bytes, not an array", "is not a readable .npy member"),
        (b"\x93NUMPY\x09\x00" + bytes(16), "is not a readable .npy member"),
    ],
    ids=["huge-header", "short-data", "not-an-array", "unknown-version"],
)
def test_an_npz_member_is_checked_before_it_is_read(tmp_path: Path, data: bytes, fragment: str) -> None:
    spec = _npz_with_member(tmp_path / "set.npz", "x.npy", data)
    refused(lambda: open_source(spec, Preprocess()), spec.path, "array 'x'", fragment)


def test_a_huge_labels_header_is_not_allocated(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 4, 4, 1), np.float32))
    labels = tmp_path / "y.npy"
    labels.write_bytes(npy_header((10**12,), "<i8") + bytes(64))
    spec = DataSpec(path=tmp_path / "x.npy", labels_path=labels)
    refused(lambda: open_source(spec, Preprocess()), labels, "cannot read the labels")


def test_npz_arrays_beyond_the_memory_limit_point_to_npy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_NPZ_ARRAY_BYTES", 1000)  # a real 2 GiB archive would be slow to write
    spec = write_samples(tmp_path / "set.npz", np.zeros((100, 4, 4, 1), np.float32))
    refused(lambda: open_source(spec, Preprocess()), spec.path, "6400 bytes", "save the samples with numpy.save")


def test_a_sample_larger_than_any_model_input_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.npy"  # sparse on disk: only the header is written
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(2, MAX_SAMPLE_ELEMENTS + 1)).flush()
    refused(lambda: open_source(DataSpec(path=path), Preprocess()), path, f"more than the {MAX_SAMPLE_ELEMENTS}")


# --- images whose header declares a huge picture ---


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height", "fragment"),
    [
        (100_000, 100_000, "decompression bomb"),  # Pillow's own limit, raised when the file is opened
        (9_000, 9_000, f"more than the {MAX_SAMPLE_ELEMENTS} elements"),  # ours, before decoding
    ],
)
def test_an_image_bomb_is_refused_before_decoding(tmp_path: Path, width: int, height: int, fragment: str) -> None:
    path = tmp_path / "images" / "bomb.png"
    path.parent.mkdir()
    path.write_bytes(png_header_only(width, height))
    source = open_source(DataSpec(path=path.parent), Preprocess())
    refused(lambda: source.read(0), path, fragment)
