"""The detector example: scenes whose boxes say where the digits are, a two-output ONNX file (scores, then boxes) with
its boxes decoded in the graph, and decoding that agrees with ckit's. The slow test trains the model and builds the
shipped recipe against its gates (about a minute).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from calibration import digit_scenes
from recipes.models import digit_detector
from tests.conftest import REPO, build_recipe

RECIPE = REPO / "recipes" / "digit_detector.yaml"
EDGE_TPU_FRIENDLY = {"Conv", "Relu", "Sigmoid", "Mul", "Add", "Reshape", "Transpose"}


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digit_scenes")
    digit_scenes.write_scenes(out)
    return out


@pytest.fixture(scope="module")
def untrained_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[digit_detector.DigitDetector, Path]:
    """The export path the trained model takes, on seeded random weights (training takes 20 s)."""
    torch.manual_seed(0)
    model = digit_detector.fuse_batch_norm(digit_detector.build_model().eval())
    return model, digit_detector.export(model, tmp_path_factory.mktemp("detector") / "digit_detector.onnx")


def test_scene_files_hold_nhwc_uint8_scenes_with_boxes_and_classes(scenes_dir: Path) -> None:
    for part, count in digit_scenes.SCENES.items():
        with np.load(scenes_dir / f"{part}.npz") as data:
            assert data["x"].shape == (count, 32, 32, 1) and data["x"].dtype == np.uint8, part
            assert data["boxes"].shape == (count, 2, 4) and data["classes"].shape == (count, 2), part
            present = data["classes"] >= 0
            assert present[:, 0].all() and 0.3 < present[:, 1].mean() < 0.7, part  # one or two digits a scene
            assert set(np.unique(data["classes"][present])) == set(range(10)), part


def test_each_digit_is_pasted_where_its_box_says() -> None:
    from sklearn.datasets import load_digits

    bundled = load_digits()
    image, label = bundled.images[:1], bundled.target[:1]  # one digit image, so every paste is known
    scenes = digit_scenes.make_scenes(image, label, 50, np.random.default_rng(0))
    for x, boxes, classes in zip(scenes["x"][..., 0], scenes["boxes"], scenes["classes"], strict=True):
        outside = x.copy()
        for box in boxes[classes >= 0].astype(int):
            x1, y1, x2, y2 = box
            assert 10 <= x2 - x1 == y2 - y1 <= 14 and min(x1, y1) >= 0 and max(x2, y2) <= 32
            np.testing.assert_array_equal(x[y1:y2, x1:x2], digit_scenes.scaled_digit(image[0], int(x2 - x1)))
            outside[y1:y2, x1:x2] = 0
        assert not outside.any()  # no ink beyond the boxes
        assert (classes[classes >= 0] == label[0]).all()


def test_scenes_are_reproducible(scenes_dir: Path, tmp_path: Path) -> None:
    again = digit_scenes.write_scenes(tmp_path)
    assert again["eval"].read_bytes() == (scenes_dir / "eval.npz").read_bytes()


def test_every_digit_has_a_cell_that_answers_for_it(scenes_dir: Path) -> None:
    with np.load(scenes_dir / "train.npz") as data:
        boxes, classes = data["boxes"], data["classes"]
    one_hot, cell_boxes, positive = (t.numpy() for t in digit_detector.targets(boxes, classes))
    model = digit_detector.build_model()
    centres = model.offset[0, :, :2].numpy()  # (16, 2) x, y of each cell's centre
    for scene in range(200):
        for box, label in zip(boxes[scene], classes[scene], strict=True):
            if label < 0:
                continue
            cells = np.nonzero((centres > box[:2]).all(axis=1) & (centres < box[2:]).all(axis=1))[0]
            assert len(cells) >= 1
            assert positive[scene, cells].all() and (one_hot[scene, cells].argmax(axis=1) == label).all()
            np.testing.assert_array_equal(cell_boxes[scene, cells], np.broadcast_to(box, (len(cells), 4)))
    assert positive.sum() == (one_hot.sum(axis=2) == 1).sum()  # one class per answering cell, none elsewhere


def test_export_has_scores_then_boxes_and_edge_tpu_friendly_ops(untrained_onnx) -> None:
    import onnx

    graph = onnx.load(str(untrained_onnx[1])).graph

    def shapes(values) -> list[tuple[str, list[int]]]:
        return [(v.name, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]

    assert shapes(graph.input) == [("image", [1, 1, 32, 32])]
    assert shapes(graph.output) == [("scores", [1, 16, 10]), ("boxes", [1, 16, 4])]
    assert {node.op_type for node in graph.node} <= EDGE_TPU_FRIENDLY  # batch norm folded, no gather or exp


def test_onnx_file_computes_what_the_torch_model_does(untrained_onnx) -> None:
    import onnxruntime

    model, path = untrained_onnx
    x = np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, boxes = session.run(["scores", "boxes"], {"image": x})
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    np.testing.assert_allclose(scores, expected[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(boxes, expected[1].numpy(), atol=1e-4)


@pytest.mark.parametrize("raw", [-60.0, 60.0, 0.0, "random"])
def test_in_graph_box_decoding_stays_inside_the_canvas(raw) -> None:
    model = digit_detector.build_model()
    values = torch.randn(1, 16, 4) * 20 if raw == "random" else torch.full((1, 16, 4), raw)
    with torch.no_grad():
        boxes = model.decode(values)[0].numpy()
    centres = model.offset[0, :, :2].numpy()
    assert (boxes >= 0).all() and (boxes <= 32).all()
    # Each cell's box holds its centre: x1 <= cx <= x2, y1 <= cy <= y2.
    assert (boxes[:, :2] <= centres).all() and (centres <= boxes[:, 2:]).all()


def test_onnx_boxes_stay_inside_the_canvas_whatever_the_image(untrained_onnx) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(untrained_onnx[1]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for x in (np.zeros((1, 1, 32, 32)), np.ones((1, 1, 32, 32)), 100 * rng.standard_normal((1, 1, 32, 32))):
        scores, boxes = session.run(["scores", "boxes"], {"image": x.astype(np.float32)})
        assert ((boxes >= 0) & (boxes <= 32)).all() and ((scores >= 0) & (scores <= 1)).all()


def test_decoding_and_matching_agree_with_ckits_detection_metric() -> None:
    from compiler_kit.compare.tasks import TaskSpec, evaluate_task

    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 20, (60, 16, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(4, 12, (60, 16, 2))], axis=2)
    scores = rng.random((60, 16, 10)) ** 4  # mostly below the threshold, as a detector's are
    reference = {"scores": scores, "boxes": boxes}
    candidate = {
        "scores": np.clip(scores + rng.normal(0, 0.05, scores.shape), 0, 1),
        "boxes": boxes + rng.normal(0, 1, boxes.shape),
    }
    spec = TaskSpec(kind="detection", decoder="boxes_scores", scores_output="scores")
    ckit = evaluate_task(reference, candidate, "boxes", spec, None).metrics

    def detections(outputs):
        return [digit_detector.detect(s, b) for s, b in zip(outputs["scores"], outputs["boxes"], strict=True)]

    ours = digit_detector.agreement(detections(reference), detections(candidate))
    assert 0.2 < ours["recall"] < 0.95  # a test that matches some, not all
    for metric in ("recall", "precision", "mean_matched_iou"):
        assert ours[metric] == pytest.approx(ckit[metric]), metric


@pytest.mark.slow
def test_trained_detector_finds_digits_and_its_recipe_passes_its_gates(
    scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("detector_build")
    onnx_path = digit_detector.train(folder, scenes_dir)
    quality = digit_detector.evaluate(onnx_path, scenes_dir)
    assert quality["recall"] > 0.9 and quality["precision"] > 0.9
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["source"]["path"] = str(onnx_path)
    recipe["calibration"]["data"]["path"] = str(scenes_dir / "calibration.npz")
    recipe["verify"]["data"]["path"] = str(scenes_dir / "eval.npz")
    recipe["verify"]["latency"] = {"warmup": 2, "runs": 5}
    result = build_recipe(recipe, folder)
    assert result.report["passed"]
    (comparison,) = (
        c for c in result.report["comparisons"] if (c["reference"], c["candidate"]) == ("source", "tflite-int8")
    )
    assert comparison["outputs"]["boxes"]["metrics"]["recall"] >= 0.95
    assert result.report["layout"]["outputs"] == {"scores": None, "boxes": None}  # (1, 16, C) kept as is
