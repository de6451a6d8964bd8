"""LiteRT runner: the int8 I/O (de)quantization it hides, and the built int8 model run against the Keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler_kit.runners import KerasRunner, LiteRtRunner
from compiler_kit.runners.litert import dequantize_values, quantize_values

INT8 = {"dtype": np.int8, "quantization": (0.05, -3)}  # represents [-6.25, 6.5]
UINT8 = {"dtype": np.uint8, "quantization": (0.02, 128)}  # represents [-2.56, 2.54]


@pytest.mark.parametrize(("detail", "low", "high"), [(INT8, -6.25, 6.5), (UINT8, -2.56, 2.54)])
def test_round_trip_within_half_a_step(detail, low, high):
    scale = detail["quantization"][0]
    x = np.linspace(low, high, 10_001).reshape(1, -1)
    q = quantize_values(x, detail)
    assert q.dtype == detail["dtype"]
    back = dequantize_values(q, detail)
    assert back.dtype == np.float32
    error = np.abs(back.astype(np.float64) - x)
    assert error.max() <= scale / 2 + 1e-6
    assert error.max() > scale / 4  # the grid really is that coarse: values between steps move


def test_quantize_exact_values():
    assert quantize_values(np.array([0.1, 0.0, -0.15, 1.0]), INT8).tolist() == [-1, -3, -6, 17]
    assert quantize_values(np.array([0.0, 0.02, -0.04, 1.0]), UINT8).tolist() == [128, 129, 126, 178]
    assert dequantize_values(np.array([-3, 17, 127, -128], np.int8), INT8).tolist() == pytest.approx(
        [0.0, 1.0, 6.5, -6.25]
    )
    assert dequantize_values(np.array([128, 0, 255], np.uint8), UINT8).tolist() == pytest.approx([0.0, -2.56, 2.54])


def test_quantize_saturates_at_the_integer_range():
    x = np.array([1e6, 7.0, -7.0, -1e6])
    assert quantize_values(x, INT8).tolist() == [127, 127, -128, -128]
    assert quantize_values(x, UINT8).tolist() == [255, 255, 0, 0]


def test_float_tensors_pass_through():
    detail = {"dtype": np.float32, "quantization": (0.0, 0)}
    x = np.array([[0.123, -4.5]], np.float64)
    assert quantize_values(x, detail).dtype == np.float32
    np.testing.assert_array_equal(dequantize_values(quantize_values(x, detail), detail), x.astype(np.float32))


@pytest.fixture(scope="module")
def eval_x(digits_dir: Path) -> np.ndarray:
    with np.load(digits_dir / "eval.npz") as data:
        return data["x"][:50].astype(np.float32) / 255.0  # the recipe's preprocessing


@pytest.fixture(scope="module")
def int8_runner(built) -> LiteRtRunner:
    runner = LiteRtRunner("tflite-int8", built.build_dir / "model_int8.tflite", threads=1)
    runner.prepare()
    return runner


@pytest.mark.slow
def test_prepare_and_infer_one_sample(built, eval_x):
    runner = LiteRtRunner("tflite-int8", built.build_dir / "model_int8.tflite", threads=1)
    assert np.isnan(runner.last_inference_ms)
    runner.prepare()
    outputs = runner.infer({"image": eval_x[:1]})
    assert list(outputs) == ["output_0"]  # without the build's names, the model's own signature key
    logits = outputs["output_0"]
    assert logits.dtype == np.float32
    assert logits.shape == (1, 10)
    assert np.isfinite(logits).all()
    assert np.ptp(logits) > 0
    assert runner.last_inference_ms > 0
    assert np.isfinite(runner.last_inference_ms)
    # Dequantized int8 outputs sit on the output tensor's grid.
    scale, zero_point = runner.outputs[0]["quantization"]
    steps = logits.astype(np.float64) / scale + zero_point
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)


@pytest.mark.slow
def test_describe_reports_int8_quantization(int8_runner):
    info = int8_runner.describe()
    assert info["runtime"] == "ai-edge-litert"
    assert info["version"]
    [inp] = info["input_quantization"]
    assert inp["dtype"] == "int8"
    assert inp["scale"] > 0
    assert -128 <= inp["zero_point"] <= 127
    # Inputs are [0, 1] after preprocessing: the calibrated range spans about 1/255 per step.
    assert inp["scale"] == pytest.approx(1 / 255, rel=0.05)
    [out] = info["output_quantization"]
    assert out["dtype"] == "int8"
    assert out["scale"] > 0


@pytest.mark.slow
def test_int8_agrees_with_keras_in_top1(int8_runner, keras_model_path, eval_x):
    keras_runner = KerasRunner("source", keras_model_path, threads=1)
    keras_runner.prepare()
    int8_top1, keras_top1 = [], []
    for sample in eval_x:
        feed = {"image": sample[None]}
        (int8_logits,) = int8_runner.infer(feed).values()
        (keras_logits,) = keras_runner.infer(feed).values()
        int8_top1.append(int(int8_logits.argmax()))
        keras_top1.append(int(keras_logits.argmax()))
    agreement = np.mean(np.array(int8_top1) == np.array(keras_top1))
    assert agreement >= 0.95
    assert len(set(keras_top1)) >= 5  # a real classifier, not a constant answer
