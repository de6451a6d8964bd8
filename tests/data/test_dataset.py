"""compiler_kit.data.dataset: seeded selection, preprocessing, layout, per-sample checks and file hashes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compiler_kit.data.dataset import hash_files, open_dataset, preprocess_sample, select
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import DataSpec, InputSpec, Preprocess

IMAGE = InputSpec(name="image", shape=[1, 16, 16, 1], layout="NHWC")
SCALE = Preprocess(scale=1 / 255)


def npz(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> DataSpec:
    arrays = {"x": x} if y is None else {"x": x, "y": y}
    np.savez(path, **arrays)
    return DataSpec(path=path, labels_key=None if y is None else "y")


def open_all(spec: DataSpec, input_spec: InputSpec = IMAGE, preprocess: Preprocess = SCALE, num_samples=None):
    return open_dataset(spec, preprocess, input_spec, num_samples, seed=0)


# --- select ---------------------------------------------------------------------------------------------------


def test_select_is_seeded_sorted_and_without_repeats() -> None:
    first = select(1000, 50, seed=7)
    assert len(first) == 50
    assert len(set(first.tolist())) == 50
    assert np.all(np.diff(first) > 0)
    assert first.min() >= 0 and first.max() < 1000
    np.testing.assert_array_equal(select(1000, 50, seed=7), first)
    assert not np.array_equal(select(1000, 50, seed=8), first)


def test_select_is_a_spread_not_a_prefix() -> None:
    chosen = select(1000, 100, seed=0)
    assert chosen.max() > 500  # drawn from the whole set, not the first 100
    assert not np.array_equal(chosen, np.arange(100))


@pytest.mark.parametrize(("length", "num_samples"), [(10, None), (10, 10), (10, 11), (1, 200)])
def test_select_takes_everything_when_none_or_too_many(length: int, num_samples: int | None) -> None:
    np.testing.assert_array_equal(select(length, num_samples, seed=3), np.arange(length))


# --- preprocess_sample: scale, mean/std, layout -----------------------------------------------------------------------


def test_scale_is_applied_before_mean_and_std() -> None:
    raw = np.full((2, 2, 1), 10, np.uint8)
    x = preprocess_sample(
        raw, None, InputSpec(name="a", shape=[1, 2, 2, 1]), Preprocess(scale=0.1, mean=[0.5], std=[0.25])
    )
    assert x.shape == (1, 2, 2, 1)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, 2.0, rtol=1e-6)  # (10 * 0.1 - 0.5) / 0.25; mean first would give 3.8


def test_per_channel_mean_and_std_nhwc() -> None:
    raw = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    spec = InputSpec(name="a", shape=[1, 2, 3, 3], layout="NHWC")
    pre = Preprocess(scale=0.5, mean=[1.0, 2.0, 3.0], std=[1.0, 2.0, 4.0])
    x = preprocess_sample(raw, "NHWC", spec, pre)
    expected = (raw.astype(np.float32) * 0.5 - np.array([1.0, 2.0, 3.0])) / np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(x[0], expected, rtol=1e-6)
    assert x[0, 1, 2, 2] == pytest.approx((17 * 0.5 - 3.0) / 4.0)


def test_nhwc_samples_are_transposed_for_an_nchw_input() -> None:
    raw = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # H=2, W=3, C=4
    spec = InputSpec(name="a", shape=[1, 4, 2, 3], layout="NCHW")
    pre = Preprocess(mean=[0.0, 1.0, 2.0, 3.0], std=[1.0, 1.0, 1.0, 2.0])
    x = preprocess_sample(raw, "NHWC", spec, pre)
    assert x.shape == (1, 4, 2, 3)
    chw = raw.transpose(2, 0, 1)
    np.testing.assert_array_equal(x[0, 0], chw[0])
    np.testing.assert_array_equal(x[0, 1], chw[1] - 1.0)
    np.testing.assert_array_equal(x[0, 3], (chw[3] - 3.0) / 2.0)
    assert x[0, 3, 1, 2] == (raw[1, 2, 3] - 3.0) / 2.0


def test_nchw_samples_are_transposed_for_an_nhwc_input() -> None:
    raw = np.arange(3 * 2 * 5, dtype=np.float32).reshape(3, 2, 5)  # C=3, H=2, W=5
    spec = InputSpec(name="a", shape=[1, 2, 5, 3], layout="NHWC")
    x = preprocess_sample(raw, "NCHW", spec, Preprocess(mean=[0.0, 0.0, 10.0]))
    assert x.shape == (1, 2, 5, 3)
    np.testing.assert_array_equal(x[0, ..., :2], raw.transpose(1, 2, 0)[..., :2])
    np.testing.assert_array_equal(x[0, ..., 2], raw[2] - 10.0)


@pytest.mark.parametrize("stored", [None, "NCHW"])
def test_no_transposition_without_a_layout_difference(stored: str | None) -> None:
    raw = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    x = preprocess_sample(raw, stored, InputSpec(name="a", shape=[1, 2, 3, 4], layout="NCHW"), Preprocess())
    np.testing.assert_array_equal(x[0], raw)


def test_mean_std_length_mismatch_is_refused() -> None:
    raw = np.zeros((2, 2, 3), np.float32)
    spec = InputSpec(name="a", shape=[1, 2, 2, 3], layout="NHWC")
    with pytest.raises(BadInputError, match=re.escape("preprocess.mean/std have 2/1 values for 3 channels")) as caught:
        preprocess_sample(raw, "NHWC", spec, Preprocess(mean=[0.5, 0.5]))
    assert "fix: give 1 or 3 values" in str(caught.value)
    with pytest.raises(BadInputError, match=re.escape("preprocess.mean/std have 3/4 values for 3 channels")):
        preprocess_sample(raw, "NHWC", spec, Preprocess(mean=[0.5] * 3, std=[1.0] * 4))


def test_per_channel_mean_needs_a_layout() -> None:
    with pytest.raises(BadInputError, match=re.escape("per-channel preprocess.mean/std need a 3-D image sample")):
        preprocess_sample(
            np.zeros((2, 2, 3)), None, InputSpec(name="a", shape=[1, 2, 2, 3]), Preprocess(mean=[1, 2, 3])
        )


# --- open_dataset on the digits -------------------------------------------------------------------------------


def test_digits_subset_is_seeded_preprocessed_and_labelled(digits_dir: Path) -> None:
    path = digits_dir / "eval.npz"
    with np.load(path) as archive:
        x, y = archive["x"], archive["y"]
    spec = DataSpec(path=path, labels_key="y")
    dataset = open_dataset(spec, SCALE, IMAGE, num_samples=50, seed=4)

    assert len(dataset) == 50
    np.testing.assert_array_equal(dataset.indices, select(360, 50, 4))
    np.testing.assert_array_equal(dataset.labels, y[dataset.indices])
    samples = list(dataset)
    assert len(samples) == 50
    for index, sample in zip(dataset.indices, samples, strict=True):
        assert sample.shape == (1, 16, 16, 1)
        assert sample.dtype == np.float32
        np.testing.assert_allclose(sample[0], x[index] / 255.0, rtol=1e-6)
    assert min(s.min() for s in samples) >= 0.0 and max(s.max() for s in samples) == pytest.approx(1.0)
    assert dataset.sha256 == hash_files([path], digits_dir)


def test_describe(digits_dir: Path) -> None:
    path = digits_dir / "eval.npz"
    dataset = open_dataset(DataSpec(path=path, labels_key="y"), SCALE, IMAGE, num_samples=20, seed=0)
    assert dataset.describe() == {
        "path": str(path),
        "sha256": dataset.sha256,
        "samples": 20,
        "source_samples": 360,
        "labels": True,
        "class_names": None,
    }
    unlabelled = open_dataset(DataSpec(path=path), SCALE, IMAGE, num_samples=None, seed=0)
    assert (unlabelled.describe()["samples"], unlabelled.describe()["labels"]) == (360, False)
    assert unlabelled.labels is None


def test_png_folder_gives_the_same_floats_as_the_npz(digits_dir: Path, tmp_path: Path) -> None:
    with np.load(digits_dir / "calibration.npz") as archive:
        x, y = archive["x"][:40], archive["y"][:40]
    for index, (image, label) in enumerate(zip(x, y, strict=True)):
        (tmp_path / f"digit_{label}").mkdir(exist_ok=True)
        Image.fromarray(image[..., 0]).save(tmp_path / f"digit_{label}" / f"{index:02d}.png")
    order = np.lexsort((np.arange(len(y)), y))

    pre = Preprocess(resize=(16, 16), color="grayscale", scale=1 / 255)
    images = open_dataset(DataSpec(path=tmp_path), pre, IMAGE, num_samples=None, seed=0)
    arrays = open_all(npz(tmp_path.parent / "subset.npz", x, y))

    assert len(images) == 40
    np.testing.assert_array_equal(images.labels, y[order])
    assert images.describe()["class_names"] == [f"digit_{k}" for k in sorted(set(y.tolist()))]
    for position, sample in enumerate(images):
        np.testing.assert_array_equal(sample, arrays.sample(int(order[position])))
    assert images.sha256 == hash_files(images.source.files, tmp_path)


def test_digests_are_per_sample(tmp_path: Path) -> None:
    x = np.zeros((4, 16, 16, 1), np.uint8)
    x[1] = 1
    x[2] = 1  # equal to sample 1
    x[3] = 200
    assert len(open_all(npz(tmp_path / "a.npz", x)).digests()) == 3


def test_a_subset_streams_the_samples_at_its_positions_with_their_labels(tmp_path: Path) -> None:
    x = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 16, 16, 1), np.uint8)
    dataset = open_all(npz(tmp_path / "a.npz", x, np.arange(10) % 3), num_samples=6)
    subset = dataset.subset(np.array([1, 4]))
    assert len(subset) == 2 and subset.indices.tolist() == dataset.indices[[1, 4]].tolist()
    assert [float(sample.max()) * 255 for sample in subset] == pytest.approx(dataset.indices[[1, 4]].tolist())
    assert subset.labels is not None and subset.labels.tolist() == (dataset.indices[[1, 4]] % 3).tolist()
    assert len(dataset) == 6  # the set itself is left as it was


# --- bad data -------------------------------------------------------------------------------------------------


def test_empty_data_set(tmp_path: Path) -> None:
    spec = npz(tmp_path / "empty.npz", np.zeros((0, 16, 16, 1), np.uint8))
    with pytest.raises(BadInputError, match="the data set is empty") as caught:
        open_all(spec)
    assert str(caught.value).startswith(f"{spec.path}: ")
    assert caught.value.exit_code == 2


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(BadInputError, match="the data set is empty"):
        open_all(DataSpec(path=tmp_path), preprocess=Preprocess(color="grayscale"))


@pytest.mark.parametrize(("bad_index", "value"), [(3, np.nan), (5, np.inf), (0, -np.inf)])
def test_nan_or_inf_sample_names_its_index(tmp_path: Path, bad_index: int, value: float) -> None:
    x = np.ones((6, 16, 16, 1), np.float32)
    x[bad_index, 4, 7, 0] = value
    spec = npz(tmp_path / "bad.npz", x)
    dataset = open_all(spec)  # opening is cheap; reading finds the bad sample
    good = (bad_index + 1) % 6
    assert dataset.sample(good).shape == (1, 16, 16, 1)
    with pytest.raises(BadInputError, match=f"sample {bad_index} contains NaN or Inf") as caught:
        dataset.sample(bad_index)
    assert str(caught.value).startswith(f"{spec.path}: ")
    with pytest.raises(BadInputError, match=f"sample {bad_index} contains NaN or Inf"):
        dataset.digests()


def test_labels_count_differs_from_samples(tmp_path: Path) -> None:
    spec = npz(tmp_path / "a.npz", np.zeros((4, 16, 16, 1), np.uint8), np.arange(3))
    with pytest.raises(BadInputError, match="3 labels for 4 samples") as caught:
        open_all(spec)
    assert "fix: give exactly one integer label per sample" in str(caught.value)


def test_2d_labels_are_refused(tmp_path: Path) -> None:
    spec = npz(tmp_path / "a.npz", np.zeros((4, 16, 16, 1), np.uint8), np.zeros((4, 10), np.int64))
    with pytest.raises(BadInputError, match=r"labels must be a 1-D integer array, got shape \(4, 10\)"):
        open_all(spec)


def test_sample_shape_must_match_the_input(tmp_path: Path) -> None:
    spec = npz(tmp_path / "small.npz", np.zeros((3, 8, 8, 1), np.uint8))
    dataset = open_all(spec)
    expected = (
        "sample 2 has shape [8, 8, 1] after preprocessing, but input 'image' takes [16, 16, 1] (shape [1, 16, 16, 1])"
    )
    with pytest.raises(BadInputError, match=re.escape(expected)) as caught:
        dataset.sample(2)
    assert str(caught.value).startswith(f"{spec.path}: ")
    assert "fix: fix inputs[0].shape, the data's layout, or preprocess.resize / color" in str(caught.value)


def test_missing_channel_axis_is_a_shape_mismatch(tmp_path: Path) -> None:
    dataset = open_all(npz(tmp_path / "a.npz", np.zeros((2, 16, 16), np.uint8)))
    with pytest.raises(BadInputError, match=r"sample 0 has shape \[16, 16\] after preprocessing"):
        list(dataset)


def test_stored_layout_makes_the_shape_fit(tmp_path: Path) -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # NCHW: C=3, H=4, W=5
    np.savez(tmp_path / "a.npz", x=x)
    nhwc = InputSpec(name="a", shape=[1, 4, 5, 3], layout="NHWC")
    with pytest.raises(BadInputError, match=r"has shape \[3, 4, 5\] after preprocessing"):
        open_all(DataSpec(path=tmp_path / "a.npz"), nhwc, Preprocess()).sample(0)
    dataset = open_all(DataSpec(path=tmp_path / "a.npz", layout="NCHW"), nhwc, Preprocess())
    np.testing.assert_array_equal(dataset.sample(1)[0], x[1].transpose(1, 2, 0))


# --- hash_files -----------------------------------------------------------------------------------------------


def test_hash_changes_when_a_byte_changes(tmp_path: Path, digits_dir: Path) -> None:
    path = tmp_path / "eval.npz"
    shutil.copy(digits_dir / "eval.npz", path)
    before = hash_files([path], tmp_path)
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x01
    path.write_bytes(bytes(data))
    after = hash_files([path], tmp_path)
    assert before != after
    assert len(before) == len(after) == 64


def test_hash_is_equal_for_equal_content(tmp_path: Path, digits_dir: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        shutil.copy(digits_dir / "eval.npz", tmp_path / folder / "eval.npz")
    one = hash_files([tmp_path / "one" / "eval.npz"], tmp_path / "one")
    assert one == hash_files([tmp_path / "two" / "eval.npz"], tmp_path / "two")
    assert one == hash_files([tmp_path / "one" / "eval.npz"], tmp_path / "one")  # repeatable


def test_hash_covers_names_order_and_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"123")
    (tmp_path / "b.bin").write_bytes(b"456")
    (tmp_path / "c.bin").write_bytes(b"123")
    a, b, c = (tmp_path / name for name in ("a.bin", "b.bin", "c.bin"))
    assert hash_files([a], tmp_path) != hash_files([c], tmp_path)  # same bytes, other name
    assert hash_files([a, b], tmp_path) != hash_files([b, a], tmp_path)
    assert hash_files([a, b], tmp_path) != hash_files([a], tmp_path)
    (tmp_path / "b.bin").write_bytes(b"457")
    assert hash_files([a, b], tmp_path) != hash_files([a, c], tmp_path)


def test_open_dataset_hash_follows_the_labels_file(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 16, 16, 1), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    spec = DataSpec(path=tmp_path / "x.npy", labels_path=tmp_path / "y.npy")
    before = open_all(spec).sha256
    np.save(tmp_path / "y.npy", np.array([0, 1, 1]))
    after = open_all(spec)
    assert after.sha256 != before
    assert after.labels.tolist() == [0, 1, 1]
    assert after.sha256 == hash_files([tmp_path / "x.npy", tmp_path / "y.npy"], tmp_path)
