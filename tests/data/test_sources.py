"""compiler_kit.data.sources: npz, npy and image-folder readers, format detection, and bad files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compiler_kit.data.sources import open_source
from compiler_kit.errors import BadInputError
from compiler_kit.recipe import DataSpec, Preprocess

GRAY = Preprocess(color="grayscale")


def spec(path: Path, **fields: object) -> DataSpec:
    return DataSpec(path=path, **fields)


def write_class_folders(root: Path, x: np.ndarray, y: np.ndarray, mode: str = "L") -> np.ndarray:
    """Write sample i as root/<label>/<i>.png; return the order the reader yields them in (class, then index)."""
    for index, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).convert(mode).save(folder / f"{index:04d}.png")
    return np.lexsort((np.arange(len(y)), y))


@pytest.fixture(scope="module")
def digits_eval(digits_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(digits_dir / "eval.npz") as archive:
        return archive["x"], archive["y"]


@pytest.fixture(scope="module")
def eval_pngs(digits_eval, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """The digits eval split as grayscale PNGs, one subfolder per class."""
    root = tmp_path_factory.mktemp("eval_png")
    return root, write_class_folders(root, *digits_eval)


# --- npz ------------------------------------------------------------------------------------------------------


def test_npz_with_samples_and_labels_keys(digits_dir: Path, digits_eval) -> None:
    x, y = digits_eval
    path = digits_dir / "eval.npz"
    source = open_source(spec(path, samples_key="x", labels_key="y"), Preprocess())
    assert source.length == len(x) == 360
    assert source.read(0).shape == (16, 16, 1)
    assert source.read(0).dtype == np.uint8
    np.testing.assert_array_equal(source.read(17), x[17])
    np.testing.assert_array_equal(source.read(359), x[359])
    np.testing.assert_array_equal(source.labels, y)
    assert source.layout is None
    assert source.class_names is None
    assert source.files == [path]


def test_npz_with_other_key_names(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    samples = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    np.savez(path, images=samples, targets=np.array([3, 1, 2, 0]), x=np.zeros((4, 1)))
    source = open_source(spec(path, samples_key="images", labels_key="targets", layout="NCHW"), Preprocess())
    assert source.length == 4
    np.testing.assert_array_equal(source.read(2), samples[2])
    assert source.labels.tolist() == [3, 1, 2, 0]
    assert source.layout == "NCHW"


def test_npz_without_labels_key_has_no_labels(digits_dir: Path) -> None:
    source = open_source(spec(digits_dir / "calibration.npz"), Preprocess())
    assert source.length == 359
    assert source.labels is None


@pytest.mark.parametrize(
    ("fields", "missing"), [({"samples_key": "images"}, "images"), ({"labels_key": "labels"}, "labels")]
)
def test_npz_missing_key_names_the_available_arrays(digits_dir: Path, fields: dict, missing: str) -> None:
    path = digits_dir / "eval.npz"
    with pytest.raises(BadInputError, match=f"has no array '{missing}' \\(arrays: x, y\\)") as caught:
        open_source(spec(path, **fields), Preprocess())
    assert str(caught.value).startswith(f"{path}: ")
    assert "fix: set samples_key / labels_key to one of those names" in str(caught.value)
    assert caught.value.exit_code == 2


def test_npz_labels_must_match_samples_count(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    np.savez(path, x=np.zeros((4, 2, 2)), y=np.arange(3))
    with pytest.raises(BadInputError, match="3 labels for 4 samples"):
        open_source(spec(path, labels_key="y"), Preprocess())


@pytest.mark.parametrize(
    ("labels", "described"),
    [(np.zeros((4, 1), np.int64), r"shape \(4, 1\) of int64"), (np.zeros(4, np.float32), r"shape \(4,\) of float32")],
)
def test_labels_must_be_1d_integers(tmp_path: Path, labels: np.ndarray, described: str) -> None:
    path = tmp_path / "set.npz"
    np.savez(path, x=np.zeros((4, 2, 2)), y=labels)
    with pytest.raises(BadInputError, match=f"labels must be a 1-D integer array, got {described}"):
        open_source(spec(path, labels_key="y"), Preprocess())


def test_samples_need_a_count_axis_and_numbers(tmp_path: Path) -> None:
    np.savez(tmp_path / "flat.npz", x=np.zeros(5))
    with pytest.raises(BadInputError, match=r"samples must be an array of shape \(count, \.\.\.\), got shape \(5,\)"):
        open_source(spec(tmp_path / "flat.npz"), Preprocess())
    np.savez(tmp_path / "text.npz", x=np.array([["a"], ["b"]]))
    with pytest.raises(BadInputError, match="samples must be numeric, got <U1"):
        open_source(spec(tmp_path / "text.npz"), Preprocess())


def test_npy_given_as_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 2)))
    with pytest.raises(BadInputError, match=re.escape("is not an .npz archive")) as caught:
        open_source(spec(path, format="npz"), Preprocess())
    assert str(caught.value).startswith(f"{path}: ")


def test_npz_given_as_npy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    np.savez(path, x=np.zeros((2, 2)))
    with pytest.raises(
        BadInputError, match=re.escape("the samples file is an .npz archive, not an .npy array")
    ) as caught:
        open_source(spec(path, format="npy"), Preprocess())
    assert str(caught.value).startswith(f"{path}: ")


def test_truncated_npz_is_bad_input(tmp_path: Path, digits_dir: Path) -> None:
    path = tmp_path / "eval.npz"
    path.write_bytes((digits_dir / "eval.npz").read_bytes()[:100])
    with pytest.raises(BadInputError, match="cannot read the archive as a NumPy file") as caught:
        open_source(spec(path), Preprocess())
    assert str(caught.value).startswith(f"{path}: ")


def test_corrupted_npz_member_is_bad_input(tmp_path: Path, digits_dir: Path) -> None:
    data = bytearray((digits_dir / "eval.npz").read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the stored x.npy: the CRC no longer matches
    path = tmp_path / "eval.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match=re.escape("cannot read the archive: Bad CRC-32 for file 'x.npy'")):
        open_source(spec(path), Preprocess())


def test_npz_of_objects_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([[1], [None]], dtype=object))
    with pytest.raises(BadInputError, match="Object arrays cannot be loaded when allow_pickle=False"):
        open_source(spec(path), Preprocess())


def test_garbage_file_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    path.write_bytes(b"this is not numpy")
    with pytest.raises(
        BadInputError, match=r"cannot read the archive: the file is neither an \.npy array nor an \.npz"
    ):
        open_source(spec(path), Preprocess())


# --- npy ------------------------------------------------------------------------------------------------------


def test_npy_with_labels_path_is_memory_mapped(tmp_path: Path) -> None:
    samples = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    np.save(tmp_path / "x.npy", samples)
    np.save(tmp_path / "y.npy", np.array([4, 3, 2, 1, 0]))
    source = open_source(spec(tmp_path / "x.npy", labels_path=tmp_path / "y.npy"), Preprocess())
    assert source.length == 5
    np.testing.assert_array_equal(source.read(3), samples[3])
    assert source.labels.tolist() == [4, 3, 2, 1, 0]
    assert source.files == [tmp_path / "x.npy", tmp_path / "y.npy"]

    # Overwrite the last sample on disk: a memory-mapped source sees it, an in-memory copy would not.
    with (tmp_path / "x.npy").open("r+b") as handle:
        handle.seek(-samples[4].nbytes, 2)  # the last sample is the last bytes of the file
        handle.write(np.full((2, 3), -7.5, np.float32).tobytes())
    np.testing.assert_array_equal(source.read(4), np.full((2, 3), -7.5, np.float32))
    np.testing.assert_array_equal(source.read(3), samples[3])


def test_npy_without_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.uint8))
    source = open_source(spec(tmp_path / "x.npy"), Preprocess())
    assert (source.length, source.labels, source.files) == (3, None, [tmp_path / "x.npy"])


def test_npy_labels_count_mismatch_names_the_labels_file(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    np.save(tmp_path / "y.npy", np.arange(5))
    with pytest.raises(BadInputError, match="5 labels for 4 samples") as caught:
        open_source(spec(tmp_path / "x.npy", labels_path=tmp_path / "y.npy"), Preprocess())
    assert str(caught.value).startswith(f"{tmp_path / 'y.npy'}: ")


def test_npy_missing_labels_file(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    with pytest.raises(BadInputError, match="cannot read the labels as a NumPy file") as caught:
        open_source(spec(tmp_path / "x.npy", labels_path=tmp_path / "none.npy"), Preprocess())
    assert str(caught.value).startswith(f"{tmp_path / 'none.npy'}: ")


def test_npy_labels_given_as_npz_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    np.savez(tmp_path / "y.npz", y=np.arange(4))
    with pytest.raises(BadInputError, match=re.escape("the labels file is an .npz archive, not an .npy array")):
        open_source(spec(tmp_path / "x.npy", labels_path=tmp_path / "y.npz"), Preprocess())


def test_truncated_npy_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((10, 20, 20), np.float32))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(BadInputError, match="cannot read the samples as a NumPy file"):
        open_source(spec(path), Preprocess())


# --- folders of images ----------------------------------------------------------------------------------------


def test_image_folder_per_class_matches_the_npz(eval_pngs, digits_eval) -> None:
    root, order = eval_pngs
    x, y = digits_eval
    source = open_source(spec(root), Preprocess(resize=(16, 16), color="grayscale"))

    assert source.length == 360
    assert source.layout == "NHWC"
    assert source.class_names == [str(k) for k in range(10)]
    np.testing.assert_array_equal(source.labels, y[order])
    assert source.labels.dtype == np.int64
    assert source.files[0] == root / str(y[order[0]]) / f"{order[0]:04d}.png"
    assert source.files == sorted(source.files)  # class folders in order, files sorted within each
    for position in (0, 1, 100, 359):
        sample = source.read(position)
        assert sample.shape == (16, 16, 1)
        assert sample.dtype == np.float32
        np.testing.assert_array_equal(sample, x[order[position]].astype(np.float32))


def test_labels_follow_sorted_folder_names(tmp_path: Path) -> None:
    for name, value in (("zebra", 200), ("apple", 10), ("mango", 90)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / name / "a.png")
    (tmp_path / "apple" / "b.png").write_bytes((tmp_path / "apple" / "a.png").read_bytes())
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    source = open_source(spec(tmp_path), GRAY)
    assert source.class_names == ["apple", "mango", "zebra"]
    assert source.labels.tolist() == [0, 0, 1, 2]
    assert [source.read(i)[0, 0, 0] for i in range(4)] == [10.0, 10.0, 90.0, 200.0]


def test_rgb_images_read_as_grayscale_and_rgb(tmp_path: Path, digits_eval) -> None:
    x, y = digits_eval
    order = write_class_folders(tmp_path, x[:20], y[:20], mode="RGB")
    gray = open_source(spec(tmp_path), GRAY)
    rgb = open_source(spec(tmp_path), Preprocess(color="rgb"))
    for position in range(20):
        expected = x[order[position]].astype(np.float32)
        np.testing.assert_array_equal(gray.read(position), expected)  # R = G = B converts exactly
        assert rgb.read(position).shape == (16, 16, 3)
        np.testing.assert_array_equal(rgb.read(position), np.repeat(expected, 3, axis=-1))


def test_resize_takes_height_then_width(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(10, 20), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    source = open_source(spec(tmp_path), Preprocess(resize=(8, 12), color="grayscale"))
    sample = source.read(0)
    assert sample.shape == (8, 12, 1)
    expected = np.asarray(Image.fromarray(image).resize((12, 8), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_array_equal(sample[..., 0], expected)


def test_flat_folder_has_no_labels(tmp_path: Path) -> None:
    for index, name in enumerate(["c.png", "a.PNG", "b.jpg"]):
        Image.fromarray(np.full((3, 5), 50 * index, np.uint8)).save(tmp_path / name, format="PNG")
    (tmp_path / "README.md").write_text("ignored")
    source = open_source(spec(tmp_path), GRAY)
    assert source.length == 3
    assert source.labels is None
    assert source.class_names is None
    assert [p.name for p in source.files] == ["a.PNG", "b.jpg", "c.png"]
    assert [source.read(i)[0, 0, 0] for i in range(3)] == [50.0, 100.0, 0.0]
    assert source.read(0).shape == (3, 5, 1)


@pytest.mark.parametrize("content", [b"definitely not a png", "truncated"])
def test_unreadable_image_names_the_file(tmp_path: Path, content: bytes | str) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "0_good.png")
    good = (tmp_path / "0_good.png").read_bytes()
    bad = tmp_path / "1_bad.png"
    bad.write_bytes(good[:40] if content == "truncated" else content)
    source = open_source(spec(tmp_path), GRAY)  # opening lists files; decoding happens per sample
    assert source.read(0).shape == (8, 8, 1)
    with pytest.raises(BadInputError, match="cannot decode the image: cannot identify image file") as caught:
        source.read(1)
    assert str(caught.value).startswith(f"{bad}: ")
    assert caught.value.exit_code == 2


def test_corrupt_image_data_names_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "a.png")
    data = bytearray((tmp_path / "a.png").read_bytes())
    start = data.index(b"IDAT") + 4
    data[start : start + 10] = bytes(b ^ 0xFF for b in data[start : start + 10])
    (tmp_path / "a.png").write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="cannot decode the image") as caught:
        open_source(spec(tmp_path), GRAY).read(0)
    assert str(caught.value).startswith(f"{tmp_path / 'a.png'}: ")


def test_images_format_needs_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(path)
    with pytest.raises(BadInputError, match="format images needs a folder"):
        open_source(spec(path, format="images"), GRAY)


# --- format detection -----------------------------------------------------------------------------------------


def test_format_is_detected_from_suffix_or_folder(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 3)), y=np.arange(2))
    np.save(tmp_path / "b.npy", np.ones((4, 3)))
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "imgs" / "a.png")
    assert open_source(spec(tmp_path / "a.npz"), Preprocess()).length == 2
    assert open_source(spec(tmp_path / "b.npy"), Preprocess()).length == 4
    images = open_source(spec(tmp_path / "imgs"), GRAY)
    assert (images.length, images.layout) == (1, "NHWC")


def test_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "samples.bin"
    with path.open("wb") as handle:
        np.savez(handle, x=np.zeros((3, 2)))
    assert open_source(spec(path, format="npz"), Preprocess()).length == 3


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    path.write_text("1,2\n")
    with pytest.raises(BadInputError, match=re.escape("cannot tell the data format from the suffix '.csv'")) as caught:
        open_source(spec(path), Preprocess())
    assert str(caught.value).startswith(f"{path}: ")
    assert "set format: npz | npy | images" in str(caught.value)


def test_missing_data_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.npz"
    with pytest.raises(BadInputError, match="data set not found") as caught:
        open_source(spec(path), Preprocess())
    assert (
        str(caught.value)
        == f"{path}: data set not found (data.path)\n  fix: check data.path in the recipe (relative to it)"
    )


def test_symbolic_links_that_loop_or_lead_nowhere_say_so(tmp_path: Path) -> None:
    (tmp_path / "a.npz").symlink_to(tmp_path / "b.npz")
    (tmp_path / "b.npz").symlink_to(tmp_path / "a.npz")
    (tmp_path / "gone.npz").symlink_to(tmp_path / "deleted.npz")
    for name, problem in (("a.npz", "is a symbolic link that loops"), ("gone.npz", "is a symbolic link to nothing")):
        with pytest.raises(BadInputError) as caught:
            open_source(spec(tmp_path / name), Preprocess())
        assert str(caught.value).startswith(f"{tmp_path / name}: {problem}\n  fix: point the link at the data")


def test_random_bytes_named_npz_are_not_called_pickled_data(tmp_path: Path) -> None:
    path = tmp_path / "samples.npz"
    path.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(BadInputError) as caught:
        open_source(spec(path), Preprocess())
    message = str(caught.value)
    assert "neither an .npy array nor an .npz archive" in message and "pickled" not in message
    assert "fix: write the data with numpy.save (.npy) or numpy.savez (.npz)" in message
