"""int8 vs float for the digit detector, measured beside ckit: the numbers behind recipes/digit_detector.yaml's gates.

Usage: python -m benchmarks.detector_int8_check [MODEL.onnx]
(after `python -m calibration.digit_scenes` and `python -m recipes.models.digit_detector`)

It converts the ONNX file as ckit does (compiler_kit.frontends.onnx.convert_onnx: onnx2tf to a SavedModel) and
prints what onnx2tf made of the two outputs: their order and shapes in the SavedModel's serving signature against
the ONNX graph's. Then TensorFlow's converter makes a full-integer int8 model (int8 input and output, the 200
calibration scenes as representative data, in the NHWC layout onnx2tf's model takes), LiteRT runs it on the eval
scenes, reading each output BY NAME through the signature runner (the outputs' positions are onnx2tf's, not the ONNX
file's), and its detections are matched to onnxruntime's on the ONNX file: recall, precision and mean matched IoU
by the example's own numpy decoding, and by ckit's detection task metric on the same arrays as a cross-check.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from calibration import digit_scenes
from recipes.models import digit_detector

OUTPUTS = ("scores", "boxes")  # the ONNX file's order


def convert(onnx_path: Path, out_dir: Path):  # -> compiler_kit.frontends.base.FloatModel
    """onnx2tf's SavedModel of the file, made by ckit's own ONNX frontend; prints its signature's outputs."""
    import onnx

    from compiler_kit.frontends.onnx import convert_onnx
    from compiler_kit.lazy import tensorflow
    from compiler_kit.recipe import InputSpec

    graph = onnx.load(str(onnx_path)).graph
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output}
    print(f"ONNX graph outputs, in order:        {shapes}")
    model = convert_onnx(onnx_path, [InputSpec(name="image", shape=[1, 1, 32, 32], layout="NCHW")], out_dir)
    signature = tensorflow().saved_model.load(str(model.saved_model_dir)).signatures["serving_default"]
    outputs = {key: spec.shape.as_list() for key, spec in signature.structured_outputs.items()}
    print(f"SavedModel serving_default outputs: {outputs}")
    inputs = {key: spec.shape.as_list() for key, spec in signature.structured_input_signature[1].items()}
    print(f"SavedModel serving_default inputs:  {inputs}")
    print(f"ckit's mapping (ONNX name -> signature key): {[(o.name, o.key, o.perm) for o in model.outputs]}")
    return model


def int8_tflite(model, representative: np.ndarray) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(model.saved_model_dir), signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([model.to_model_layout(sample[None])] for sample in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the converter's chatter
        warnings.simplefilter("ignore")
        return converter.convert()


def run_int8(model_bytes: bytes, model, x: np.ndarray) -> dict[str, np.ndarray]:
    """The int8 model's dequantized outputs on `x` (NCHW), by the ONNX file's output names: the signature runner
    returns them by signature key, and ckit's conversion recorded which key holds which ONNX output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    print(f"TFLite signatures: {interpreter.get_signature_list()}")
    print(f"TFLite outputs by position: {[(d['name'], list(d['shape'])) for d in interpreter.get_output_details()]}")
    runner = interpreter.get_signature_runner("serving_default")
    ((input_name, input_details),) = runner.get_input_details().items()
    in_scale, in_zero = input_details["quantization"]
    output_details = runner.get_output_details()
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in output_details}
    for sample in x:
        quantized = np.clip(np.round(model.to_model_layout(sample[None]) / in_scale + in_zero), -128, 127)
        for name, value in runner(**{input_name: quantized.astype(np.int8)}).items():
            scale, zero = output_details[name]["quantization"]
            outputs[name].append((value.astype(np.float32) - zero) * scale)
    for key, details in output_details.items():
        print(f"int8 output {key}: shape {list(details['shape'])}, step {details['quantization'][0]:.5f}")
    source_name = {output.key: output.name for output in model.outputs}
    return {source_name[key]: np.concatenate(values) for key, values in outputs.items()}


def run_float(onnx_path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    runs = [session.run(list(OUTPUTS), {"image": sample[None]}) for sample in x]
    return {name: np.concatenate([run[i] for run in runs]) for i, name in enumerate(OUTPUTS)}


def main(onnx_path: Path = digit_detector.DEFAULT_DIR / digit_detector.ONNX, data_dir: Path = digit_scenes.DEFAULT_DIR):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from compiler_kit.compare.tasks import TaskSpec, evaluate_task

    with np.load(data_dir / "calibration.npz") as data:
        representative = digit_detector.images(data["x"]).numpy()
    with np.load(data_dir / "eval.npz") as data:
        x, truth = digit_detector.images(data["x"]).numpy(), digit_detector.ground_truth(data["boxes"], data["classes"])
    with tempfile.TemporaryDirectory(prefix="detector-int8-") as work:
        model = convert(onnx_path, Path(work))
        int8 = run_int8(int8_tflite(model, representative), model, x)
    floats = run_float(onnx_path, x)
    detections = {
        side: [digit_detector.detect(s, b) for s, b in zip(outputs["scores"], outputs["boxes"], strict=True)]
        for side, outputs in (("float", floats), ("int8", int8))
    }
    results = {
        "float vs truth": digit_detector.agreement(truth, detections["float"]),
        "int8 vs truth": digit_detector.agreement(truth, detections["int8"]),
        "int8 vs float": digit_detector.agreement(detections["float"], detections["int8"]),
    }
    spec = TaskSpec(
        kind="detection",
        decoder="boxes_scores",
        scores_output="scores",
        score_threshold=digit_detector.SCORE_THRESHOLD,
        iou_threshold=digit_detector.IOU_THRESHOLD,
    )
    ckit = evaluate_task(floats, int8, "boxes", spec, None).metrics
    print(f"{len(x)} eval scenes, {sum(len(t[0]) for t in truth)} digits; detections per scene: ", end="")
    print(", ".join(f"{side} {np.mean([len(d[0]) for d in found]):.3f}" for side, found in detections.items()))
    for name, metrics in results.items():
        print(f"{name:15s} " + "  ".join(f"{key} {value:.4f}" for key, value in metrics.items()))
    print("int8 vs float, ckit's detection metric: " + "  ".join(f"{k} {v:.4f}" for k, v in ckit.items()))
    return results | {"ckit int8 vs float": ckit}


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else digit_detector.DEFAULT_DIR / digit_detector.ONNX)
