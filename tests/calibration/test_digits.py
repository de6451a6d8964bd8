"""calibration.digits: a stratified, disjoint, reproducible three-way split of the 1,797 upsampled digits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from calibration import digits

PARTS = ("train", "calibration", "eval")


@pytest.fixture(scope="module")
def everything() -> tuple[np.ndarray, np.ndarray]:
    return digits.upsampled_digits()


@pytest.fixture(scope="module")
def splits(digits_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for part in PARTS:
        with np.load(digits_dir / f"{part}.npz") as archive:
            assert sorted(archive.keys()) == ["x", "y"]
            out[part] = archive["x"], archive["y"]
    return out


def test_upsampled_digits_are_uint8_16x16(everything) -> None:
    images, labels = everything
    assert images.shape == (1797, 16, 16, 1)
    assert images.dtype == np.uint8
    assert labels.shape == (1797,)
    assert labels.dtype == np.int64
    assert (images.min(), images.max()) == (0, 255)
    assert sorted(set(labels.tolist())) == list(range(10))


def test_split_indices_are_disjoint_and_cover_everything(everything) -> None:
    _, labels = everything
    parts = digits.split_indices(labels)
    assert list(parts) == list(PARTS)
    sizes = {part: len(indices) for part, indices in parts.items()}
    assert sizes == {"train": 1078, "calibration": 359, "eval": 360}
    for indices in parts.values():
        assert np.all(np.diff(indices) > 0)  # sorted, no repeats
    combined = np.concatenate(list(parts.values()))
    assert len(combined) == 1797
    np.testing.assert_array_equal(np.sort(combined), np.arange(1797))
    assert not set(parts["calibration"].tolist()) & set(parts["eval"].tolist())
    assert not set(parts["train"].tolist()) & (set(parts["calibration"].tolist()) | set(parts["eval"].tolist()))


def test_split_indices_are_seeded(everything) -> None:
    _, labels = everything
    first, again, other = digits.split_indices(labels), digits.split_indices(labels), digits.split_indices(labels, 1)
    for part in PARTS:
        np.testing.assert_array_equal(first[part], again[part])
    assert not np.array_equal(first["eval"], other["eval"])


def test_files_hold_uint8_16x16x1_images_and_int64_labels(splits) -> None:
    for part, (x, y) in splits.items():
        assert x.dtype == np.uint8, part
        assert x.shape[1:] == (16, 16, 1), part
        assert y.dtype == np.int64, part
        assert y.shape == (len(x),), part
    assert {part: len(x) for part, (x, _) in splits.items()} == {"train": 1078, "calibration": 359, "eval": 360}


def test_files_are_the_split_of_the_whole_set(splits, everything) -> None:
    images, labels = everything
    for part, indices in digits.split_indices(labels).items():
        x, y = splits[part]
        np.testing.assert_array_equal(x, images[indices])
        np.testing.assert_array_equal(y, labels[indices])


def test_files_together_are_every_sample_exactly_once(splits, everything) -> None:
    def keys(x: np.ndarray, y: np.ndarray) -> list[str]:
        return sorted(
            hashlib.sha1(image.tobytes() + bytes([label])).hexdigest() for image, label in zip(x, y, strict=True)
        )

    images, labels = everything
    x = np.concatenate([splits[part][0] for part in PARTS])
    y = np.concatenate([splits[part][1] for part in PARTS])
    assert keys(x, y) == keys(images, labels)


def test_every_split_is_stratified_over_all_ten_classes(splits, everything) -> None:
    _, labels = everything
    overall = np.bincount(labels, minlength=10)
    for part, (_, y) in splits.items():
        counts = np.bincount(y, minlength=10)
        assert len(counts) == 10, part
        assert counts.min() > 0, part
        expected = overall * digits.SPLITS[part]
        assert np.all(np.abs(counts - expected) <= 1.5), (part, counts, expected)


def test_write_splits_is_byte_for_byte_reproducible(tmp_path: Path, digits_dir: Path) -> None:
    paths = digits.write_splits(tmp_path / "again")
    assert paths == {part: tmp_path / "again" / f"{part}.npz" for part in PARTS}
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["calibration.npz", "eval.npz", "train.npz"]
    for part in PARTS:
        assert paths[part].read_bytes() == (digits_dir / f"{part}.npz").read_bytes(), part
