"""The bare baseline of `ckit build recipes/digits_keras.yaml`: the same work, written directly against TensorFlow,
Keras and LiteRT, with no compiler_kit import.

Usage: python benchmarks/bare_keras_build.py [RECIPE] --out DIR

The work, as the recipe asks for it (its numbers and paths are read from the YAML, relative to its folder):
- load the .keras model, export a float SavedModel with a batch-1 signature, convert it to a float .tflite and,
  with the recipe's calibration samples (the same seeded draw and preprocessing), to a full-integer int8 .tflite;
- run the Keras model, the float and the int8 TFLite models on every verification sample;
- time each of the three: the first inference, then the warm-up and the timed runs on the first sample;
- the per-layer pass: float and int8 interpreters that keep every tensor, every activation read per sample, each
  int8 activation dequantized and compared with the float one of the same name.
It prints one JSON line (what it measured); `benchmarks/run.py` times the whole process.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "digits_keras.yaml"
SIGNATURE = "serve"


def load_settings(recipe_path: Path) -> dict[str, Any]:
    """The recipe's numbers, with the schema's defaults for what it leaves out; paths made absolute."""
    recipe = yaml.safe_load(recipe_path.read_text())
    folder = recipe_path.resolve().parent
    cal, ver = recipe["calibration"], recipe["verify"]
    pre = cal.get("preprocess", {})
    quant = recipe.get("quantization", {})
    latency = ver.get("latency", {})
    return {
        "model": folder / recipe["source"]["path"],
        "input": recipe["inputs"][0],
        "calibration": (folder / cal["data"]["path"], cal["data"].get("samples_key", "x")),
        "num_calibration": cal.get("num_samples", 200),
        "seed": cal.get("seed", 0),
        "scale": pre.get("scale", 1.0),
        "mean": pre.get("mean", [0.0])[0],
        "std": pre.get("std", [1.0])[0],
        "verify": (folder / ver["data"]["path"], ver["data"].get("samples_key", "x"), ver["data"].get("labels_key")),
        "threads": ver.get("threads", 1),
        "warmup": latency.get("warmup", 10),
        "runs": latency.get("runs", 100),
        "input_type": quant.get("input_type", "int8"),
        "output_type": quant.get("output_type", "int8"),
        "per_tensor": quant.get("granularity", "per-channel") == "per-tensor",
    }


def preprocess(x: np.ndarray, scale: float, mean: float, std: float) -> np.ndarray:
    """(count, H, W, C) stored samples -> (count, 1, H, W, C) float32 model inputs of batch one."""
    x = x.astype(np.float32) * np.float32(scale)
    return ((x - np.float32(mean)) / np.float32(std))[:, None]


def calibration_samples(settings: dict[str, Any]) -> np.ndarray:
    path, key = settings["calibration"]
    with np.load(path) as archive:
        raw = archive[key]
    count = settings["num_calibration"]
    if count < len(raw):
        raw = raw[np.sort(np.random.default_rng(settings["seed"]).choice(len(raw), size=count, replace=False))]
    return preprocess(raw, settings["scale"], settings["mean"], settings["std"])


def verification_samples(settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    path, key, labels_key = settings["verify"]
    with np.load(path) as archive:
        raw, labels = archive[key], (archive[labels_key] if labels_key else None)
    return preprocess(raw, settings["scale"], settings["mean"], settings["std"]), labels


def convert(settings: dict[str, Any], calibration: np.ndarray, out: Path) -> tuple[Any, Path, Path]:
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(settings["model"], compile=False)
    spec = settings["input"]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE, model.call, input_signature=[tf.TensorSpec(spec["shape"], tf.float32, name=spec["name"])]
    )
    saved_model = out / "saved_model"
    archive.write_out(str(saved_model), verbose=False)

    def converter() -> Any:
        return tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])

    float_path, int8_path = out / "model_float.tflite", out / "model_int8.tflite"
    float_path.write_bytes(converter().convert())
    int8 = converter()
    int8.optimizations = [tf.lite.Optimize.DEFAULT]
    int8.representative_dataset = lambda: ([sample] for sample in calibration)
    int8.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    int8.inference_input_type = tf.as_dtype(settings["input_type"])
    int8.inference_output_type = tf.as_dtype(settings["output_type"])
    int8._experimental_disable_per_channel = settings["per_tensor"]
    int8_path.write_bytes(int8.convert())
    return model, float_path, int8_path


def to_tensor(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if scale == 0:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(detail["dtype"])


def from_tensor(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    return q.astype(np.float32) if scale == 0 else (q.astype(np.float32) - zero_point) * np.float32(scale)


class TfLite:
    """One interpreter and its I/O details; `__call__` quantizes, invokes, dequantizes."""

    def __init__(self, path: Path, threads: int, **options: Any) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads, **options)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.last_ms = float("nan")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], to_tensor(x, self.input))
        start = time.perf_counter()
        self.interpreter.invoke()
        self.last_ms = (time.perf_counter() - start) * 1e3
        return from_tensor(self.interpreter.get_tensor(self.output["index"]), self.output)


def keras_call(model: Any) -> Any:
    def call(x: np.ndarray) -> np.ndarray:
        call.last_ms = float("nan")  # type: ignore[attr-defined]
        start = time.perf_counter()
        y = model(x, training=False)
        call.last_ms = (time.perf_counter() - start) * 1e3  # type: ignore[attr-defined]
        return np.asarray(y, dtype=np.float32)

    return call


def verify(runners: dict[str, Any], samples: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    first_ms: dict[str, float] = {}
    for x in samples:
        for name, run in runners.items():
            outputs[name].append(run(x))
            first_ms.setdefault(name, run.last_ms)
    return {name: np.concatenate(ys) for name, ys in outputs.items()}, first_ms


def latency(run: Any, x: np.ndarray, warmup: int, runs: int) -> dict[str, float]:
    for _ in range(warmup):
        run(x)
    times = np.empty(runs)
    for i in range(runs):
        run(x)
        times[i] = run.last_ms
    return {"p50_ms": float(np.median(times)), "mean_ms": float(times.mean())}


def layer_snr(float_path: Path, int8_path: Path, samples: np.ndarray, threads: int) -> dict[str, float]:
    """SNR (dB) of every int8 activation against the float activation of the same name and shape."""
    from ai_edge_litert.interpreter import OpResolverType

    options = {
        "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "experimental_preserve_all_tensors": True,
    }
    graphs = [TfLite(float_path, threads, **options), TfLite(int8_path, threads, **options)]
    activations = []
    for graph in graphs:
        ops = [op for op in graph.interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
        activations.append([graph.input["index"], *(int(t) for op in ops for t in op["outputs"])])
    details = [{d["index"]: d for d in graph.interpreter.get_tensor_details()} for graph in graphs]
    float_by_name = {details[0][t]["name"]: t for t in activations[0]}
    pairs = [
        (float_by_name[details[1][t]["name"]], t)
        for t in activations[1]
        if details[1][t]["quantization"][0] != 0
        and details[1][t]["name"] in float_by_name
        and tuple(details[0][float_by_name[details[1][t]["name"]]]["shape"]) == tuple(details[1][t]["shape"])
    ]
    signal, noise = np.zeros(len(pairs)), np.zeros(len(pairs))
    for x in samples:
        tensors = []
        for graph, wanted in zip(graphs, activations, strict=True):
            graph(x)
            tensors.append({t: graph.interpreter.get_tensor(t) for t in wanted})
        for k, (f, q) in enumerate(pairs):
            reference = tensors[0][f].astype(np.float64).ravel()
            error = reference - from_tensor(tensors[1][q], details[1][q]).astype(np.float64).ravel()
            signal[k] += reference @ reference
            noise[k] += error @ error
    return {
        details[1][q]["name"]: float(10 * np.log10(s / n)) if n > 0 else float("inf")
        for (_, q), s, n in zip(pairs, signal, noise, strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--out", type=Path, required=True, help="folder for the SavedModel and the .tflite files")
    args = parser.parse_args()
    settings = load_settings(args.recipe)
    args.out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    calibration = calibration_samples(settings)
    samples, labels = verification_samples(settings)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(settings["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(settings["threads"])
    seconds["data_and_imports"] = time.perf_counter() - start

    start = time.perf_counter()
    model, float_path, int8_path = convert(settings, calibration, args.out)
    seconds["convert_and_quantize"] = time.perf_counter() - start

    start = time.perf_counter()
    threads = settings["threads"]
    runners = {
        "source": keras_call(model),
        "tflite-float": TfLite(float_path, threads),
        "tflite-int8": TfLite(int8_path, threads),
    }
    outputs, first_ms = verify(runners, samples)
    layers = layer_snr(float_path, int8_path, samples, threads)
    seconds["verify"] = time.perf_counter() - start

    start = time.perf_counter()
    timings = {
        name: {"first_ms": first_ms[name], **latency(run, samples[0], settings["warmup"], settings["runs"])}
        for name, run in runners.items()
    }
    seconds["latency"] = time.perf_counter() - start

    top1 = {name: y.argmax(axis=-1) for name, y in outputs.items()}
    print(
        json.dumps(
            {
                "samples": len(samples),
                "accuracy": {name: float((p == labels).mean()) for name, p in top1.items()}
                if labels is not None
                else {},
                "top1_agreement": float((top1["source"] == top1["tflite-int8"]).mean()),
                "layers": len(layers),
                "worst_layer_snr_db": min(layers.values()) if layers else None,
                "latency": timings,
                "stage_seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
